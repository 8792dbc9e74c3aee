//! The sprig functions templates may call (listed in [`super::FUNCTIONS`]) and Go's output
//! builtins, each bounded: nothing reads the environment or the network.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use gotmpl::{Template, TemplateError, Value};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::MAX_VALUE_BYTES;
use super::budget::{Budget, OWN, metered, size_of, too_large};

/// Go's builtin `name` (print, println, printf) applied to `args`, run through gotmpl itself
/// so that its formatting stays Go's: this module only wraps it with bounds.
pub(super) fn builtin(name: &str, args: &[Value]) -> Result<Value, TemplateError> {
    let call: String = (0..args.len()).map(|i| format!(" .a{i}")).collect();
    let data = Value::Map(Arc::new(
        args.iter().enumerate().map(|(i, v)| (Arc::<str>::from(format!("a{i}").as_str()), v.clone())).collect(),
    ));
    let text = Template::new(name).parse(&format!("{{{{ {name}{call} }}}}"))?.execute_to_string(&data)?;
    Ok(Value::String(Arc::from(Zeroizing::new(text).as_str())))
}

/// An upper bound on what `printf format args...` writes: every directive can print any
/// argument (`%[1]s`), escaped (`%q`), padded to its width and precision (at most 65535 each).
pub(super) fn printf_bound(args: &[Value]) -> usize {
    let Some(Value::String(format)) = args.first() else {
        return 0;
    };
    let widest = args.iter().skip(1).map(size_of).max().unwrap_or(0);
    let bytes = format.as_bytes();
    let mut bound = format.len();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            i += 1;
            continue;
        }
        i += 1;
        let mut padding = 0usize;
        while i < bytes.len() && !bytes[i].is_ascii_alphabetic() && bytes[i] != b'%' {
            if bytes[i] == b'*' {
                padding = padding.saturating_add(65_535);
                i += 1;
            } else if bytes[i].is_ascii_digit() {
                let start = i;
                while i < bytes.len() && bytes[i].is_ascii_digit() {
                    i += 1;
                }
                let number = format[start..i].parse::<usize>().unwrap_or(usize::MAX).min(65_535);
                padding = padding.saturating_add(number);
            } else {
                i += 1;
            }
        }
        i += 1;
        bound = bound.saturating_add(padding).saturating_add(widest.saturating_mul(6)).saturating_add(32);
    }
    bound
}

pub(super) fn text(args: &[Value], i: usize) -> String {
    match args.get(i) {
        None | Some(Value::Nil) => String::new(),
        Some(Value::String(s)) => s.to_string(),
        Some(v) => v.to_string(),
    }
}

pub(super) fn string(s: impl AsRef<str>) -> Value {
    Value::String(Arc::from(s.as_ref()))
}

/// A failure of one of this module's functions; its text must carry no value.
pub(super) fn exec_error(message: &str) -> TemplateError {
    TemplateError::Exec(format!("{OWN}{message}"))
}

pub(super) fn is_empty(v: &Value) -> bool {
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

/// Go's `encoding/json` string encoding, which escapes `<`, `>` and `&` for HTML safety (sops'
/// JSON store writes strings this way too).
pub fn go_json_string(s: &str) -> String {
    json_string(s, true)
}

/// Go's JSON string encoding; `html`: with `<`, `>` and `&` escaped (sprig's `toRawJson` has not).
fn json_string(s: &str, html: bool) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' if html => out.push_str(&format!("\\u{:04x}", c as u32)),
            '\u{2028}' | '\u{2029}' => out.push_str(&format!("\\u{:04x}", c as u32)),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

pub(super) fn to_json(v: &Value) -> String {
    Json { html: true, indent: None }.write(v, 0)
}

/// Go's `json.Marshal` (`indent`: `json.MarshalIndent` with that unit) of a template value, keys
/// in order as Go sorts a map's.
struct Json {
    html: bool,
    indent: Option<&'static str>,
}

impl Json {
    fn write(&self, v: &Value, depth: usize) -> String {
        let (open, close, separator) = match self.indent {
            Some(unit) => (format!("\n{}", unit.repeat(depth + 1)), format!("\n{}", unit.repeat(depth)), ": "),
            None => (String::new(), String::new(), ":"),
        };
        let items = |parts: Vec<String>, brackets: (&str, &str)| {
            if parts.is_empty() {
                return format!("{}{}", brackets.0, brackets.1);
            }
            format!("{}{open}{}{close}{}", brackets.0, parts.join(&format!(",{open}")), brackets.1)
        };
        match v {
            Value::Nil => "null".to_owned(),
            Value::Bool(b) => b.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Uint(u) => u.to_string(),
            Value::Float(f) => f.to_string(),
            Value::String(s) => json_string(s, self.html),
            Value::List(list) => items(list.iter().map(|v| self.write(v, depth + 1)).collect(), ("[", "]")),
            Value::Map(map) => items(
                map.iter()
                    .map(|(k, v)| format!("{}{separator}{}", json_string(k, self.html), self.write(v, depth + 1)))
                    .collect(),
                ("{", "}"),
            ),
            _ => "null".to_owned(),
        }
    }
}

/// Sprig's `strslice`: a list's elements as text (nil ones left out), or one value as a list.
fn texts(v: Option<&Value>) -> Vec<String> {
    match v {
        None | Some(Value::Nil) => Vec::new(),
        Some(Value::List(list)) => {
            list.iter().filter(|v| !matches!(v, Value::Nil)).map(|v| text(std::slice::from_ref(v), 0)).collect()
        }
        Some(v) => vec![text(std::slice::from_ref(v), 0)],
    }
}

fn list(items: impl IntoIterator<Item = Value>) -> Value {
    Value::List(items.into_iter().collect())
}

/// Go's `strings.Split`: an empty separator splits after each character.
fn split<'a>(separator: &str, s: &'a str) -> Vec<&'a str> {
    if separator.is_empty() {
        return s.char_indices().map(|(i, c)| &s[i..i + c.len_utf8()]).collect();
    }
    s.split(separator).collect()
}

