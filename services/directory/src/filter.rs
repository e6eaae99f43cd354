//! Search filters, built as values and rendered in one place.
//!
//! The directory logic builds a [`Filter`] tree; the LDAP backend renders it with
//! [`Filter::to_ldap`], which escapes every value by RFC 4515 §3, and the LDIF backend evaluates
//! the same tree with [`Filter::matches`]. No code builds a filter string by hand, so a value
//! from a client cannot change a filter's structure (`*` stays a literal star, `)(` stays text).

use crate::entry::Entry;

/// A search filter over the attributes Mailfold queries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    /// `(attr=value)`: equality, case-insensitive (every attribute Mailfold searches on has a
    /// case-ignoring equality rule in its schema).
    Equal(&'static str, String),
    /// `(attr=*)`.
    Present(&'static str),
    /// `(&...)`.
    And(Vec<Filter>),
    /// `(|...)`.
    Or(Vec<Filter>),
}

impl Filter {
    /// `(attr=value)`.
    pub fn equal(attribute: &'static str, value: impl Into<String>) -> Filter {
        Filter::Equal(attribute, value.into())
    }

    /// `(objectClass=class)`.
    pub fn class(class: &'static str) -> Filter {
        Filter::Equal("objectClass", class.to_string())
    }

    /// The RFC 4515 string form, values escaped.
    pub fn to_ldap(&self) -> String {
        let mut out = String::new();
        self.render(&mut out);
        out
    }

    fn render(&self, out: &mut String) {
        match self {
            Filter::Equal(attribute, value) => {
                out.push('(');
                out.push_str(attribute);
                out.push('=');
                out.push_str(&escape_value(value));
                out.push(')');
            }
            Filter::Present(attribute) => {
                out.push('(');
                out.push_str(attribute);
                out.push_str("=*)");
            }
            Filter::And(parts) | Filter::Or(parts) => {
                out.push_str(if matches!(self, Filter::And(_)) {
                    "(&"
                } else {
                    "(|"
                });
                for part in parts {
                    part.render(out);
                }
                out.push(')');
            }
        }
    }

    /// Whether `entry` matches, as an LDAP server with the Mailfold schema would decide:
    /// equality ignores case, and an attribute also matches through its subtypes
    /// (`mailfoldDomainName` matches `mailfoldDomainAliasName` values, RFC 4512 §2.5.1).
    pub fn matches(&self, entry: &Entry) -> bool {
        match self {
            Filter::Equal(attribute, value) => values_with_subtypes(entry, attribute)
                .any(|v| v.to_lowercase() == value.to_lowercase()),
            Filter::Present(attribute) => values_with_subtypes(entry, attribute).next().is_some(),
            Filter::And(parts) => parts.iter().all(|p| p.matches(entry)),
            Filter::Or(parts) => parts.iter().any(|p| p.matches(entry)),
        }
    }
}

/// The one attribute hierarchy of the Mailfold schema that searches rely on.
const SUBTYPES: &[(&str, &str)] = &[("mailfoldDomainName", "mailfoldDomainAliasName")];

fn values_with_subtypes<'e>(
    entry: &'e Entry,
    attribute: &'static str,
) -> impl Iterator<Item = &'e String> {
    let subtype = SUBTYPES
        .iter()
        .find(|(parent, _)| parent.eq_ignore_ascii_case(attribute))
        .map(|(_, child)| *child);
    entry
        .values(attribute)
        .iter()
        .chain(subtype.map(|s| entry.values(s)).unwrap_or(&[]).iter())
}

/// RFC 4515 §3: `*`, `(`, `)`, `\` and NUL are written as `\XX` in an assertion value. Other
/// bytes may stay as UTF-8.
pub fn escape_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '*' => out.push_str("\\2a"),
            '(' => out.push_str("\\28"),
            ')' => out.push_str("\\29"),
            '\\' => out.push_str("\\5c"),
            '\0' => out.push_str("\\00"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_values_cannot_change_the_filter_structure() {
        let filter = Filter::And(vec![
            Filter::class("mailfoldMailbox"),
            Filter::equal("mailfoldAddress", "*)(uid=*"),
        ]);
        assert_eq!(
            filter.to_ldap(),
            "(&(objectClass=mailfoldMailbox)(mailfoldAddress=\\2a\\29\\28uid=\\2a))"
        );
        assert_eq!(escape_value("a\\b\0"), "a\\5cb\\00");
    }

    #[test]
    fn equality_ignores_case_and_follows_subtypes() {
        let mut entry = Entry::new("mailfoldDomainName=a.test,o=t");
        entry.push("objectClass", "mailfoldDomain");
        entry.push("mailfoldDomainName", "a.test");
        entry.push("mailfoldDomainAliasName", "B.test");

        assert!(Filter::equal("mailfoldDomainName", "A.TEST").matches(&entry));
        assert!(Filter::equal("mailfoldDomainName", "b.test").matches(&entry));
        assert!(!Filter::equal("mailfoldDomainAliasName", "a.test").matches(&entry));
        assert!(Filter::Present("mailfoldDomainName").matches(&entry));
        assert!(!Filter::Present("mailfoldCatchAllTarget").matches(&entry));
    }

    #[test]
    fn a_star_value_is_a_literal_not_a_wildcard() {
        let mut entry = Entry::new("mail=x@a.test,o=t");
        entry.push("mailfoldAddress", "x@a.test");
        assert!(!Filter::equal("mailfoldAddress", "*").matches(&entry));
        let or = Filter::Or(vec![
            Filter::equal("mail", "y"),
            Filter::equal("mailfoldAddress", "X@A.test"),
        ]);
        assert!(or.matches(&entry));
    }
}
