//! Distinguished names: the one place DNs are built from values, parsed and compared.
//!
//! Building goes through [`rdn`], which escapes the value by RFC 4514 §2.4, so a value taken
//! from a client can never add a component to a DN. Parsing ([`Dn::parse`]) is for the LDIF
//! backend, which has to know an entry's parent and compare DNs the way a server does: attribute
//! types and values without regard to case (every naming attribute of the Mailfold schema
//! matches case-insensitively) and escapes resolved.

use std::fmt;

/// Escapes an attribute value for use in a DN string (RFC 4514 §2.4).
pub fn escape_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 4);
    let last = value.chars().count().saturating_sub(1);
    for (index, c) in value.chars().enumerate() {
        match c {
            // RFC 4514 §2.4: these are escaped anywhere in the value.
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            // RFC 4514 §2.4: a leading space or '#', and a trailing space.
            ' ' | '#' if index == 0 => {
                out.push('\\');
                out.push(c);
            }
            ' ' if index == last => out.push_str("\\ "),
            '\0' => out.push_str("\\00"),
            '=' => out.push_str("\\3D"),
            c => out.push(c),
        }
    }
    out
}

/// One relative DN component `type=value` with the value escaped, e.g. for
/// `format!("{},{}", rdn("mail", address), parent)`.
pub fn rdn(attribute: &str, value: &str) -> String {
    format!("{attribute}={}", escape_value(value))
}

/// Why a DN string could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid dn {dn:?}: {reason}")]
pub struct DnError {
    dn: String,
    reason: &'static str,
}

/// A parsed DN: its components from the leaf to the root, each `(type, value)` with the value
/// unescaped. Multi-valued RDNs (`cn=a+sn=b`) are kept as one component whose parts are sorted.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Dn {
    components: Vec<Vec<(String, String)>>,
}

impl Dn {
    /// Parses an RFC 4514 string DN. Types and values are lowercased for comparison.
    pub fn parse(input: &str) -> Result<Dn, DnError> {
        let error = |reason| DnError {
            dn: input.to_string(),
            reason,
        };
        let mut components = Vec::new();
        if input.trim().is_empty() {
            return Ok(Dn { components });
        }

        let mut component = Vec::new();
        let mut chars = input.chars().peekable();
        loop {
            // attributeType "="
            let mut kind = String::new();
            let mut has_equals = false;
            for c in chars.by_ref() {
                if c == '=' {
                    has_equals = true;
                    break;
                }
                kind.push(c);
            }
            let kind = kind.trim().to_ascii_lowercase();
            if !has_equals
                || kind.is_empty()
                || !kind
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
            {
                return Err(error("bad attribute type"));
            }

            // attributeValue, up to an unescaped ',' or '+' (RFC 4514 §3)
            let mut value = String::new();
            let mut bytes: Vec<u8> = Vec::new();
            let mut separator = None;
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        let Some(next) = chars.next() else {
                            return Err(error("dangling escape"));
                        };
                        if next.is_ascii_hexdigit() {
                            let Some(low) = chars.next().filter(char::is_ascii_hexdigit) else {
                                return Err(error("bad hex escape"));
                            };
                            let pair = format!("{next}{low}");
                            // Hex pairs may spell a multi-byte UTF-8 sequence: collect bytes.
                            bytes.push(
                                u8::from_str_radix(&pair, 16)
                                    .map_err(|_| error("bad hex escape"))?,
                            );
                            continue;
                        }
                        flush_bytes(&mut bytes, &mut value)
                            .map_err(|_| error("bad utf-8 in escape"))?;
                        value.push(next);
                    }
                    ',' | ';' | '+' => {
                        separator = Some(c);
                        break;
                    }
                    c => {
                        flush_bytes(&mut bytes, &mut value)
                            .map_err(|_| error("bad utf-8 in escape"))?;
                        value.push(c);
                    }
                }
            }
            flush_bytes(&mut bytes, &mut value).map_err(|_| error("bad utf-8 in escape"))?;
            component.push((kind, value.trim().to_lowercase()));

            match separator {
                Some('+') => continue,
                Some(_) => {
                    component.sort();
                    components.push(std::mem::take(&mut component));
                }
                None => {
                    component.sort();
                    components.push(component);
                    break;
                }
            }
        }
        Ok(Dn { components })
    }

    /// The DN one level up; the root DN has no parent.
    pub fn parent(&self) -> Option<Dn> {
        (!self.components.is_empty()).then(|| Dn {
            components: self.components[1..].to_vec(),
        })
    }

    /// Whether `self` is directly below `parent` (without building the parent DN).
    pub fn is_child_of(&self, parent: &Dn) -> bool {
        self.components.len() == parent.components.len() + 1
            && self.components[1..] == parent.components[..]
    }

    /// Whether `self` is `base` or below it.
    pub fn is_within(&self, base: &Dn) -> bool {
        self.components.len() >= base.components.len()
            && self.components[self.components.len() - base.components.len()..] == base.components
    }

    /// How many components the DN has.
    pub fn depth(&self) -> usize {
        self.components.len()
    }

    /// The value of the leaf component's first attribute (`mail` in `mail=x,ou=aliases,...`).
    pub fn leaf_value(&self) -> Option<&str> {
        self.components
            .first()
            .and_then(|c| c.first())
            .map(|(_, v)| v.as_str())
    }

    /// The type of the leaf component's first attribute, lowercased.
    pub fn leaf_kind(&self) -> Option<&str> {
        self.components
            .first()
            .and_then(|c| c.first())
            .map(|(k, _)| k.as_str())
    }

    /// Whether the leaf component is the single `kind=value` (both compared without case).
    pub fn leaf_is(&self, kind: &str, value: &str) -> bool {
        matches!(
            self.components.first().map(Vec::as_slice),
            Some([(k, v)]) if k.eq_ignore_ascii_case(kind) && v.eq_ignore_ascii_case(value)
        )
    }

    /// The value of the first component whose type is `kind`, searching from the leaf.
    pub fn value_of(&self, kind: &str) -> Option<&str> {
        self.components
            .iter()
            .flatten()
            .find(|(k, _)| k.eq_ignore_ascii_case(kind))
            .map(|(_, v)| v.as_str())
    }
}