fn map_arg(args: &[Value], i: usize) -> Result<&std::collections::BTreeMap<Arc<str>, Value>, TemplateError> {
    match args.get(i) {
        Some(Value::Map(map)) => Ok(map),
        _ => Err(exec_error("expected a dict")),
    }
}

pub(super) fn indent(name: &str, spaces: usize, s: &str) -> Result<String, TemplateError> {
    let lines = s.matches('\n').count() + 1;
    if s.len().saturating_add(spaces.saturating_mul(lines)) > MAX_VALUE_BYTES {
        return Err(too_large(name));
    }
    let pad = " ".repeat(spaces);
    Ok(format!("{pad}{}", s.replace('\n', &format!("\n{pad}"))))
}

pub(super) fn count(args: &[Value], i: usize) -> Result<usize, TemplateError> {
    match args.get(i) {
        Some(Value::Int(n)) if *n >= 0 => Ok(*n as usize),
        Some(Value::Uint(n)) => usize::try_from(*n).map_err(|_| exec_error("count out of range")),
        _ => Err(exec_error("expected a non-negative integer")),
    }
}

pub(super) fn title(s: &str) -> String {
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

/// Sprig's functions and Go's output builtins, each charged to `budget` (see [`metered`]).
pub(super) fn with_functions(t: Template, budget: &Arc<Budget>) -> Template {
    type Func = fn(&[Value]) -> Result<Value, TemplateError>;
    let functions: [(&'static str, Func); 47] = [
        ("upper", |a| Ok(string(text(a, 0).to_uppercase()))),
        ("lower", |a| Ok(string(text(a, 0).to_lowercase()))),
        ("title", |a| Ok(string(title(&text(a, 0))))),
        ("trim", |a| Ok(string(text(a, 0).trim()))),
        ("trimAll", |a| {
            let cut = text(a, 0);
            Ok(string(text(a, 1).trim_matches(|c| cut.contains(c))))
        }),
        ("trimPrefix", |a| {
            let s = text(a, 1);
            Ok(string(s.strip_prefix(text(a, 0).as_str()).unwrap_or(&s)))
        }),
        ("trimSuffix", |a| {
            let s = text(a, 1);
            Ok(string(s.strip_suffix(text(a, 0).as_str()).unwrap_or(&s)))
        }),
        ("replace", |a| {
            let (old, new, s) = (text(a, 0), text(a, 1), text(a, 2));
            // Go inserts `new` at every character boundary when `old` is empty.
            let hits = if old.is_empty() { s.chars().count() + 1 } else { s.matches(old.as_str()).count() };
            if s.len().saturating_add(hits.saturating_mul(new.len())) > MAX_VALUE_BYTES {
                return Err(too_large("replace"));
            }
            Ok(string(s.replace(&old, &new)))
        }),
        ("contains", |a| Ok(Value::Bool(text(a, 1).contains(&text(a, 0))))),
        ("hasPrefix", |a| Ok(Value::Bool(text(a, 1).starts_with(&text(a, 0))))),
        ("hasSuffix", |a| Ok(Value::Bool(text(a, 1).ends_with(&text(a, 0))))),
        ("repeat", |a| {
            let (times, s) = (count(a, 0)?, text(a, 1));
            if times.saturating_mul(s.len()) > MAX_VALUE_BYTES {
                return Err(too_large("repeat"));
            }
            Ok(string(s.repeat(times)))
        }),
        ("nospace", |a| Ok(string(text(a, 0).split_whitespace().collect::<String>()))),
        ("trunc", |a| Ok(string(text(a, 1).chars().take(count(a, 0)?).collect::<String>()))),
        ("indent", |a| Ok(string(indent("indent", count(a, 0)?, &text(a, 1))?))),
        ("nindent", |a| Ok(string(format!("\n{}", indent("nindent", count(a, 0)?, &text(a, 1))?)))),
        ("quote", |a| {
            let parts: Vec<String> = (0..a.len()).map(|i| go_json_string(&text(a, i))).collect();
            Ok(string(parts.join(" ")))
        }),
        ("squote", |a| {
            let parts: Vec<String> = (0..a.len()).map(|i| format!("'{}'", text(a, i))).collect();
            Ok(string(parts.join(" ")))
        }),
        ("cat", |a| {
            let parts: Vec<String> =
                (0..a.len()).filter(|i| !matches!(a[*i], Value::Nil)).map(|i| text(a, i)).collect();
            Ok(string(parts.join(" ")))
        }),
        ("toString", |a| Ok(string(text(a, 0)))),
        ("toJson", |a| Ok(string(a.first().map(to_json).unwrap_or_else(|| "null".into())))),
        ("b64enc", |a| Ok(string(STANDARD.encode(text(a, 0))))),
        ("b64dec", |a| {
            // The decoder's own error names the offending byte and its offset: never shown.
            let decoded = STANDARD.decode(text(a, 0)).map_err(|_| exec_error("the input is not valid base64"))?;
            Ok(string(String::from_utf8_lossy(&decoded)))
        }),
        ("sha256sum", |a| {
            let digest = Sha256::digest(text(a, 0).as_bytes());
            Ok(string(digest.iter().map(|b| format!("{b:02x}")).collect::<String>()))
        }),
        ("default", |a| {
            // `default D V`: V when it is not empty, else D.
            match a.get(1) {
                Some(v) if !is_empty(v) => Ok(v.clone()),
                _ => Ok(a.first().cloned().unwrap_or(Value::Nil)),
            }
        }),
        ("empty", |a| Ok(Value::Bool(a.first().is_none_or(is_empty)))),
        ("toRawJson", |a| {
            Ok(string(a.first().map_or_else(|| "null".into(), |v| Json { html: false, indent: None }.write(v, 0))))
        }),
        ("toPrettyJson", |a| {
            Ok(string(a.first().map_or_else(|| "null".into(), |v| Json { html: true, indent: Some("  ") }.write(v, 0))))
        }),
        // Sprig's lists and dicts, as its templates build JSON and connection strings with them.
        ("list", |a| Ok(list(a.iter().cloned()))),
        ("dict", |a| {
            // An odd last key gets an empty value, as sprig's.
            let pairs = a.chunks(2).map(|pair| {
                let key = text(pair, 0);
                (Arc::<str>::from(key.as_str()), pair.get(1).cloned().unwrap_or_else(|| string("")))
            });
            Ok(Value::Map(Arc::new(pairs.collect())))
        }),
        ("hasKey", |a| Ok(Value::Bool(map_arg(a, 0)?.contains_key(text(a, 1).as_str())))),
        ("get", |a| Ok(map_arg(a, 0)?.get(text(a, 1).as_str()).cloned().unwrap_or_else(|| string("")))),
        ("keys", |a| {
            let mut keys = Vec::new();
            for i in 0..a.len() {
                keys.extend(map_arg(a, i)?.keys().map(|k| Value::String(k.clone())));
            }
            Ok(list(keys))
        }),
        ("sortAlpha", |a| {
            let mut all = texts(a.first());
            all.sort();
            Ok(list(all.into_iter().map(string)))
        }),
        ("join", |a| Ok(string(texts(a.get(1)).join(&text(a, 0))))),
        ("splitList", |a| Ok(list(split(&text(a, 0), &text(a, 1)).into_iter().map(string)))),
        ("split", |a| {
            let s = text(a, 1);
            let parts = split(&text(a, 0), &s).into_iter().enumerate();
            Ok(Value::Map(Arc::new(
                parts.map(|(i, p)| (Arc::<str>::from(format!("_{i}").as_str()), string(p))).collect(),
            )))
        }),
        ("first", |a| match a.first() {
            Some(Value::List(l)) => Ok(l.first().cloned().unwrap_or(Value::Nil)),
            _ => Err(exec_error("expected a list")),
        }),
        ("last", |a| match a.first() {
            Some(Value::List(l)) => Ok(l.last().cloned().unwrap_or(Value::Nil)),
            _ => Err(exec_error("expected a list")),
        }),
        ("coalesce", |a| Ok(a.iter().find(|v| !is_empty(v)).cloned().unwrap_or(Value::Nil))),
        ("ternary", |a| {
            Ok(if matches!(a.get(2), Some(Value::Bool(true))) { a.first() } else { a.get(1) }
                .cloned()
                .unwrap_or(Value::Nil))
        }),
        // Go's builtins that build strings, bounded here like the rest.
        ("html", |a| Ok(string(gotmpl::html_escape(&text(a, 0))))),
        ("js", |a| Ok(string(gotmpl::js_escape(&text(a, 0))))),
        ("urlquery", |a| Ok(string(gotmpl::url_encode(&text(a, 0))))),
        ("print", |a| builtin("print", a)),
        ("println", |a| builtin("println", a)),
        ("printf", |a| {
            if printf_bound(a) > MAX_VALUE_BYTES {
                return Err(too_large("printf"));
            }
            builtin("printf", a)
        }),
    ];
    functions.into_iter().fold(t, |t, (name, f)| t.func(name, metered(budget, name, f)))
}
