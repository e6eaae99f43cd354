//! Reading what a client sends: the JSON body (capped, typed field by field) and paging.
//!
//! Fields are read one by one from the parsed object rather than through a derived
//! `Deserialize`, for two reasons: a wrong value must be answered `422` naming its field, and a
//! change must tell "absent" (leave it) from `null` (remove it). Unknown fields are refused, so a
//! misspelt field is an error instead of a silent no-op.

use std::collections::HashMap;

use axum::body::Body;
use axum::http::{HeaderMap, header};
use mailfold_directory::provision::{Edit, LimitsUpdate};
use mailfold_directory::{Service, Status};
use serde_json::{Map, Value};

use crate::error::ApiError;

/// Reads a JSON object body of at most `limit` bytes.
pub async fn json_object(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Fields, ApiError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(ApiError::unsupported_media_type());
    }
    // Refuse an announced oversize body before reading any of it.
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|length| length > limit as u64) {
        return Err(ApiError::too_large(limit));
    }
    let bytes = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| ApiError::too_large(limit))?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(Fields { map }),
        Ok(_) => Err(ApiError::bad_request("the body must be a JSON object")),
        Err(e) => Err(ApiError::bad_request(format!("malformed json: {e}"))),
    }
}

/// The fields of a JSON object, taken one at a time.
#[derive(Debug)]
pub struct Fields {
    map: Map<String, Value>,
}

impl Fields {
    /// Fields of an object value (for nested objects such as `limits`).
    pub fn of(field: &str, value: Value) -> Result<Fields, ApiError> {
        match value {
            Value::Object(map) => Ok(Fields { map }),
            _ => Err(ApiError::invalid(
                field,
                format!("{field}: must be an object"),
            )),
        }
    }

    /// Refuses any field not taken.
    pub fn finish(self) -> Result<(), ApiError> {
        match self.map.keys().next() {
            Some(unknown) => Err(ApiError::invalid(
                unknown,
                format!("{unknown}: unknown field"),
            )),
            None => Ok(()),
        }
    }

    fn take(&mut self, name: &str) -> Option<Value> {
        self.map.remove(name)
    }

    /// A string that must be there.
    pub fn string(&mut self, name: &str) -> Result<String, ApiError> {
        self.optional_string(name)?
            .ok_or_else(|| ApiError::invalid(name, format!("{name}: required")))
    }

    /// A string, or nothing (absent or null).
    pub fn optional_string(&mut self, name: &str) -> Result<Option<String>, ApiError> {
        Ok(self.edit_string(name)?.flatten())
    }

