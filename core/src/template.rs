//! `spec.template.data` rendering: Go text/template with the common sprig functions.
//!
//! The controller renders each template value with the decrypted items as its data (a map of
//! strings). Upstream registers sprig's whole generic function map minus `env`, `expandenv` and
//! `getHostByName`; we register the string and encoding functions that such templates use,
//! listed in [`FUNCTIONS`], and nothing that reads the environment or the network.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use gotmpl::{Template, TemplateError, Value};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::secret::SecretBytes;

/// The sprig functions available in templates, besides Go's built-ins
/// (`and`, `or`, `not`, `len`, `index`, `print`, `printf`, `println`, `eq`, `ne`, `lt`, `le`,
/// `gt`, `ge`, `html`, `js`, `urlquery`, `slice`, `call`).
pub const FUNCTIONS: &[&str] = &[
    "b64dec",
    "b64enc",
    "cat",
    "contains",
    "default",
    "empty",
    "hasPrefix",
    "hasSuffix",
    "indent",
    "lower",
    "nindent",
    "nospace",
    "quote",
    "repeat",
    "replace",
    "sha256sum",
    "squote",
    "title",
    "toJson",
    "toString",
    "trim",
    "trimAll",
    "trimPrefix",
    "trimSuffix",
    "trunc",
    "upper",
];

/// A template that does not parse or fails while rendering.
#[derive(Debug, thiserror::Error)]
#[error("cannot render template for key {key:?}")]
pub struct RenderError {
    pub key: String,
    #[source]
    pub source: TemplateError,
}

/// Render every template in `templates` with `items` (decrypted values) as the data.
///
/// Values that are not UTF-8 reach the template with invalid sequences replaced, since Go
/// strings are bytes but template values here are text.
pub fn render_all(
    templates: &BTreeMap<String, String>,
    items: &BTreeMap<String, SecretBytes>,
) -> Result<BTreeMap<String, SecretBytes>, RenderError> {
    let data = Value::Map(Arc::new(
        items
            .iter()
            .map(|(k, v)| {
                let text = String::from_utf8_lossy(v.expose());
                (Arc::<str>::from(k.as_str()), Value::String(Arc::from(text.as_ref())))
            })
            .collect(),
    ));
    templates
        .iter()
        .map(|(key, source)| {
            let rendered = render(key, source, &data).map_err(|source| RenderError { key: key.clone(), source })?;
            Ok((key.clone(), SecretBytes::from(rendered.as_bytes())))
        })
        .collect()
}

fn render(name: &str, source: &str, data: &Value) -> Result<Zeroizing<String>, TemplateError> {
    let template = with_functions(Template::new(name)).parse(source)?;
    template.execute_to_string(data).map(Zeroizing::new)
}

fn text(args: &[Value], i: usize) -> String {
    match args.get(i) {
        None | Some(Value::Nil) => String::new(),
        Some(Value::String(s)) => s.to_string(),
        Some(v) => v.to_string(),
    }
}

fn string(s: impl AsRef<str>) -> Value {
    Value::String(Arc::from(s.as_ref()))
}

fn exec_error(message: impl Into<String>) -> TemplateError {
    TemplateError::Exec(message.into())
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Nil => true,
        Value::Bool(b) => !b,
        Value::Int(i) => *i == 0,
        Value::Uint(u) => *u == 0,
        Value::Float(f) => *f == 0.0,
        Value::String(s) => s.is_empty(),
        Value::List(l) => l.is_empty(),
        Value::Map(m) => m.is_empty(),
        _ => false,
    }
}

/// Go's `encoding/json` string encoding, which escapes `<`, `>` and `&` for HTML safety.
pub(crate) fn go_json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => out.push_str(&format!("\\u{:04x}", c as u32)),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn to_json(v: &Value) -> String {
    match v {
        Value::Nil => "null".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Uint(u) => u.to_string(),
        Value::Float(f) => f.to_string(),
        Value::String(s) => go_json_string(s),
        Value::List(items) => {
            let parts: Vec<String> = items.iter().map(to_json).collect();
            format!("[{}]", parts.join(","))
        }
        Value::Map(map) => {
            let parts: Vec<String> = map.iter().map(|(k, v)| format!("{}:{}", go_json_string(k), to_json(v))).collect();
            format!("{{{}}}", parts.join(","))
        }
        _ => "null".to_owned(),
    }
}

fn indent(spaces: usize, s: &str) -> String {
    let pad = " ".repeat(spaces);
    format!("{pad}{}", s.replace('\n', &format!("\n{pad}")))
}

fn count(args: &[Value], i: usize) -> Result<usize, TemplateError> {
    match args.get(i) {
        Some(Value::Int(n)) if *n >= 0 => Ok(*n as usize),
        Some(Value::Uint(n)) => usize::try_from(*n).map_err(|_| exec_error("count out of range")),
        _ => Err(exec_error("expected a non-negative integer")),
    }
}

fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut at_word_start = true;
    for c in s.chars() {
        if at_word_start {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        at_word_start = c.is_whitespace();
    }
    out
}

fn with_functions(t: Template) -> Template {
    t.func("upper", |a| Ok(string(text(a, 0).to_uppercase())))
        .func("lower", |a| Ok(string(text(a, 0).to_lowercase())))
        .func("title", |a| Ok(string(title(&text(a, 0)))))
        .func("trim", |a| Ok(string(text(a, 0).trim())))
        .func("trimAll", |a| {
            let cut = text(a, 0);
            Ok(string(text(a, 1).trim_matches(|c| cut.contains(c))))
        })
        .func("trimPrefix", |a| {
            let s = text(a, 1);
            Ok(string(s.strip_prefix(text(a, 0).as_str()).unwrap_or(&s)))
        })
        .func("trimSuffix", |a| {
            let s = text(a, 1);
            Ok(string(s.strip_suffix(text(a, 0).as_str()).unwrap_or(&s)))
        })
        .func("replace", |a| Ok(string(text(a, 2).replace(&text(a, 0), &text(a, 1)))))
        .func("contains", |a| Ok(Value::Bool(text(a, 1).contains(&text(a, 0)))))
        .func("hasPrefix", |a| Ok(Value::Bool(text(a, 1).starts_with(&text(a, 0)))))
        .func("hasSuffix", |a| Ok(Value::Bool(text(a, 1).ends_with(&text(a, 0)))))
        .func("repeat", |a| Ok(string(text(a, 1).repeat(count(a, 0)?))))
        .func("nospace", |a| Ok(string(text(a, 0).split_whitespace().collect::<String>())))
        .func("trunc", |a| Ok(string(text(a, 1).chars().take(count(a, 0)?).collect::<String>())))
        .func("indent", |a| Ok(string(indent(count(a, 0)?, &text(a, 1)))))
        .func("nindent", |a| Ok(string(format!("\n{}", indent(count(a, 0)?, &text(a, 1))))))
        .func("quote", |a| {
            let parts: Vec<String> = (0..a.len()).map(|i| go_json_string(&text(a, i))).collect();
            Ok(string(parts.join(" ")))
        })
        .func("squote", |a| {
            let parts: Vec<String> = (0..a.len()).map(|i| format!("'{}'", text(a, i))).collect();
            Ok(string(parts.join(" ")))
        })
        .func("cat", |a| {
            let parts: Vec<String> =
                (0..a.len()).filter(|i| !matches!(a[*i], Value::Nil)).map(|i| text(a, i)).collect();
            Ok(string(parts.join(" ")))
        })
        .func("toString", |a| Ok(string(text(a, 0))))
        .func("toJson", |a| Ok(string(a.first().map(to_json).unwrap_or_else(|| "null".into()))))
        .func("b64enc", |a| Ok(string(STANDARD.encode(text(a, 0)))))
        .func("b64dec", |a| {
            let decoded = STANDARD.decode(text(a, 0)).map_err(|e| exec_error(format!("b64dec: {e}")))?;
            Ok(string(String::from_utf8_lossy(&decoded)))
        })
        .func("sha256sum", |a| {
            let digest = Sha256::digest(text(a, 0).as_bytes());
            Ok(string(digest.iter().map(|b| format!("{b:02x}")).collect::<String>()))
        })
        .func("default", |a| {
            // `default D V`: V when it is not empty, else D.
            match a.get(1) {
                Some(v) if !is_empty(v) => Ok(v.clone()),
                _ => Ok(a.first().cloned().unwrap_or(Value::Nil)),
            }
        })
        .func("empty", |a| Ok(Value::Bool(a.first().is_none_or(is_empty))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render_one(source: &str, items: &[(&str, &str)]) -> String {
        let items = items.iter().map(|(k, v)| (k.to_string(), SecretBytes::from(v.as_bytes()))).collect();
        let templates = BTreeMap::from([("out".to_string(), source.to_string())]);
        let out = render_all(&templates, &items).unwrap_or_else(|e| panic!("{e}: {:?}", e.source));
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
        ];
        for (source, want) in cases {
            assert_eq!(render_one(source, &[("a", "abc")]), want, "{source}");
        }
    }

    #[test]
    fn every_listed_function_is_registered() {
        for name in FUNCTIONS {
            let source = format!("{{{{ if false }}}}{{{{ {name} }}}}{{{{ end }}}}");
            assert!(with_functions(Template::new("t")).parse(&source).is_ok(), "{name} is not registered");
        }
    }

    #[test]
    fn missing_key_prints_no_value_like_go() {
        assert_eq!(render_one("{{ .nope }}", &[]), "<no value>");
    }

    #[test]
    fn parse_error_names_the_key() {
        let templates = BTreeMap::from([("k".to_string(), "{{ .a ".to_string())]);
        let err = render_all(&templates, &BTreeMap::new()).err().map(|e| e.key);
        assert_eq!(err.as_deref(), Some("k"));
    }
}
