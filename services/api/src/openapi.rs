//! The OpenAPI 3 document of the JSON API, served at `/v1/openapi.json`, and its Markdown
//! rendering, which is the reference part of docs/api.md.
//!
//! The document (`services/api/openapi.json`) is the one description of the API: the tests
//! below check that every operation it lists is routed (and no other method on its paths), and
//! that docs/api.md holds exactly its current rendering. After changing the document, run
//! `MAILFOLD_BLESS=1 cargo test -p mailfold-api openapi` to rewrite that part of docs/api.md.

use std::fmt::Write as _;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// The document, as shipped.
pub const DOCUMENT: &str = include_str!("../openapi.json");

/// The methods an OpenAPI path item may hold, in the order they are rendered.
pub const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// Marks the start of the generated part of docs/api.md.
pub const BEGIN: &str = "<!-- generated from services/api/openapi.json: do not edit below -->";
/// Marks its end.
pub const END: &str = "<!-- end of generated part -->";

/// `GET /v1/openapi.json`.
pub async fn document() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT).into_response()
}

/// The Markdown reference of every operation and schema.
pub fn render_markdown(document: &Value) -> String {
    let mut out = String::new();
    let schemes = &document["components"]["securitySchemes"];
    let _ = writeln!(out, "## Endpoints\n");
    for (path, item) in document["paths"].as_object().into_iter().flatten() {
        for method in METHODS {
            let Some(operation) = item.get(method) else {
                continue;
            };
            let _ = writeln!(out, "### `{} {path}`\n", method.to_uppercase());
            let _ = writeln!(out, "{}\n", text(&operation["summary"]));
            if let Some(description) = operation["description"].as_str() {
                let _ = writeln!(out, "{description}\n");
            }
            let auth: Vec<String> = operation["security"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s.as_object()?.keys().next().cloned())
                .map(|name| format!("{} (`{name}`)", text(&schemes[&name]["description"])))
                .collect();
            let _ = writeln!(out, "Authentication: {}\n", auth.join(" or "));
            let parameters: Vec<String> = operation["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| {
                    format!(
                        "`{}` ({}): {}",
                        text(&p["name"]),
                        text(&p["in"]),
                        text(&p["description"])
                    )
                })
                .collect();
            if !parameters.is_empty() {
                let _ = writeln!(out, "Parameters: {}\n", parameters.join("; "));
            }
            if let Some(schema) = operation["requestBody"]["content"]["application/json"]["schema"]
                .get("$ref")
                .and_then(Value::as_str)
            {
                let name = schema.rsplit('/').next().unwrap_or(schema);
                let _ = writeln!(out, "Body: [`{name}`](#{})\n", name.to_lowercase());
            }
            let _ = writeln!(out, "| status | meaning |\n| --- | --- |");
            for (status, response) in operation["responses"].as_object().into_iter().flatten() {
                let _ = writeln!(out, "| {status} | {} |", text(&response["description"]));
            }
            out.push('\n');
        }
    }

    let _ = writeln!(out, "## Schemas\n");
    for (name, schema) in document["components"]["schemas"]
        .as_object()
        .into_iter()
        .flatten()
    {
        let _ = writeln!(out, "### {name}\n");
        if let Some(description) = schema["description"].as_str() {
            let _ = writeln!(out, "{description}\n");
        }
        let required: Vec<&str> = schema["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let Some(properties) = schema["properties"].as_object() else {
            continue;
        };
        let _ = writeln!(
            out,
            "| field | type | required | meaning |\n| --- | --- | --- | --- |"
        );
        for (field, property) in properties {
            let needed = if required.contains(&field.as_str()) {
                "yes"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "| `{field}` | {} | {needed} | {} |",
                type_of(property),
                text(&property["description"])
            );
        }
        out.push('\n');
    }
    out
}

/// A short type: `string`, `integer or null`, `list of string`, a schema's name, an enum.
fn type_of(schema: &Value) -> String {
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.rsplit('/').next().unwrap_or(reference);
        return format!("[{name}](#{})", name.to_lowercase());
    }
    if let Some(values) = schema["enum"].as_array() {
        let values: Vec<String> = values.iter().map(|v| format!("`{}`", text(v))).collect();
        return values.join(", ");
    }
    let kinds: Vec<String> = match &schema["type"] {
        Value::String(kind) => vec![kind.clone()],
        Value::Array(kinds) => kinds.iter().map(text).collect(),
        _ => vec!["any".into()],
    };
    kinds
        .iter()
        .map(|kind| match kind.as_str() {
            "array" => format!("list of {}", type_of(&schema["items"])),
            other => other.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" or ")
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn parsed() -> Value {
        serde_json::from_str(DOCUMENT).expect("openapi.json is JSON")
    }

    fn references(value: &Value, found: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    found.push(r.clone());
                }
                map.values().for_each(|v| references(v, found));
            }
            Value::Array(values) => values.iter().for_each(|v| references(v, found)),
            _ => {}
        }
    }

    #[test]
    fn the_document_is_openapi_3_and_every_reference_resolves() {
        let document = parsed();
        assert!(document["openapi"].as_str().unwrap().starts_with("3."));
        let mut found = Vec::new();
        references(&document, &mut found);
        assert!(!found.is_empty());
        for reference in found {
            let name = reference.trim_start_matches("#/components/schemas/");
            assert!(
                document["components"]["schemas"].get(name).is_some(),
                "{reference} does not resolve"
            );
        }
    }

    #[test]
    fn every_operation_documents_its_errors_with_the_error_schema() {
        let document = parsed();
        for (path, item) in document["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let responses = operation["responses"].as_object().unwrap();
                assert!(responses.contains_key("401"), "{method} {path} needs 401");
                for (status, response) in responses {
                    if status.starts_with('4') || status.starts_with('5') {
                        let schema = &response["content"]["application/json"]["schema"]["$ref"];
                        assert_eq!(
                            schema, "#/components/schemas/Error",
                            "{method} {path} {status}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn docs_api_md_holds_the_current_rendering() {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/api.md");
        let current = std::fs::read_to_string(&path).expect("docs/api.md");
        let (head, rest) = current
            .split_once(BEGIN)
            .expect("docs/api.md has the begin marker");
        let (_, tail) = rest
            .split_once(END)
            .expect("docs/api.md has the end marker");
        let wanted = format!("{head}{BEGIN}\n\n{}{END}{tail}", render_markdown(&parsed()));
        if std::env::var_os("MAILFOLD_BLESS").is_some() {
            std::fs::write(&path, &wanted).expect("rewriting docs/api.md");
            return;
        }
        assert!(
            current == wanted,
            "docs/api.md is out of date: run MAILFOLD_BLESS=1 cargo test -p mailfold-api openapi"
        );
    }
}
