//! The configuration reference, generated from the schema itself.
//!
//! Every configuration type derives [`schemars::JsonSchema`], so its doc
//! comments, defaults and required keys are known at run time.
//! [`reference_markdown`] walks that schema and writes one entry per key:
//! the dotted key, its type, whether it is required, its default, and its
//! doc comment. `docs/operators.md` holds the output between marker
//! comments, and a test fails when the two differ, so the reference cannot
//! drift from the code.
use schemars::{JsonSchema, generate::SchemaSettings};
use serde_json::Value;

use crate::{Config, secrets::Secrets};

/// The line before the generated block in `docs/operators.md`.
pub const BEGIN_MARKER: &str = "<!-- config-reference:begin -->";
/// The line after the generated block in `docs/operators.md`.
pub const END_MARKER: &str = "<!-- config-reference:end -->";

/// The order sections are listed in; any section not named here follows,
/// alphabetically. Only the order depends on this list: every section of
/// the schema is rendered whether it is named here or not.
const SECTION_ORDER: &[&str] = &[
    "proxy",
    "gateway",
    "jump_host",
    "targets",
    "tls",
    "identities",
    "policy",
    "masking",
    "store",
    "approvals",
    "oidc",
    "admin",
];

/// The configuration reference in Markdown: every section and key of the
/// configuration file, then of the secrets file (`proxy.secrets_file`).
pub fn reference_markdown() -> String {
    let mut out = String::new();
    out.push_str(
        "Generated from the configuration types by `sluice_config::reference_markdown()`; \
         do not edit by hand. Keys are listed alphabetically within each section. \
         A key that is not required may be left out; `[[name]]` sections are arrays of \
         tables (write the header once per entry). Unknown keys are refused, and \
         `sluice config check FILE` validates a file, naming the key at fault.\n\n",
    );
    let config = Doc::of::<Config>();
    config.sections(&mut out, "", SECTION_ORDER);
    out.push_str(
        "### Secrets file (`proxy.secrets_file`)\n\n\
         A separate TOML file, owned by root (or the daemon's user) and unreadable by group and \
         others, holding the credentials sluice logs in with for targets with \
         `auth = \"inject\"`. Its errors never quote its text.\n\n",
    );
    Doc::of::<Secrets>().sections(&mut out, "", &[]);
    while out.ends_with("\n\n") {
        out.pop();
    }
    out
}

/// A generated JSON schema and its definitions.
struct Doc {
    root: Value,
}

/// One key's schema with `$ref`s and `Option`'s null branch resolved.
struct Resolved<'a> {
    /// The schema of the value (the referenced definition, if any).
    schema: &'a Value,
    /// The description written on the key itself (the field's doc comment).
    field_doc: Option<&'a str>,
    /// The description of the referenced type (its doc comment).
    type_doc: Option<&'a str>,
    /// The key's default, if the schema gives one.
    default: Option<&'a Value>,
    /// `x-sluice-hex`: integers read better in hexadecimal.
    hex: bool,
    /// `x-sluice-required`: required although the type has a default (the
    /// configuration's validation asks for it).
    required: bool,
}

impl Doc {
    fn of<T: JsonSchema>() -> Doc {
        let generator = SchemaSettings::draft2020_12().into_generator();
        Doc {
            root: generator.into_root_schema_for::<T>().to_value(),
        }
    }

    /// Follows `$ref` (into `$defs`).
    fn deref<'a>(&'a self, schema: &'a Value) -> &'a Value {
        let mut s = schema;
        while let Some(r) = s.get("$ref").and_then(Value::as_str) {
            let name = r.rsplit('/').next().unwrap_or(r);
            match self.root.get("$defs").and_then(|d| d.get(name)) {
                Some(def) => s = def,
                None => break,
            }
        }
        s
    }

    fn resolve<'a>(&'a self, prop: &'a Value) -> Resolved<'a> {
        let field_doc = prop.get("description").and_then(Value::as_str);
        let default = prop.get("default").filter(|d| !d.is_null());
        let hex = prop.get("x-sluice-hex").and_then(Value::as_bool) == Some(true);
        let required = prop.get("x-sluice-required").and_then(Value::as_bool) == Some(true);
        // `Option<T>` of a referenced type: `anyOf: [{$ref}, {type: null}]`.
        let inner = match prop.get("anyOf").and_then(Value::as_array) {
            Some(branches) => branches
                .iter()
                .find(|b| b.get("type").and_then(Value::as_str) != Some("null"))
                .unwrap_or(prop),
            None => prop,
        };
        let schema = self.deref(inner);
        let type_doc = if std::ptr::eq(schema, inner) {
            None
        } else {
            schema.get("description").and_then(Value::as_str)
        };
        Resolved {
            schema,
            field_doc,
            type_doc,
            default,
            hex,
            required,
        }
    }

