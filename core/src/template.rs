//! `spec.template.data` rendering: Go text/template with the common sprig functions.
//!
//! The controller renders each template value with the decrypted items as its data (a map of
//! strings). Upstream registers sprig's whole generic function map minus `env`, `expandenv` and
//! `getHostByName`; we register the string and encoding functions that such templates use,
//! listed in [`FUNCTIONS`], and nothing that reads the environment or the network.

use crate::error::quoted;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

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

/// Largest rendered value, function result or argument list, in bytes (a Secret holds 1 MiB).
pub const MAX_VALUE_BYTES: usize = 1 << 20;
/// Largest output of all templates of one SealedSecret together.
pub const MAX_OUTPUT_BYTES: usize = 1 << 20;
/// Largest template source of one key.
pub const MAX_TEMPLATE_BYTES: usize = 64 << 10;
/// Bytes that functions may read and write, over all templates of one SealedSecret.
const MAX_WORK_BYTES: usize = 64 << 20;
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

/// What every template of one SealedSecret may still spend: checked before anything is
/// allocated, so no input can make rendering run out of memory or time.
#[derive(Debug)]
struct Budget {
    deadline: Instant,
    work: AtomicUsize,
    output: AtomicUsize,
}

impl Budget {
    fn new() -> Self {
        Budget {
            deadline: Instant::now() + TIME_LIMIT,
            work: AtomicUsize::new(MAX_WORK_BYTES),
            output: AtomicUsize::new(MAX_OUTPUT_BYTES),
        }
    }

    fn take(counter: &AtomicUsize, amount: usize) -> bool {
        counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| left.checked_sub(amount)).is_ok()
    }

    /// Charge `bytes` of work to function `name`.
    fn charge(&self, name: &str, bytes: usize) -> Result<(), TemplateError> {
        if Instant::now() > self.deadline {
            return Err(limit(name, "rendering took longer than the time limit"));
        }
        if !Self::take(&self.work, bytes) {
            return Err(limit(name, "rendering did more work than allowed"));
        }
        Ok(())
    }
}

/// Marks messages this module wrote, which carry no values and can be shown as they are.
const OWN: &str = "sealant: ";

fn limit(name: &str, what: &str) -> TemplateError {
    TemplateError::Exec(format!("{OWN}{name}: {what}"))
}

fn too_large(name: &str) -> TemplateError {
    limit(name, "the result would exceed 1 MiB")
}

/// Where the function `name` is first called in `source`: `line L, column C` (1-based), found in
/// the template's actions. gotmpl reports no position for execution errors, and a value's
/// position must not be guessed from it.
fn first_call(source: &str, name: &str) -> Option<String> {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut offset = 0;
    while let Some(open) = source[offset..].find("{{") {
        let start = offset + open + 2;
        let end = source[start..].find("}}").map_or(source.len(), |e| start + e);
        let action = &source[start..end];
        let mut from = 0;
        while let Some(at) = action[from..].find(name) {
            let at = from + at;
            let before = action[..at].chars().next_back();
            let after = action[at + name.len()..].chars().next();
            if !before.is_some_and(|c| is_ident(c) || c == '.' || c == '$') && !after.is_some_and(is_ident) {
                let absolute = start + at;
                let line = source[..absolute].matches('\n').count() + 1;
                let column = source[..absolute].rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                return Some(format!("line {line}, column {column}"));
            }
            from = at + name.len();
        }
        offset = end;
    }
    None
}

/// [`describe`], with the position of the failing function where it can be told.
fn describe_in(error: &TemplateError, source: &str) -> String {
    let reason = describe(error);
    let calls = |name: &str| first_call(source, name).is_some();
    let function = match error {
        TemplateError::Exec(message) => match message.strip_prefix(OWN) {
            Some(own) => own.split_once(':').map(|(f, _)| f),
            None => called_function(message),
        },
        TemplateError::FuncPanic { name, .. } | TemplateError::ArgCount { name, .. } => Some(name.as_str()),
        TemplateError::UndefinedFunction(name) => Some(name.as_str()),
        // gotmpl does not say which of Go's two indexing builtins failed: named when only one is used.
        TemplateError::IndexOutOfRange { .. } => match (calls("index"), calls("slice")) {
            (true, false) => Some("index"),
            (false, true) => Some("slice"),
            _ => None,
        },
        _ => None,
    };
    match function.and_then(|f| first_call(source, f)) {
        Some(position) => format!("{reason} (at {position})"),
        None => reason,
    }
}

