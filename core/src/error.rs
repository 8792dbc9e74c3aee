//! Errors as one line for people: the failure, then each cause that adds something.

/// `head: cause: cause...`, leaving out causes whose text is already in the line. Sealant's own
/// errors never put their source in their message (style.md); the check stays for those of
/// other crates that do, kube's among them (`HyperError: {0}` with the same error as source).
pub fn one_line(head: String, mut cause: Option<&(dyn std::error::Error + 'static)>) -> String {
    let mut line = head;
    while let Some(e) = cause {
        let text = e.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = e.source();
    }
    line
}

/// `text` cut to at most `max` bytes (at a character boundary), saying how much was left out:
/// a message that names what an untrusted object holds (its keys, say) stays small enough for a
/// log line, an Event and a status condition.
pub fn bounded(mut text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let left_out = text.len() - end;
    text.truncate(end);
    text.push_str(&format!("... ({left_out} more bytes)"));
    text
}

/// `text` in double quotes for a message, with quotes, backslashes and control characters
/// escaped, so that a name from a file or the network cannot break the line or drive the
/// terminal. (What `{:?}` does to a string, said on purpose, and never Rust's type names.)
pub fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&c.escape_unicode().to_string()),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `text` as it is, but for control characters (a line break, an escape sequence, an OSC 52
/// clipboard write), which are escaped as [`quoted`] escapes them, and a backslash, doubled so the
/// escapes cannot be forged: for names shown where upstream shows them bare (item keys in a
/// status), which only a hostile one changes.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(|c| c.is_control() || c == '\\') {
        return std::borrow::Cow::Borrowed(text);
    }
    let quoted = quoted(text).replace("\\\"", "\"");
    std::borrow::Cow::Owned(quoted[1..quoted.len() - 1].to_owned())
}

#[cfg(test)]
mod tests {
    #[derive(Debug, thiserror::Error)]
    #[error("outer: inner failed")]
    struct Outer(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("inner failed")]
    struct Inner;

    #[test]
    fn printable_text_is_itself_unless_it_could_drive_a_terminal() {
        assert_eq!(super::printable("db.password-1"), "db.password-1");
        assert_eq!(super::printable("say \"hi\""), "say \"hi\"");
        assert_eq!(super::printable("a\nb\u{1b}]52;c;aGk=\u{7}"), r"a\nb\u{1b}]52;c;aGk=\u{7}");
        assert_eq!(super::printable(r"a\nb"), r"a\\nb");
    }

    #[test]
    fn quoted_text_cannot_break_the_line() {
        assert_eq!(super::quoted("plain"), r#""plain""#);
        assert_eq!(super::quoted("a\"b\\c\nd\u{1b}[2J"), r#""a\"b\\c\nd\u{1b}[2J""#);
    }

    #[test]
    fn repeated_causes_are_shown_once() {
        let e = Outer(Inner);
        assert_eq!(super::one_line(e.to_string(), std::error::Error::source(&e)), "outer: inner failed");
        assert_eq!(super::one_line("reading x".into(), Some(&e)), "reading x: outer: inner failed");
    }
}