    /// The table a key holds, if it is a table or an array of tables:
    /// (the table's schema, whether it is an array of tables).
    fn table_of<'a>(&'a self, r: &Resolved<'a>) -> Option<(&'a Value, bool)> {
        if is_table(r.schema) {
            return Some((r.schema, false));
        }
        if type_is(r.schema, "array") {
            let items = self.deref(r.schema.get("items")?);
            if is_table(items) {
                return Some((items, true));
            }
        }
        None
    }

    /// Renders the sections (tables and arrays of tables) of the root
    /// table, in `order` first.
    fn sections(&self, out: &mut String, path: &str, order: &[&str]) {
        let root = self.deref(&self.root);
        self.sections_of(out, root, path, order);
    }

    fn sections_of(&self, out: &mut String, table: &Value, path: &str, order: &[&str]) {
        let Some(props) = table.get("properties").and_then(Value::as_object) else {
            return;
        };
        let mut names: Vec<&String> = props.keys().collect();
        names.sort_by_key(|n| {
            (
                order.iter().position(|o| o == n).unwrap_or(order.len()),
                n.as_str(),
            )
        });
        let required = required_of(table);
        for name in names {
            let r = self.resolve(&props[name]);
            let Some((inner, array)) = self.table_of(&r) else {
                continue;
            };
            let dotted = join(path, name);
            let key_path = if array {
                format!("{dotted}[]")
            } else {
                dotted.clone()
            };
            if array {
                out.push_str(&format!("### `[[{dotted}]]`\n\n"));
            } else {
                out.push_str(&format!("### `[{dotted}]`\n\n"));
            }
            let presence = if r.required || required.contains(&name.as_str()) {
                "Required."
            } else if array {
                "Optional; none by default."
            } else if r.default.is_some() || !is_nullable(&props[name]) {
                "Optional; every key takes its default when the section is left out."
            } else {
                "Optional; absent by default."
            };
            out.push_str(presence);
            out.push_str("\n\n");
            for doc in docs(&r) {
                out.push_str(&clean_doc(doc));
                out.push_str("\n\n");
            }
            self.keys_of(out, inner, &key_path);
            self.sections_of(out, inner, &key_path, &[]);
        }
    }

    /// One list entry per plain key of `table` (not tables: those are
    /// sections of their own).
    fn keys_of(&self, out: &mut String, table: &Value, path: &str) {
        let Some(props) = table.get("properties").and_then(Value::as_object) else {
            return;
        };
        let required = required_of(table);
        let mut any = false;
        for (name, prop) in props {
            let r = self.resolve(prop);
            if self.table_of(&r).is_some() {
                continue;
            }
            any = true;
            let mut head = format!("- `{}` — {}", join(path, name), self.type_name(&r));
            if r.required || required.contains(&name.as_str()) {
                head.push_str(", **required**");
            } else {
                head.push_str(", optional");
                match r.default {
                    Some(Value::Array(items)) if items.is_empty() => {
                        head.push_str(", default empty")
                    }
                    Some(d) => head.push_str(&format!(", default {}", toml_value(d, r.hex))),
                    None if type_is(r.schema, "array") => head.push_str(", default empty"),
                    None => head.push_str(", not set by default"),
                }
            }
            out.push_str(&head);
            out.push('\n');
            for doc in docs(&r) {
                for line in clean_doc(doc).lines() {
                    if line.is_empty() {
                        out.push('\n');
                    } else {
                        out.push_str("  ");
                        out.push_str(line);
                        out.push('\n');
                    }
                }
            }
            for (value, doc) in self.variants(r.schema) {
                match doc {
                    Some(doc) => out.push_str(&format!(
                        "  - `{value}`: {}\n",
                        clean_doc(doc).replace('\n', " ")
                    )),
                    None => out.push_str(&format!("  - `{value}`\n")),
                }
            }
        }
        if any {
            out.push('\n');
        }
    }

    /// The values an enumeration (or an array of one) allows, with the
    /// variants' doc comments.
    fn variants<'a>(&'a self, schema: &'a Value) -> Vec<(String, Option<&'a str>)> {
        let schema = if type_is(schema, "array") {
            match schema.get("items") {
                Some(items) => self.deref(items),
                None => return Vec::new(),
            }
        } else {
            schema
        };
        if let Some(values) = schema.get("enum").and_then(Value::as_array) {
            return values
                .iter()
                .filter_map(|v| v.as_str().map(|s| (s.to_owned(), None)))
                .collect();
        }
        schema
            .get("oneOf")
            .and_then(Value::as_array)
            .map(|branches| {
                branches
                    .iter()
                    .filter_map(|b| {
                        let value = b.get("const")?.as_str()?.to_owned();
                        Some((value, b.get("description").and_then(Value::as_str)))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn type_name(&self, r: &Resolved<'_>) -> String {
        let s = r.schema;
        if !self.variants(s).is_empty() && !type_is(s, "array") {
            return "one of the values below".into();
        }
        if type_is(s, "array") {
            let items = s.get("items").map(|i| self.deref(i));
            return match items {
                Some(i) if !self.variants(i).is_empty() => "list of the values below".into(),
                Some(i) => format!("list of {}s", scalar_name(i)),
                None => "list".into(),
            };
        }
        scalar_name(s).into()
    }
}

/// The key's own doc comment, then its type's when that says more.
fn docs<'a>(r: &Resolved<'a>) -> Vec<&'a str> {
    let mut v = Vec::new();
    if let Some(d) = r.field_doc.filter(|d| !d.trim().is_empty()) {
        v.push(d);
    }
    if let Some(t) = r.type_doc.filter(|t| !t.trim().is_empty())
        && r.field_doc.is_none_or(|f| f.trim() != t.trim())
        && is_table(r.schema)
    {
        v.push(t);
    }
    v
}

fn required_of(table: &Value) -> Vec<&str> {
    table
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

fn type_is(schema: &Value, ty: &str) -> bool {
    match schema.get("type") {
        Some(Value::String(t)) => t == ty,
        Some(Value::Array(ts)) => ts.iter().any(|t| t.as_str() == Some(ty)),
        _ => false,
    }
}

fn is_nullable(prop: &Value) -> bool {
    type_is(prop, "null")
        || prop
            .get("anyOf")
            .and_then(Value::as_array)
            .is_some_and(|b| b.iter().any(|b| type_is(b, "null")))
}

fn is_table(schema: &Value) -> bool {
    type_is(schema, "object") && schema.get("properties").is_some()
}

fn scalar_name(schema: &Value) -> &'static str {
    for ty in ["string", "integer", "number", "boolean", "object"] {
        if type_is(schema, ty) {
            return match ty {
                "object" => "table",
                t => t,
            };
        }
    }
    "value"
}

/// A default as it would be written in TOML.
fn toml_value(v: &Value, hex: bool) -> String {
    let text = match v {
        Value::String(s) => format!("{s:?}"),
        Value::Number(n) if hex => match n.as_u64() {
            Some(n) => format!("0x{n:x}"),
            None => n.to_string(),
        },
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(toml_value_bare).collect();
            format!("[{}]", items.join(", "))
        }
        other => other.to_string(),
    };
    format!("`{text}`")
}

fn toml_value_bare(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

/// Doc comments are written for rustdoc: intra-doc links become plain
/// code spans, as the reference is read outside the API docs.
fn clean_doc(doc: &str) -> String {
    let mut out = String::with_capacity(doc.len());
    let mut rest = doc.trim();
    while let Some(start) = rest.find("[`") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let Some(close) = after.find("`]") else {
            out.push_str(&rest[start..]);
            rest = "";
            break;
        };
        let code = &after[..close + 1];
        let mut tail = &after[close + 2..];
        // `[`x`](path)`: drop the link target unless it is a web address.
        if let Some(target) = tail.strip_prefix('(')
            && let Some(end) = target.find(')')
        {
            let link = &target[..end];
            if link.starts_with("http") || link.starts_with('#') || link.ends_with(".md") {
                out.push('[');
                out.push_str(code);
                out.push_str("](");
                out.push_str(link);
                out.push(')');
                rest = &target[end + 1..];
                continue;
            }
            tail = &target[end + 1..];
        }
        out.push_str(code);
        rest = tail;
    }
    out.push_str(rest);
    out
}

/// Every key path a TOML document uses, dotted, with `[]` after the name of
/// an array of tables: `policy.rules[].action`.
pub fn keys_of_toml(doc: &toml::Table) -> Vec<String> {
    fn walk(table: &toml::Table, path: &str, out: &mut Vec<String>) {
        for (k, v) in table {
            let key = join(path, k);
            match v {
                toml::Value::Table(t) => {
                    out.push(key.clone());
                    walk(t, &key, out);
                }
                toml::Value::Array(items)
                    if !items.is_empty() && items.iter().all(toml::Value::is_table) =>
                {
                    let key = format!("{key}[]");
                    out.push(key.clone());
                    for item in items {
                        if let toml::Value::Table(t) = item {
                            walk(t, &key, out);
                        }
                    }
                }
                _ => out.push(key),
            }
        }
    }
    let mut out = Vec::new();
    walk(doc, "", &mut out);
    out.sort();
    out.dedup();
    out
}

/// Does the reference document `key` (as [`keys_of_toml`] writes it)?
pub fn mentions(reference: &str, key: &str) -> bool {
    let section = key.strip_suffix("[]");
    reference.contains(&format!("- `{key}` —"))
        || reference.contains(&format!("### `[{key}]`"))
        || section.is_some_and(|s| reference.contains(&format!("### `[[{s}]]`")))
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;

    fn repo() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    /// `docs/operators.md` holds the reference between its markers exactly
    /// as the code generates it. `SLUICE_BLESS=1` rewrites the block.
    #[test]
    fn operators_md_holds_the_generated_reference() {
        let path = repo().join("docs/operators.md");
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let begin = text
            .find(BEGIN_MARKER)
            .unwrap_or_else(|| panic!("{} has no {BEGIN_MARKER} line", path.display()))
            + BEGIN_MARKER.len();
        let end = text[begin..]
            .find(END_MARKER)
            .unwrap_or_else(|| panic!("{} has no {END_MARKER} line", path.display()))
            + begin;
        let want = format!("\n{}\n", reference_markdown());
        let have = &text[begin..end];
        if have == want {
            return;
        }
        if std::env::var_os("SLUICE_BLESS").is_some_and(|v| v == "1") {
            let new = format!("{}{want}{}", &text[..begin], &text[end..]);
            std::fs::write(&path, new).unwrap();
            return;
        }
        let first = have
            .lines()
            .zip(want.lines())
            .position(|(h, w)| h != w)
            .unwrap_or(have.lines().count().min(want.lines().count()));
        panic!(
            "the configuration reference in docs/operators.md is out of date \
             (first difference at line {} of the block: have {:?}, generated {:?}).\n\
             Regenerate it with:\n  SLUICE_BLESS=1 cargo nextest run --workspace --exclude sluice-ebpf \
             -E 'package(sluice-config)'",
            first + 1,
            have.lines().nth(first).unwrap_or("<end>"),
            want.lines().nth(first).unwrap_or("<end>"),
        );
    }

    /// Every key the shipped examples use is in the reference.
    #[test]
    fn reference_covers_the_examples() {
        let reference = reference_markdown();
        for (file, reference) in [
            ("deploy/examples/gateway.toml", &reference),
            ("deploy/examples/jump-host.toml", &reference),
            ("deploy/examples/secrets.toml.example", &reference),
        ] {
            let text = std::fs::read_to_string(repo().join(file)).unwrap();
            let doc: toml::Table = toml::from_str(&text).unwrap();
            let keys = keys_of_toml(&doc);
            assert!(!keys.is_empty(), "{file} has no keys");
            let missing: Vec<&String> = keys.iter().filter(|k| !mentions(reference, k)).collect();
            assert!(
                missing.is_empty(),
                "{file} uses keys the reference does not document: {missing:?}"
            );
        }
    }

    /// Every key of the schema gets an entry with a description.
    #[test]
    fn every_key_is_described() {
        let reference = reference_markdown();
        let mut entries = 0;
        let mut lines = reference.lines().peekable();
        while let Some(line) = lines.next() {
            if line.starts_with("- `") {
                entries += 1;
                let next = lines.peek().copied().unwrap_or("");
                assert!(
                    next.starts_with("  ") && !next.trim().is_empty(),
                    "no doc comment under {line:?}"
                );
            }
        }
        assert!(entries > 80, "only {entries} keys rendered");
        for key in [
            "- `proxy.upstream_mark` — integer, optional, default `0x5e1c0002`",
            "- `targets[].name` — string, **required**",
            "- `policy.rules[].users` — list of strings, optional, default empty",
            "- `store.durability` — one of the values below, optional, default `\"sync\"`",
            "### `[[policy.rules]]`",
            "### `[masking.detectors]`",
            "- `credentials[].password` — string, **required**",
            "- `policy.rules[].action` — one of the values below, **required**",
            "### `[[targets]]`\n\nRequired.",
        ] {
            assert!(reference.contains(key), "missing {key:?}");
        }
    }

    #[test]
    fn doc_links_become_code() {
        assert_eq!(
            clean_doc("Grants [`Role::Admin`](crate::Role::Admin), see [`secrets`]."),
            "Grants `Role::Admin`, see `secrets`."
        );
        assert_eq!(clean_doc("[`x`](https://a/b)"), "[`x`](https://a/b)");
    }
}