/// A message for `error` that carries no plaintext.
fn describe(error: &TemplateError) -> String {
    match error {
        TemplateError::Parse { line, col, message, .. } | TemplateError::Lex { line, col, message, .. } => {
            // Parse errors quote the template source, which is committed in Git, never a value.
            format!("line {line}, column {col}: {message}")
        }
        TemplateError::Exec(message) => match message.strip_prefix(OWN) {
            Some(own) => own.to_owned(),
            None => match called_function(message) {
                Some(name) => format!("function {name} failed"),
                None => "execution failed".to_owned(),
            },
        },
        TemplateError::IndexOutOfRange { .. } => "an index is out of range".to_owned(),
        TemplateError::TypeMismatch { expected, got } => format!("type mismatch: expected {expected}, got {got}"),
        TemplateError::MissingKey { key } => format!("no entry for key {}", quoted(key)),
        TemplateError::RecursionLimit => "nesting is too deep".to_owned(),
        TemplateError::RangeIterLimit => "range ran more iterations than allowed".to_owned(),
        TemplateError::FuncPanic { name, .. } => format!("function {name} failed"),
        TemplateError::UndefinedTemplate(name) => format!("undefined template {}", quoted(name)),
        TemplateError::UndefinedFunction(name) => format!("undefined function {}", quoted(name)),
        TemplateError::UndefinedVariable(name) => format!("undefined variable {name}"),
        TemplateError::ArgCount { name, expected, got } => {
            format!("wrong number of arguments: {name} expects {expected}, got {got}")
        }
        TemplateError::NotIterable(_) => "range over a value that is not a list, map or number".to_owned(),
        _ => "execution failed".to_owned(),
    }
}

/// The function named by gotmpl's "error calling NAME: ..." messages: an identifier from the
/// template source, which is safe to show.
fn called_function(message: &str) -> Option<&str> {
    let rest = &message[message.find("error calling ")? + "error calling ".len()..];
    let name = &rest[..rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len())];
    (!name.is_empty()).then_some(name)
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

/// Render every template in `templates` with `items` (decrypted values) as the data, within
/// the bounds above (see [`MAX_VALUE_BYTES`], [`MAX_OUTPUT_BYTES`], [`TIME_LIMIT`]).
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
    let budget = Arc::new(Budget::new());
    templates
        .iter()
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

/// The output of one template, within its share of the SealedSecret's output and time.
struct BoundedWriter<'a> {
    text: Zeroizing<String>,
    budget: &'a Budget,
    exceeded: Option<&'static str>,
}

impl std::fmt::Write for BoundedWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        if Instant::now() > self.budget.deadline {
            self.exceeded = Some("rendering took longer than the time limit");
        } else if self.text.len() + s.len() > MAX_VALUE_BYTES || !Budget::take(&self.budget.output, s.len()) {
            self.exceeded = Some("the rendered Secret would exceed 1 MiB");
        }
        if self.exceeded.is_some() {
            return Err(std::fmt::Error);
        }
        // Grow by hand so that no reallocation leaves a copy of the output behind unwiped.
        if self.text.capacity() < self.text.len() + s.len() {
            let mut bigger = String::with_capacity((self.text.len() + s.len()).max(2 * self.text.capacity()));
            bigger.push_str(&self.text);
            self.text = Zeroizing::new(bigger);
        }
        self.text.push_str(s);
        Ok(())
    }
}

/// Bytes a value holds, as far as the budget counts.
fn size_of(value: &Value) -> usize {
    match value {
        Value::String(s) => s.len(),
        Value::List(items) => items.iter().map(size_of).sum::<usize>() + items.len(),
        Value::Map(map) => map.iter().map(|(k, v)| k.len() + size_of(v)).sum::<usize>() + map.len(),
        _ => 8,
    }
}

