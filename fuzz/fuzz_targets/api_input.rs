//! Any bytes as an `Authorization` header, a query string and a JSON body of the API: each is
//! refused or accepted, and nothing panics. Tokens go through the token parser.
#![no_main]

use std::collections::HashMap;

use axum::http::{HeaderMap, HeaderValue, header};
use libfuzzer_sys::fuzz_target;
use mailfold_api::auth;
use mailfold_api::input::{Fields, Page};

fuzz_target!(|bytes: &[u8]| {
    if let Ok(value) = HeaderValue::from_bytes(bytes) {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, value);
        let _ = auth::credentials(&headers);
    }
    let Ok(text) = std::str::from_utf8(bytes) else { return };
    let query: HashMap<String, String> = text
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    if let Ok(page) = Page::from_query(&query) {
        let _ = page.cut(vec!["a".to_string(), "b".to_string()], Clone::clone);
    }
    if let Ok(value) = serde_json::from_str(text)
        && let Ok(mut fields) = Fields::of("body", value)
    {
        let _ = fields.strings("targets");
        let _ = fields.edit_string("description");
        let _ = fields.status("status");
        let _ = fields.services("services");
        let _ = fields.limits("limits");
        let _ = fields.edit_number("quota_bytes");
        let _ = fields.finish();
    }
});
