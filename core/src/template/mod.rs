//! `spec.template.data` rendering: Go text/template with the common sprig functions.
//!
//! The controller renders each template value with the decrypted items as its data (a map of
//! strings). Upstream registers sprig's whole generic function map minus `env`, `expandenv` and
//! `getHostByName`; we register the string and encoding functions that such templates use,
//! listed in [`FUNCTIONS`], and nothing that reads the environment or the network.

mod budget;
mod functions;
mod messages;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gotmpl::{Template, TemplateError, Value};
use zeroize::Zeroizing;

use budget::{BoundedWriter, Budget, limit};
pub use functions::go_json_string;
use functions::with_functions;
use messages::describe_in;

use crate::error::quoted;
use crate::secret::SecretBytes;

/// The sprig functions available in templates, besides Go's built-ins
/// (`and`, `or`, `not`, `len`, `index`, `print`, `printf`, `println`, `eq`, `ne`, `lt`, `le`,
/// `gt`, `ge`, `html`, `js`, `urlquery`, `slice`, `call`).
pub const FUNCTIONS: &[&str] = &[
    "b64dec",
    "b64enc",
    "cat",
    "coalesce",
    "contains",
    "default",
    "dict",
    "empty",
    "first",
    "get",
    "hasKey",
    "hasPrefix",
    "hasSuffix",
    "indent",
    "join",
    "keys",
    "last",
    "list",
    "lower",
    "nindent",
    "nospace",
    "quote",
    "repeat",
    "replace",
    "sha256sum",
    "sortAlpha",
    "split",
    "splitList",
    "squote",
    "ternary",
    "title",
    "toJson",
    "toPrettyJson",
    "toRawJson",
    "toString",
    "trim",
    "trimAll",
    "trimPrefix",
    "trimSuffix",
    "trunc",
    "upper",
];

/// Largest rendered value, function result or argument list, in bytes (a Secret holds 1 MiB).
pub const MAX_VALUE_BYTES: usize = 1 << 20;
/// Largest output of all templates of one SealedSecret together.
pub const MAX_OUTPUT_BYTES: usize = 1 << 20;
/// Largest template source of one key.
pub const MAX_TEMPLATE_BYTES: usize = 64 << 10;
/// Bytes that functions may read and write, over all templates of one SealedSecret.
pub(crate) const MAX_WORK_BYTES: usize = 64 << 20;
/// `{{range}}` iterations in one template (gotmpl counts them per execution).
const MAX_RANGE_ITERATIONS: u64 = 10_000;
/// Wall-clock bound on rendering all templates of one SealedSecret.
pub const TIME_LIMIT: Duration = Duration::from_secs(2);

/// A template that does not parse or fails while rendering.
///
/// The message names the data key and what failed (the function, construct or bound), and
/// never a value, a byte of one, its length or an index into it: whoever may edit a
/// SealedSecret must not learn its plaintext from a status, an event or a log line.
#[derive(Debug, thiserror::Error)]
#[error("cannot render template for key {}: {reason}", quoted(.key))]
pub struct RenderError {
    pub key: String,
    pub reason: String,
}

/// Go's `{{define}}`, `{{template}}` and `{{block}}` let a template call itself, which makes
/// the work exponential in the template's size; sealed-secrets templates are single values
/// and never need them.
fn refuse_subtemplates(source: &str) -> Result<(), TemplateError> {
    let mut rest = source;
    while let Some(at) = rest.find("{{") {
        rest = &rest[at + 2..];
        let action = rest.strip_prefix('-').unwrap_or(rest).trim_start();
        for keyword in ["define", "template", "block"] {
            if action.strip_prefix(keyword).is_some_and(|after| !after.starts_with(|c: char| c.is_alphanumeric())) {
                return Err(limit(keyword, "{{define}}, {{template}} and {{block}} are not supported"));
            }
        }
    }
    Ok(())
}