/// `f` as template function `name`, charged to `budget`: its arguments are counted before it
/// runs and refused above [`MAX_VALUE_BYTES`], its result after, and the clock checked.
fn metered(
    budget: &Arc<Budget>,
    name: &'static str,
    f: impl Fn(&[Value]) -> Result<Value, TemplateError> + Send + Sync + 'static,
) -> impl Fn(&[Value]) -> Result<Value, TemplateError> + Send + Sync + 'static {
    let budget = budget.clone();
    move |args| {
        let input: usize = args.iter().map(size_of).sum();
        if input > MAX_VALUE_BYTES {
            return Err(limit(name, "its arguments exceed 1 MiB"));
        }
        budget.charge(name, input)?;
        let result = f(args).map_err(|e| match &e {
            TemplateError::Exec(m) => match m.strip_prefix(OWN) {
                Some(own) if own.starts_with(name) => e,
                Some(own) => limit(name, own),
                None => limit(name, "failed"),
            },
            other => limit(name, &describe_inner(other)),
        })?;
        let output = size_of(&result);
        if output > MAX_VALUE_BYTES {
            return Err(too_large(name));
        }
        budget.charge(name, output)?;
        Ok(result)
    }
}

/// A function's own failure, without its text (which may quote a value).
fn describe_inner(error: &TemplateError) -> String {
    match error {
        TemplateError::ArgCount { expected, got, .. } => format!("expects {expected} arguments, got {got}"),
        TemplateError::TypeMismatch { expected, got } => format!("expected {expected}, got {got}"),
        TemplateError::IndexOutOfRange { .. } => "index out of range".to_owned(),
        _ => "failed".to_owned(),
    }
}

/// Go's builtin `name` (print, println, printf) applied to `args`, run through gotmpl itself
/// so that its formatting stays Go's: this module only wraps it with bounds.
fn builtin(name: &str, args: &[Value]) -> Result<Value, TemplateError> {
    let call: String = (0..args.len()).map(|i| format!(" .a{i}")).collect();
    let data = Value::Map(Arc::new(
        args.iter().enumerate().map(|(i, v)| (Arc::<str>::from(format!("a{i}").as_str()), v.clone())).collect(),
    ));
    let text = Template::new(name).parse(&format!("{{{{ {name}{call} }}}}"))?.execute_to_string(&data)?;
    Ok(Value::String(Arc::from(Zeroizing::new(text).as_str())))
}

/// An upper bound on what `printf format args...` writes: every directive can print any
/// argument (`%[1]s`), escaped (`%q`), padded to its width and precision (at most 65535 each).
fn printf_bound(args: &[Value]) -> usize {
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

/// A failure of one of this module's functions; its text must carry no value.
fn exec_error(message: &str) -> TemplateError {
    TemplateError::Exec(format!("{OWN}{message}"))
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

/// Go's `encoding/json` string encoding, which escapes `<`, `>` and `&` for HTML safety (sops'
/// JSON store writes strings this way too).
pub fn go_json_string(s: &str) -> String {
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

fn indent(name: &str, spaces: usize, s: &str) -> Result<String, TemplateError> {
    let lines = s.matches('\n').count() + 1;
    if s.len().saturating_add(spaces.saturating_mul(lines)) > MAX_VALUE_BYTES {
        return Err(too_large(name));
    }
    let pad = " ".repeat(spaces);
    Ok(format!("{pad}{}", s.replace('\n', &format!("\n{pad}"))))
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

/// Sprig's functions and Go's output builtins, each charged to `budget` (see [`metered`]).
fn with_functions(t: Template, budget: &Arc<Budget>) -> Template {
    type Func = fn(&[Value]) -> Result<Value, TemplateError>;
    let functions: [(&'static str, Func); 32] = [
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

#[cfg(test)]
mod tests {
    use super::*;

    fn render_one(source: &str, items: &[(&str, &str)]) -> String {
        let items = items.iter().map(|(k, v)| (k.to_string(), SecretBytes::from(v.as_bytes()))).collect();
        let templates = BTreeMap::from([("out".to_string(), source.to_string())]);
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

    fn render_error(source: &str, items: &[(&str, &str)]) -> RenderError {
        let items = items.iter().map(|(k, v)| (k.to_string(), SecretBytes::from(v.as_bytes()))).collect();
        let templates = BTreeMap::from([("out".to_string(), source.to_string())]);
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
                let all = BTreeMap::from([("out".to_string(), source.clone())]);
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
