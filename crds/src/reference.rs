//! The field reference (`docs/reference.md`), rendered from the generated CRD schemas so it
//! cannot drift from what the API server enforces.

use std::fmt::Write as _;

use serde_json::Value;

use crate::crds;

/// Renders every field of every keygate kind as Markdown: type, default, description and
/// validation (bounds, patterns, formats, CEL rules).
pub fn reference_markdown() -> String {
    let mut out = String::from(
        "# keygate resource reference\n\n\
         <!-- Generated from the CRD schemas by keygate_crds::reference_markdown(); do not edit.\n     \
         Regenerate with: KEYGATE_BLESS=1 cargo test -p keygate-crds -->\n\n\
         All kinds are namespaced and belong to `keygate.dev/v1alpha1`; `kubectl get keygate` \
         lists them all. Durations are Go duration strings (`90s`, `5m`, `1h30m`, `250ms`).\n",
    );
    for crd in crds() {
        let names = &crd.spec.names;
        let _ = write!(
            out,
            "\n## {kind}\n\n`kubectl get {plural}` (short name{s}: {short})\n\n",
            kind = names.kind,
            plural = names.plural,
            s = if names.short_names.as_ref().is_some_and(|n| n.len() > 1) {
                "s"
            } else {
                ""
            },
            short = names
                .short_names
                .iter()
                .flatten()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", "),
        );
        let Some(schema) = crd
            .spec
            .versions
            .first()
            .and_then(|v| v.schema.as_ref())
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .and_then(|s| serde_json::to_value(s).ok())
        else {
            continue;
        };
        if let Some(description) = schema.get("description").and_then(Value::as_str) {
            let _ = writeln!(out, "{}\n", one_line(description));
        }
        for rule in rules(&schema) {
            let _ = writeln!(out, "- {rule}");
        }
        if schema.get("x-kubernetes-validations").is_some() {
            out.push('\n');
        }
        for part in ["spec", "status"] {
            let Some(node) = schema.pointer(&format!("/properties/{part}")) else {
                continue;
            };
            let _ = writeln!(out, "### {} `{part}`\n", names.kind);
            out.push_str("| Field | Type | Default | Description | Validation |\n");
            out.push_str("|---|---|---|---|---|\n");
            fields(node, part, &mut out);
            out.push('\n');
        }
    }
    out
}

/// Writes one table row per property below `node`, depth first, in name order.
fn fields(node: &Value, path: &str, out: &mut String) {
    let Some(properties) = node.get("properties").and_then(Value::as_object) else {
        return;
    };
    let required: Vec<&str> = node
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for (name, child) in properties {
        let field = format!("{path}.{name}");
        let mut validation = Vec::new();
        if required.contains(&name.as_str()) {
            validation.push("required".to_owned());
        }
        validation.extend(constraints(child));
        let item = child.get("items");
        if let Some(item) = item {
            validation.extend(
                constraints(item)
                    .into_iter()
                    .map(|c| format!("each item: {c}")),
            );
        }
        let _ = writeln!(
            out,
            "| `{field}` | {ty} | {default} | {description} | {validation} |",
            ty = type_name(child),
            default = child
                .get("default")
                .filter(|d| !d.is_object())
                .map(|d| format!("`{d}`"))
                .unwrap_or_default(),
            description = cell(
                child
                    .get("description")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
            ),
            validation = cell(&validation.join("; ")),
        );
        fields(child, &field, out);
        if let Some(item) = item {
            fields(item, &format!("{field}[]"), out);
        }
    }
}

/// `string`, `[]string`, `object`, …
fn type_name(node: &Value) -> String {
    let ty = node.get("type").and_then(Value::as_str).unwrap_or("any");
    match (ty, node.get("items")) {
        ("array", Some(item)) => format!("[]{}", type_name(item)),
        _ => ty.to_owned(),
    }
}

/// The validation keywords of one schema node, as short phrases.
fn constraints(node: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(values) = node.get("enum").and_then(Value::as_array) {
        let values: Vec<String> = values.iter().map(|v| format!("`{}`", plain(v))).collect();
        out.push(format!("one of {}", values.join(", ")));
    }
    if let Some(format) = node.get("format").and_then(Value::as_str)
        && !format.starts_with("int")
        && !format.starts_with("uint")
    {
        out.push(format!("format `{format}`"));
    }
    if let Some(pattern) = node.get("pattern").and_then(Value::as_str) {
        out.push(format!("pattern `{pattern}`"));
    }
    for (key, phrase) in [
        ("minimum", "≥"),
        ("maximum", "≤"),
        ("minLength", "length ≥"),
        ("maxLength", "length ≤"),
        ("minItems", "items ≥"),
        ("maxItems", "items ≤"),
    ] {
        if let Some(number) = node.get(key).and_then(Value::as_f64) {
            out.push(format!("{phrase} {number}"));
        }
    }
    if node.get("x-kubernetes-list-type").and_then(Value::as_str) == Some("set") {
        out.push("no duplicates".to_owned());
    }
    out.extend(rules(node));
    out
}

/// The CEL rules of one node as "message (`rule`)".
fn rules(node: &Value) -> Vec<String> {
    node.get("x-kubernetes-validations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|rule| {
            let text = rule.get("rule").and_then(Value::as_str).unwrap_or_default();
            match rule.get("message").and_then(Value::as_str) {
                Some(message) => format!("{message} (CEL `{}`)", one_line(text)),
                None => format!("CEL `{}`", one_line(text)),
            }
        })
        .collect()
}

fn plain(value: &Value) -> String {
    value
        .as_str()
        .map_or_else(|| value.to_string(), str::to_owned)
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Makes text safe inside a Markdown table cell.
fn cell(text: &str) -> String {
    one_line(text).replace('|', "\\|")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn lists_fields_with_defaults_and_rules() {
        let markdown = reference_markdown();
        assert!(markdown.contains("| `spec.tokens.accessTokenTtl` | string | `\"5m\"` |"));
        assert!(markdown.contains("rotation.gracePeriod must be shorter than rotation.every"));
        assert!(markdown.contains("| `spec.permissions` | []string |"));
        assert!(markdown.contains("## ApiKey"));
    }
}
