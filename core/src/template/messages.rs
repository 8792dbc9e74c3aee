//! Messages for template failures that carry no plaintext: what failed (the function,
//! construct or bound) and where in the template, never a value, a byte of one, its length or an
//! index into it.

use gotmpl::TemplateError;

use super::budget::OWN;
use crate::error::quoted;

/// Where the function `name` is first called in `source`: `line L, column C` (1-based), found in
/// the template's actions. gotmpl reports no position for execution errors, and a value's
/// position must not be guessed from it.
pub(super) fn first_call(source: &str, name: &str) -> Option<String> {
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
pub(super) fn describe_in(error: &TemplateError, source: &str) -> String {
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
pub(super) fn describe(error: &TemplateError) -> String {
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
pub(super) fn called_function(message: &str) -> Option<&str> {
    let rest = &message[message.find("error calling ")? + "error calling ".len()..];
    let name = &rest[..rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len())];
    (!name.is_empty()).then_some(name)
}

/// A function's own failure, without its text (which may quote a value).
pub(super) fn describe_inner(error: &TemplateError) -> String {
    match error {
        TemplateError::ArgCount { expected, got, .. } => format!("expects {expected} arguments, got {got}"),
        TemplateError::TypeMismatch { expected, got } => format!("expected {expected}, got {got}"),
        TemplateError::IndexOutOfRange { .. } => "index out of range".to_owned(),
        _ => "failed".to_owned(),
    }
}
