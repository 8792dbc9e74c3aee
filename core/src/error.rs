//! Errors as one line for people: the failure, then each cause that adds something.

/// `head: cause: cause...`, leaving out causes whose text is already in the line (many errors
/// repeat their source in their own message).
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

#[cfg(test)]
mod tests {
    #[derive(Debug, thiserror::Error)]
    #[error("outer: inner failed")]
    struct Outer(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("inner failed")]
    struct Inner;

    #[test]
    fn repeated_causes_are_shown_once() {
        let e = Outer(Inner);
        assert_eq!(super::one_line(e.to_string(), std::error::Error::source(&e)), "outer: inner failed");
        assert_eq!(super::one_line("reading x".into(), Some(&e)), "reading x: outer: inner failed");
    }
}
