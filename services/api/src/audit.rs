//! The audit trail: one log event for every change made through the API.
//!
//! Events go to the `mailfold::audit` log target at `info`, so that a log collector can route
//! them apart from the rest (with `[log] format = "json"` each is one JSON object). Each names
//! who made the change, what it did to which object, and the object before and after, as the
//! API shows it (never a password or a token).

use serde_json::Value;

/// Who made a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// The platform operator.
    Operator,
    /// A tenant administrator, as `<uid>@<tenant>`.
    Admin(String),
}

impl std::fmt::Display for Actor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Actor::Operator => f.write_str("operator"),
            Actor::Admin(login) => write!(f, "admin:{login}"),
        }
    }
}

/// Records one change. `before` is `None` for a creation, `after` for a removal.
pub fn record(
    actor: &Actor,
    action: &str,
    object: &str,
    before: Option<&Value>,
    after: Option<&Value>,
) {
    let text = |value: Option<&Value>| value.map_or_else(|| "null".to_string(), Value::to_string);
    tracing::info!(
        target: "mailfold::audit",
        actor = %actor,
        action,
        object,
        before = %text(before),
        after = %text(after),
        "change"
    );
}