/// Render every template of `templates` within the bounds above (see [`MAX_VALUE_BYTES`],
/// [`MAX_OUTPUT_BYTES`], [`TIME_LIMIT`]); a key whose value is `None` (`null` in the
/// SealedSecret: an input-only item) is not rendered and is not in the answer.
///
/// What each template sees, as upstream's since v0.37: the decrypted `items`, and every other
/// non-null template value as it is written (its source, not its rendering) under its own key,
/// an item winning when both have the same key, so that adding a plain value can never hide a
/// secret one.
///
/// Values that are not UTF-8 reach the template with invalid sequences replaced, since Go
/// strings are bytes but template values here are text.
pub fn render_all(
    templates: &BTreeMap<String, Option<String>>,
    items: &BTreeMap<String, SecretBytes>,
) -> Result<BTreeMap<String, SecretBytes>, RenderError> {
    let decrypted = items.iter().map(|(k, v)| {
        let text = String::from_utf8_lossy(v.expose());
        (Arc::<str>::from(k.as_str()), Value::String(Arc::from(text.as_ref())))
    });
    let plain = templates
        .iter()
        .filter(|(k, _)| !items.contains_key(*k))
        .filter_map(|(k, v)| Some((Arc::<str>::from(k.as_str()), Value::String(Arc::from(v.as_deref()?)))));
    let data = Value::Map(Arc::new(decrypted.chain(plain).collect()));
    let budget = Arc::new(Budget::new());
    templates
        .iter()
        .filter_map(|(key, source)| Some((key, source.as_deref()?)))
        .map(|(key, source)| {
            let rendered = render(key, source, &data, &budget)
                .map_err(|error| RenderError { key: key.clone(), reason: describe_in(&error, source) })?;
            Ok((key.clone(), SecretBytes::from(rendered.as_bytes())))
        })
        .collect()
}

