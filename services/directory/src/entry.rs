//! A directory entry as both backends see it: a DN and its attributes.
//!
//! Attribute names compare without regard to case (RFC 4512 §2.5), so lookups go through
//! [`Entry::values`], never through the vector directly. Values keep the case they were stored
//! with; matching rules are applied by the callers that know the attribute.

/// One attribute of an entry, with its values in stored order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    /// The attribute description as written (`mailfoldAddress`, `userPassword`).
    pub name: String,
    /// The values, UTF-8.
    pub values: Vec<String>,
}

/// A directory entry: its distinguished name and attributes.
///
/// Values that are not UTF-8 (a `jpegPhoto` in a migrated directory) are kept apart in
/// `binary` so an LDIF file survives a rewrite unchanged; Mailfold itself never reads them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Entry {
    /// The DN as written in the source (LDIF file or LDAP server).
    pub dn: String,
    /// The textual attributes.
    pub attributes: Vec<Attribute>,
    /// Attributes whose values are not valid UTF-8, by name.
    pub binary: Vec<(String, Vec<Vec<u8>>)>,
}

impl Entry {
    /// An entry with no attributes yet.
    pub fn new(dn: impl Into<String>) -> Entry {
        Entry {
            dn: dn.into(),
            ..Entry::default()
        }
    }

    /// Every value of the attribute `name` (case-insensitive), empty when absent.
    pub fn values(&self, name: &str) -> &[String] {
        self.attributes
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case(name))
            .map(|a| a.values.as_slice())
            .unwrap_or(&[])
    }

    /// The first value of `name`, if any.
    pub fn first(&self, name: &str) -> Option<&str> {
        self.values(name).first().map(String::as_str)
    }

    /// Whether the entry has `objectClass: class` (case-insensitive).
    pub fn has_class(&self, class: &str) -> bool {
        self.values("objectClass")
            .iter()
            .any(|c| c.eq_ignore_ascii_case(class))
    }

    /// Appends `value` to the attribute `name`, creating the attribute when absent.
    pub fn push(&mut self, name: &str, value: impl Into<String>) {
        let value = value.into();
        match self
            .attributes
            .iter_mut()
            .find(|a| a.name.eq_ignore_ascii_case(name))
        {
            Some(attribute) => attribute.values.push(value),
            None => self.attributes.push(Attribute {
                name: name.to_string(),
                values: vec![value],
            }),
        }
    }

    /// Replaces every value of `name`; an empty `values` removes the attribute.
    pub fn set(&mut self, name: &str, values: Vec<String>) {
        self.attributes
            .retain(|a| !a.name.eq_ignore_ascii_case(name));
        if !values.is_empty() {
            self.attributes.push(Attribute {
                name: name.to_string(),
                values,
            });
        }
    }
}
