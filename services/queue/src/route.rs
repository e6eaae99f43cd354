//! Where mail for a domain goes: a static route for the domain, the smarthost, or the
//! domain's MX hosts (RFC 5321 §5.1), each host resolved to its addresses.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use hickory_resolver::TokioResolver;
use hickory_resolver::proto::rr::RData;

use crate::client::Hop;

/// A fixed next hop: a static route or the smarthost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relay {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// AUTH PLAIN user and password.
    pub auth: Option<(String, String)>,
}

/// Why a domain has no usable hop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    /// DNS did not answer; try later.
    Temporary(String),
    /// The domain does not exist or accepts no mail; the text is an SMTP-style reply.
    Permanent(String),
}

/// The routing rules.
pub struct Routes {
    /// Per destination domain (lowercase).
    pub routes: BTreeMap<String, Relay>,
    /// Everything not routed statically, when set; otherwise MX lookups.
    pub smarthost: Option<Relay>,
    /// The port MX hosts are reached on (25; tests use others).
    pub mx_port: u16,
    /// The DNS resolver, for MX and address lookups.
    pub resolver: TokioResolver,
}

impl Routes {
    /// The hops for `domain`, best first, each with its addresses.
    pub async fn hops(&self, domain: &str) -> Result<Vec<Hop>, RouteError> {
        let relay = self.routes.get(domain).or(self.smarthost.as_ref());
        if let Some(relay) = relay {
            let addresses = self.addresses(&relay.host, relay.port).await?;
            return Ok(vec![Hop {
                name: relay.host.clone(),
                addresses,
                auth: relay.auth.clone(),
            }]);
        }

        let mut hops = Vec::new();
        let mut last = None;
        for host in self.mx_hosts(domain).await? {
            match self.addresses(&host, self.mx_port).await {
                Ok(addresses) => hops.push(Hop {
                    name: host,
                    addresses,
                    auth: None,
                }),
                Err(error) => last = Some(error),
            }
        }
        match (hops.is_empty(), last) {
            (true, Some(error)) => Err(error),
            (true, None) => Err(RouteError::Temporary(format!("no host for {domain}"))),
            _ => Ok(hops),
        }
    }

    /// RFC 5321 §5.1: the MX hosts by preference; with no MX record the domain itself
    /// (the implicit MX, reached through its A/AAAA records).
    async fn mx_hosts(&self, domain: &str) -> Result<Vec<String>, RouteError> {
        if let Some(literal) = address_literal(domain) {
            return Ok(vec![literal.to_string()]);
        }
        let fqdn = format!("{}.", domain.trim_end_matches('.'));
        let lookup = match self.resolver.mx_lookup(fqdn.as_str()).await {
            Ok(lookup) => lookup,
            Err(e) if e.is_nx_domain() => {
                return Err(RouteError::Permanent(format!(
                    "550 5.1.2 domain {domain} does not exist"
                )));
            }
            Err(e) if e.is_no_records_found() => return Ok(vec![domain.to_string()]),
            Err(e) => {
                return Err(RouteError::Temporary(format!(
                    "mx lookup for {domain}: {e}"
                )));
            }
        };
        let mut records: Vec<(u16, String)> = lookup
            .answers()
            .iter()
            .filter_map(|record| match &record.data {
                RData::MX(mx) => Some((
                    mx.preference,
                    mx.exchange.to_ascii().trim_end_matches('.').to_string(),
                )),
                _ => None,
            })
            .collect();
        // RFC 7505 §3: a single MX with the root as exchange says the domain takes no mail.
        if records.len() == 1 && records[0].1.is_empty() {
            return Err(RouteError::Permanent(format!(
                "556 5.1.10 {domain} accepts no mail (null MX)"
            )));
        }
        records.retain(|(_, host)| !host.is_empty());
        if records.is_empty() {
            return Ok(vec![domain.to_string()]);
        }
        records.sort();
        Ok(records.into_iter().map(|(_, host)| host).collect())
    }

    async fn addresses(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, RouteError> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let fqdn = format!("{}.", host.trim_end_matches('.'));
        match self.resolver.lookup_ip(fqdn.as_str()).await {
            Ok(ips) => Ok(ips.iter().map(|ip| SocketAddr::new(ip, port)).collect()),
            Err(e) if e.is_nx_domain() || e.is_no_records_found() => Err(RouteError::Permanent(
                format!("550 5.1.2 host {host} has no address"),
            )),
            Err(e) => Err(RouteError::Temporary(format!(
                "address lookup for {host}: {e}"
            ))),
        }
    }
}

/// `[192.0.2.1]` or `[IPv6:2001:db8::1]` (RFC 5321 §4.1.3), as an address.
fn address_literal(domain: &str) -> Option<IpAddr> {
    let inner = domain.strip_prefix('[')?.strip_suffix(']')?;
    let inner = inner.strip_prefix("IPv6:").unwrap_or(inner);
    inner.parse().ok()
}

/// A resolver over `nameservers` (`ip:port`), or the system's (/etc/resolv.conf) when empty.
pub fn resolver(nameservers: &[SocketAddr]) -> Result<TokioResolver, String> {
    use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
    use hickory_resolver::net::runtime::TokioRuntimeProvider;
    if nameservers.is_empty() {
        return TokioResolver::builder_tokio()
            .and_then(|b| b.build())
            .map_err(|e| format!("reading the system resolver configuration: {e}"));
    }
    let servers = nameservers
        .iter()
        .map(|address| {
            let mut server = NameServerConfig::udp_and_tcp(address.ip());
            server.connections = [ConnectionConfig::udp(), ConnectionConfig::tcp()]
                .into_iter()
                .map(|mut c| {
                    c.port = address.port();
                    c
                })
                .collect();
            server
        })
        .collect();
    let config = ResolverConfig::from_name_servers(servers);
    TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
        .build()
        .map_err(|e| format!("building the resolver: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_literals_are_taken_as_the_host() {
        assert_eq!(
            address_literal("[192.0.2.1]"),
            Some("192.0.2.1".parse().unwrap())
        );
        assert_eq!(
            address_literal("[IPv6:2001:db8::1]"),
            Some("2001:db8::1".parse().unwrap())
        );
        assert_eq!(address_literal("example.org"), None);
    }

    #[tokio::test]
    async fn a_static_route_wins_over_the_smarthost_and_needs_no_dns() {
        let resolver = resolver(&["127.0.0.1:9".parse().unwrap()]).unwrap();
        let relay = |host: &str, port| Relay {
            host: host.into(),
            port,
            auth: None,
        };
        let routes = Routes {
            routes: [("example.org".to_string(), relay("127.0.0.1", 2525))].into(),
            smarthost: Some(relay("127.0.0.2", 587)),
            mx_port: 25,
            resolver,
        };
        let hops = routes.hops("example.org").await.unwrap();
        assert_eq!(hops[0].addresses, vec!["127.0.0.1:2525".parse().unwrap()]);
        let other = routes.hops("elsewhere.test").await.unwrap();
        assert_eq!(other[0].addresses, vec!["127.0.0.2:587".parse().unwrap()]);
    }
}