fn render(name: &str, source: &str, data: &Value, budget: &Arc<Budget>) -> Result<Zeroizing<String>, TemplateError> {
    if source.len() > MAX_TEMPLATE_BYTES {
        return Err(limit("template", "the template is larger than 64 KiB"));
    }
    refuse_subtemplates(source)?;
    if Instant::now() > budget.deadline {
        return Err(limit("template", "rendering took longer than the time limit"));
    }
    let template = with_functions(Template::new(name).max_range_iters(MAX_RANGE_ITERATIONS), budget).parse(source)?;
    let mut out = BoundedWriter { text: Zeroizing::new(String::new()), budget, exceeded: None };
    match template.execute_fmt(&mut out, data) {
        Ok(()) => Ok(out.text),
        Err(_) if out.exceeded.is_some() => Err(limit("output", out.exceeded.unwrap_or_default())),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render_one(source: &str, items: &[(&str, &str)]) -> String {
        let items = items.iter().map(|(k, v)| (k.to_string(), SecretBytes::from(v.as_bytes()))).collect();
        let templates = BTreeMap::from([("out".to_string(), Some(source.to_string()))]);
        let out = render_all(&templates, &items).unwrap_or_else(|e| panic!("{e}"));
        String::from_utf8(out["out"].expose().to_vec()).unwrap_or_default()
    }

    #[test]
    fn field_access_index_and_pipelines() {
        assert_eq!(render_one("{{ .a }}-{{ index . \"b.c\" }}", &[("a", "x"), ("b.c", "y")]), "x-y");
        assert_eq!(render_one("{{ .a | upper | printf \"%s!\" }}", &[("a", "x")]), "X!");
    }

    #[test]
    fn to_json_matches_go_encoding() {
        assert_eq!(render_one("{{ toJson .p }}", &[("p", "hunter2'\"=<&>")]), r#""hunter2'\"=\u003c\u0026\u003e""#);
    }

    #[test]
    fn sprig_string_functions() {
        let cases = [
            ("{{ .a | b64enc }}", "YWJj"),
            ("{{ \"YWJj\" | b64dec }}", "abc"),
            ("{{ .a | quote }}", "\"abc\""),
            ("{{ .a | squote }}", "'abc'"),
            ("{{ .a | replace \"b\" \"B\" }}", "aBc"),
            ("{{ .a | trimPrefix \"a\" }}", "bc"),
            ("{{ .a | trimSuffix \"c\" }}", "ab"),
            ("{{ .missing | default \"d\" }}", "d"),
            ("{{ .a | default \"d\" }}", "abc"),
            ("{{ .a | repeat 2 }}", "abcabc"),
            ("{{ .a | trunc 2 }}", "ab"),
            ("{{ \"x\ny\" | indent 2 }}", "  x\n  y"),
            ("{{ \"hello world\" | title }}", "Hello World"),
            ("{{ if hasPrefix \"a\" .a }}yes{{ end }}", "yes"),
            ("{{ .a | sha256sum | trunc 8 }}", "ba7816bf"),
            (r#"{{ dict "u" .a "p" "<&>" | toJson }}"#, r#"{"p":"\u003c\u0026\u003e","u":"abc"}"#),
            (r#"{{ dict "u" .a "p" "<&>" | toRawJson }}"#, r#"{"p":"<&>","u":"abc"}"#),
            ("{{ dict \"a\" (list 1 \"x\") | toPrettyJson }}", "{\n  \"a\": [\n    1,\n    \"x\"\n  ]\n}"),
            (r#"{{ list | toPrettyJson }}{{ dict | toJson }}"#, "[]{}"),
            (r#"{{ list "x" .a "y" | join "," }}"#, "x,abc,y"),
            (r#"{{ splitList ":" "h:p" | last }}{{ (split ":" "h:p")._0 }}"#, "ph"),
            (r#"{{ $d := dict "k" .a }}{{ if hasKey $d "k" }}{{ get $d "k" }}{{ get $d "no" }}{{ end }}"#, "abc"),
            (r#"{{ keys (dict "b" 1 "a" 2) | sortAlpha | join "" }}"#, "ab"),
            (r#"{{ coalesce "" .missing .a }}-{{ ternary "y" "n" (eq .a "abc") }}-{{ list 7 8 | first }}"#, "abc-y-7"),
            (r#"{{ dict "odd" | toJson }}"#, r#"{"odd":""}"#),
        ];
        for (source, want) in cases {
            assert_eq!(render_one(source, &[("a", "abc")]), want, "{source}");
        }
    }

    #[test]
    fn every_listed_function_is_registered() {
        for name in FUNCTIONS {
            let source = format!("{{{{ if false }}}}{{{{ {name} }}}}{{{{ end }}}}");
            let budget = Arc::new(Budget::new());
            assert!(with_functions(Template::new("t"), &budget).parse(&source).is_ok(), "{name} is not registered");
        }
    }

    fn render_many(templates: &[(&str, Option<&str>)], items: &[(&str, &str)]) -> BTreeMap<String, String> {
        let items = items.iter().map(|(k, v)| (k.to_string(), SecretBytes::from(v.as_bytes()))).collect();
        let templates = templates.iter().map(|(k, v)| (k.to_string(), v.map(str::to_owned))).collect();
        let out = render_all(&templates, &items).unwrap_or_else(|e| panic!("{e}"));
        out.into_iter().map(|(k, v)| (k, String::from_utf8_lossy(v.expose()).into_owned())).collect()
    }

    #[test]
    fn plain_siblings_are_seen_as_written() {
        let out = render_many(&[("host", Some("db")), ("url", Some("{{ .user }}@{{ .host }}"))], &[("user", "u")]);
        assert_eq!(out["url"], "u@db");
        // A sibling is its source, not its rendering (upstream puts the raw value in the data).
        let out = render_many(&[("a", Some("{{ .user }}")), ("b", Some("[{{ .a }}]"))], &[("user", "u")]);
        assert_eq!((out["a"].as_str(), out["b"].as_str()), ("u", "[{{ .user }}]"));
    }

    #[test]
    fn an_item_wins_over_a_plain_value_of_the_same_key() {
        let out =
            render_many(&[("password", Some("plain")), ("t", Some("{{ .password }}"))], &[("password", "s3cret")]);
        assert_eq!(out["t"], "s3cret");
    }

    #[test]
    fn null_templates_are_not_rendered_and_their_items_stay_readable() {
        let out = render_many(&[("password", None), ("dsn", Some("pw={{ .password }}"))], &[("password", "s3cret")]);
        assert_eq!(out.len(), 1);
        assert_eq!(out["dsn"], "pw=s3cret");
        // A null key with no item is nothing to a sibling, as a missing key.
        assert_eq!(render_many(&[("gone", None), ("t", Some("{{ .gone }}"))], &[])["t"], "<no value>");
    }

    #[test]
    fn missing_key_prints_no_value_like_go() {
        assert_eq!(render_one("{{ .nope }}", &[]), "<no value>");
    }

    #[test]
    fn parse_error_names_the_key() {
        let templates = BTreeMap::from([("k".to_string(), Some("{{ .a ".to_string()))]);
        let err = render_all(&templates, &BTreeMap::new()).err().map(|e| e.key);
        assert_eq!(err.as_deref(), Some("k"));
    }

    fn render_error(source: &str, items: &[(&str, &str)]) -> RenderError {
        let items = items.iter().map(|(k, v)| (k.to_string(), SecretBytes::from(v.as_bytes()))).collect();
        let templates = BTreeMap::from([("out".to_string(), Some(source.to_string()))]);
        match render_all(&templates, &items) {
            Ok(_) => panic!("{source} rendered"),
            Err(e) => e,
        }
    }

    #[test]
    fn allocations_are_refused_before_they_happen() {
        let bombs = [
            r#"{{ "0123456789" | repeat 100000000000000 }}"#,
            r#"{{ "x" | indent 100000000000000 }}"#,
            r#"{{ "x" | nindent 100000000000000 }}"#,
            r#"{{ printf "%65535d%65535d%65535d%65535d%65535d%65535d%65535d%65535d%65535d%65535d%65535d%65535d%65535d%65535d%65535d%65535d%65535d" 1 }}"#,
            r#"{{ $x := repeat 1000000 "a" }}{{ replace "a" "aaaaaaaaaaaaaaaaaaaa" $x }}"#,
            // Doubling through a variable: exponential in the template's length.
            r#"{{ $x := repeat 1000 "a" }}{{ range 40 }}{{ $x = cat $x $x }}{{ end }}{{ $x }}"#,
            r#"{{ $x := repeat 1000 "a" }}{{ range 40 }}{{ $x = print $x $x }}{{ end }}"#,
            r#"{{ $x := repeat 100000 "<" }}{{ html (html (html (html (html $x)))) }}"#,
            // Output: each piece small, the whole too large.
            r#"{{ range 10000 }}{{ repeat 1000 "x" }}{{ end }}"#,
        ];
        for source in bombs {
            let error = render_error(source, &[]);
            assert!(error.reason.contains("exceed") || error.reason.contains("work"), "{source}: {error}");
        }
    }

    #[test]
    fn errors_give_the_function_and_its_position() {
        let error = render_error("{{ .a }}\n  {{ \"x\" | repeat 99999999999 }}", &[("a", "v")]);
        assert_eq!(
            error.to_string(),
            r#"cannot render template for key "out": repeat: the result would exceed 1 MiB (at line 2, column 12)"#
        );
        let error = render_error("{{ .a | b64dec }}", &[("a", "!!")]);
        assert_eq!(error.reason, "b64dec: the input is not valid base64 (at line 1, column 9)");
        let error = render_error("{{ .a }}{{ index .a 7 }}", &[("a", "v")]);
        assert_eq!(error.reason, "an index is out of range (at line 1, column 12)");
    }

    #[test]
    fn loops_and_self_reference_are_bounded() {
        assert!(render_error("{{ range 100000000 }}{{ end }}", &[]).reason.contains("iterations"));
        for source in [
            r#"{{ define "a" }}{{ template "a" . }}{{ template "a" . }}{{ end }}{{ template "a" . }}"#,
            r#"{{- template "out" . }}"#,
            r#"{{ block "b" . }}x{{ end }}"#,
        ] {
            assert!(render_error(source, &[]).reason.contains("not supported"), "{source}");
        }
        // A word that merely starts like a keyword is a field, as in Go.
        assert_eq!(render_one("{{ .templates }}", &[("templates", "t")]), "t");
    }

    /// Failing templates over known plaintexts: no message holds the plaintext, any 3-character
    /// piece of it, its length, or a byte value of it.
    #[test]
    fn errors_carry_no_plaintext() {
        let secrets = ["S3cr3t!pa55", "Tr0ub4dor&3", "zq9X#vK2mWjj"];
        for secret in secrets {
            let templates = [
                "{{ index \"\" (index .password 0) }}".to_owned(),
                "{{ index .password 100 }}".to_owned(),
                "{{ slice .password 3 100 }}".to_owned(),
                "{{ slice .password 100 }}".to_owned(),
                "{{ .password | b64dec }}".to_owned(),
                "{{ range .password }}{{ end }}".to_owned(),
                "{{ .password.field }}".to_owned(),
                "{{ printf .password }}{{ index . .password }}".to_owned(),
                "{{ repeat (len .password) .password | repeat 100000 }}".to_owned(),
                "{{ if eq .password \"x\" }}{{ else }}{{ index .password 99 }}{{ end }}".to_owned(),
                "{{ (index .password 1) | upper }}".to_owned(),
                "{{ len .password | printf \"%s\" | b64dec }}".to_owned(),
                "{{ call .password }}".to_owned(),
            ];
            for source in &templates {
                let items = [("password", secret)];
                let items: BTreeMap<_, _> =
                    items.iter().map(|(k, v)| (k.to_string(), SecretBytes::from(v.as_bytes()))).collect();
                let all = BTreeMap::from([("out".to_string(), Some(source.clone()))]);
                let Err(error) = render_all(&all, &items) else { continue };
                let message = error.to_string();
                let chars: Vec<char> = secret.chars().collect();
                for piece in chars.windows(3) {
                    let piece: String = piece.iter().collect();
                    assert!(!message.contains(&piece), "{source}: {message:?} holds {piece:?}");
                }
                let numbers: Vec<String> = std::iter::once(secret.len())
                    .chain(secret.bytes().map(usize::from))
                    .map(|n| n.to_string())
                    .collect();
                // Positions count in the template's source, which is public; the rest must hold no
                // number of the value.
                let without_position = message.split(" (at line").next().unwrap_or_default();
                let digits: Vec<&str> =
                    without_position.split(|c: char| !c.is_ascii_digit()).filter(|d| !d.is_empty()).collect();
                for number in &numbers {
                    assert!(!digits.contains(&number.as_str()), "{source}: {message:?} holds {number}");
                }
            }
        }
    }
}