impl fmt::Display for Dn {
    /// The normalised string form (lowercase, escaped), stable for use as a map key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, component) in self.components.iter().enumerate() {
            if index > 0 {
                f.write_str(",")?;
            }
            for (part, (kind, value)) in component.iter().enumerate() {
                if part > 0 {
                    f.write_str("+")?;
                }
                write!(f, "{kind}={}", escape_value(value))?;
            }
        }
        Ok(())
    }
}

fn flush_bytes(bytes: &mut Vec<u8>, value: &mut String) -> Result<(), std::str::Utf8Error> {
    if !bytes.is_empty() {
        value.push_str(std::str::from_utf8(bytes)?);
        bytes.clear();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_neutralises_every_dn_metacharacter() {
        assert_eq!(escape_value("a,b+c"), "a\\,b\\+c");
        assert_eq!(escape_value(" lead"), "\\ lead");
        assert_eq!(escape_value("trail "), "trail\\ ");
        assert_eq!(escape_value("#x"), "\\#x");
        assert_eq!(escape_value("a=b\0"), "a\\3Db\\00");
        assert_eq!(escape_value("x\\y\"<>;"), "x\\\\y\\\"\\<\\>\\;");
    }

    #[test]
    fn an_escaped_value_parses_back_to_itself() {
        for value in ["a,b", "+x+", " a ", "#h", "q\"\\", "ünï"] {
            let dn = Dn::parse(&format!("{},o=test", rdn("cn", value))).unwrap();
            assert_eq!(
                dn.leaf_value(),
                Some(value.to_lowercase().trim()),
                "{value:?}"
            );
            assert_eq!(dn.depth(), 2);
        }
    }

    #[test]
    fn comparison_ignores_case_and_spaces_around_separators() {
        let a = Dn::parse("Mail=Bob@Example.Test, ou=Aliases,DC=example").unwrap();
        let b = Dn::parse("mail=bob@example.test,ou=aliases,dc=example").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.to_string(), "mail=bob@example.test,ou=aliases,dc=example");
    }

    #[test]
    fn hex_escapes_may_spell_utf8() {
        let dn = Dn::parse("cn=J\\C3\\B6rg,o=test").unwrap();
        assert_eq!(dn.leaf_value(), Some("jörg"));
    }

    #[test]
    fn parent_and_within_follow_the_tree() {
        let leaf = Dn::parse("uid=u1,ou=mailboxes,mailfoldDomainName=a.test,o=t").unwrap();
        let base = Dn::parse("o=t").unwrap();
        assert!(leaf.is_within(&base));
        assert!(!base.is_within(&leaf));
        assert_eq!(leaf.parent().unwrap().leaf_value(), Some("mailboxes"));
        assert_eq!(leaf.value_of("mailfolddomainname"), Some("a.test"));
        assert!(leaf.is_child_of(&leaf.parent().unwrap()));
        assert!(!leaf.is_child_of(&base) && !base.is_child_of(&leaf) && !leaf.is_child_of(&leaf));
    }

    #[test]
    fn malformed_dns_are_errors_not_panics() {
        for input in ["cn", "=x", "cn=a\\", "cn=a\\4", "cn=a\\ff", "c n=x"] {
            assert!(Dn::parse(input).is_err(), "{input:?} parsed");
        }
    }
}