    /// A string change: absent `None`, null `Some(None)`.
    pub fn edit_string(&mut self, name: &str) -> Result<Edit<String>, ApiError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::Null) => Ok(Some(None)),
            Some(Value::String(text)) => Ok(Some(Some(text))),
            Some(_) => Err(ApiError::invalid(name, format!("{name}: must be a string"))),
        }
    }

    /// A list of strings, or nothing.
    pub fn strings(&mut self, name: &str) -> Result<Option<Vec<String>>, ApiError> {
        Ok(self.edit_strings(name)?.flatten())
    }

    /// A list change: absent `None`, null `Some(None)`.
    pub fn edit_strings(&mut self, name: &str) -> Result<Edit<Vec<String>>, ApiError> {
        let wrong = || ApiError::invalid(name, format!("{name}: must be a list of strings"));
        match self.take(name) {
            None => Ok(None),
            Some(Value::Null) => Ok(Some(None)),
            Some(Value::Array(values)) => values
                .into_iter()
                .map(|v| match v {
                    Value::String(text) => Ok(text),
                    _ => Err(wrong()),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(|list| Some(Some(list))),
            Some(_) => Err(wrong()),
        }
    }

    /// A count or size, or nothing.
    pub fn number(&mut self, name: &str) -> Result<Option<u64>, ApiError> {
        Ok(self.edit_number(name)?.flatten())
    }

    /// A number change: absent `None`, null `Some(None)`.
    pub fn edit_number(&mut self, name: &str) -> Result<Edit<u64>, ApiError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::Null) => Ok(Some(None)),
            Some(Value::Number(n)) => n.as_u64().map(|n| Some(Some(n))).ok_or_else(|| {
                ApiError::invalid(name, format!("{name}: must be a whole number from 0"))
            }),
            Some(_) => Err(ApiError::invalid(name, format!("{name}: must be a number"))),
        }
    }

    /// A status keyword, or nothing.
    pub fn status(&mut self, name: &str) -> Result<Option<Status>, ApiError> {
        let Some(text) = self.optional_string(name)? else {
            return Ok(None);
        };
        let status = match text.as_str() {
            "active" => Status::Active,
            "suspended" => Status::Suspended,
            "disabled" => Status::Disabled,
            "deleting" => Status::Deleting,
            _ => {
                return Err(ApiError::invalid(
                    name,
                    format!("{name}: one of active, suspended, disabled, deleting"),
                ));
            }
        };
        Ok(Some(status))
    }

    /// A list of service keywords: absent `None`, null `Some(None)` (every service).
    pub fn services(&mut self, name: &str) -> Result<Edit<Vec<Service>>, ApiError> {
        let Some(list) = self.edit_strings(name)? else {
            return Ok(None);
        };
        let Some(list) = list else {
            return Ok(Some(None));
        };
        let services = list
            .iter()
            .map(|s| {
                Service::parse(s).ok_or_else(|| {
                    ApiError::invalid(
                        name,
                        format!(
                            "{name}: {s:?} is not one of deliver, smtp, imap, pop3, sieve, api"
                        ),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(Some(services)))
    }

    /// The `limits` object: each limit a number, or null to remove it.
    pub fn limits(&mut self, name: &str) -> Result<LimitsUpdate, ApiError> {
        let Some(value) = self.take(name) else {
            return Ok(LimitsUpdate::default());
        };
        let mut limits = Fields::of(name, value)?;
        let update = LimitsUpdate {
            max_domains: limits.edit_number("max_domains")?,
            max_mailboxes: limits.edit_number("max_mailboxes")?,
            max_aliases: limits.edit_number("max_aliases")?,
            max_quota_bytes: limits.edit_number("max_quota_bytes")?,
            default_quota_bytes: limits.edit_number("default_quota_bytes")?,
            max_message_size: limits.edit_number("max_message_size")?,
        };
        limits.finish()?;
        Ok(update)
    }
}

/// The most items one page may hold.
pub const MAX_PAGE: usize = 1000;
/// Items per page when the client does not say.
pub const DEFAULT_PAGE: usize = 100;

/// Which page of a list: `?limit=N&after=KEY`, keys in the list's sort order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// Most items to return.
    pub limit: usize,
    /// Return items whose key sorts after this one.
    pub after: Option<String>,
}

impl Page {
    /// Reads the paging parameters; any other parameter is refused.
    pub fn from_query(query: &HashMap<String, String>) -> Result<Page, ApiError> {
        let mut page = Page {
            limit: DEFAULT_PAGE,
            after: None,
        };
        for (key, value) in query {
            match key.as_str() {
                "limit" => {
                    page.limit = value
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=MAX_PAGE).contains(n))
                        .ok_or_else(|| {
                            ApiError::invalid("limit", format!("limit: 1 to {MAX_PAGE}"))
                        })?;
                }
                "after" => page.after = Some(value.to_lowercase()),
                other => {
                    return Err(ApiError::invalid(
                        other,
                        format!("{other}: unknown parameter"),
                    ));
                }
            }
        }
        Ok(page)
    }

    /// The page of `items` (sorted by `key`), and the key to ask for the next one.
    pub fn cut<T>(&self, items: Vec<T>, key: impl Fn(&T) -> String) -> (Vec<T>, Option<String>) {
        let mut page: Vec<T> = items
            .into_iter()
            .filter(|item| self.after.as_ref().is_none_or(|after| key(item) > *after))
            .take(self.limit + 1)
            .collect();
        let more = page.len() > self.limit;
        page.truncate(self.limit);
        let next = if more { page.last().map(&key) } else { None };
        (page, next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(value: Value) -> Fields {
        Fields::of("body", value).unwrap()
    }

    #[test]
    fn absent_null_and_values_are_told_apart() {
        let mut f = fields(json!({"a": null, "b": "x", "n": 5}));
        assert_eq!(f.edit_string("a").unwrap(), Some(None));
        assert_eq!(f.edit_string("b").unwrap(), Some(Some("x".into())));
        assert_eq!(f.edit_string("c").unwrap(), None);
        assert_eq!(f.edit_number("n").unwrap(), Some(Some(5)));
        f.finish().unwrap();
    }

    #[test]
    fn wrong_types_and_unknown_fields_name_the_field() {
        let mut f = fields(json!({"targets": "one", "quota_bytes": -1}));
        assert_eq!(
            f.strings("targets").unwrap_err().field.as_deref(),
            Some("targets")
        );
        assert_eq!(
            f.number("quota_bytes").unwrap_err().field.as_deref(),
            Some("quota_bytes")
        );
        let f = fields(json!({"colour": "blue"}));
        assert_eq!(f.finish().unwrap_err().field.as_deref(), Some("colour"));
    }

    #[test]
    fn pages_continue_after_the_last_key() {
        let query = HashMap::from([("limit".to_string(), "2".to_string())]);
        let page = Page::from_query(&query).unwrap();
        let (first, next) = page.cut(vec!["a", "b", "c"], |s| s.to_string());
        assert_eq!((first, next.as_deref()), (vec!["a", "b"], Some("b")));
        let page = Page {
            after: next,
            ..page
        };
        assert_eq!(
            page.cut(vec!["a", "b", "c"], |s| s.to_string()),
            (vec!["c"], None)
        );
        for bad in ["0", "1001", "x"] {
            let query = HashMap::from([("limit".to_string(), bad.to_string())]);
            assert!(Page::from_query(&query).is_err(), "{bad}");
        }
    }
}
