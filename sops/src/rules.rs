//! Which values sops encrypts: the selection rules of the metadata (`encrypted_regex`,
//! `unencrypted_suffix`, ... and the comment rules), and the depth-first walk over the tree that
//! applies them.

use regex::Regex;
use serde_json::Value;

use crate::SopsError;
use crate::cipher::is_encrypted_value;
use crate::tree::{Comment, Entry, Node};

/// Which values sops encrypts: the selection rules of the metadata.
#[derive(Debug)]
pub(crate) struct Rules {
    pub(crate) unencrypted_suffix: Option<String>,
    pub(crate) encrypted_suffix: Option<String>,
    pub(crate) unencrypted_regex: Option<Regex>,
    pub(crate) encrypted_regex: Option<Regex>,
    pub(crate) unencrypted_comment_regex: Option<Regex>,
    pub(crate) encrypted_comment_regex: Option<Regex>,
    pub(crate) mac_only_encrypted: bool,
}

/// Where a leaf is: its path of mapping keys, the comments in force at each level, and
/// whether it is itself a comment.
pub(crate) struct Leaf<'a> {
    pub(crate) path: &'a [String],
    pub(crate) comments: &'a [Vec<String>],
    pub(crate) is_comment: bool,
}

/// A regex error on one line (the crate's own message draws the pattern with a caret below it).
pub(crate) fn regex_problem(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or(&text).trim().trim_start_matches("error: ").to_owned()
}

/// Compiled size of one regular expression from a file (its NFA, and its lazy DFA's cache): the
/// regex crate's default allows 10 MiB each, so a few kilobytes of patterns could cost gigabytes.
pub(crate) const REGEX_BYTES: usize = 256 << 10;

/// A regular expression from a file, compiled within [`REGEX_BYTES`].
pub(crate) fn bounded_regex(pattern: &str) -> Result<Regex, regex::Error> {
    regex::RegexBuilder::new(pattern).size_limit(REGEX_BYTES).dfa_size_limit(REGEX_BYTES).build()
}

impl Rules {
    pub(crate) fn from(meta: &Value) -> Result<Rules, SopsError> {
        let text = |k: &str| meta.get(k).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned);
        let regex = |k: &str| {
            text(k)
                .map(|r| {
                    bounded_regex(&r)
                        .map_err(|e| SopsError::InvalidRegex { key: k.to_owned(), message: regex_problem(&e) })
                })
                .transpose()
        };
        let mut rules = Rules {
            unencrypted_suffix: text("unencrypted_suffix"),
            encrypted_suffix: text("encrypted_suffix"),
            unencrypted_regex: regex("unencrypted_regex")?,
            encrypted_regex: regex("encrypted_regex")?,
            unencrypted_comment_regex: regex("unencrypted_comment_regex")?,
            encrypted_comment_regex: regex("encrypted_comment_regex")?,
            mac_only_encrypted: meta.get("mac_only_encrypted").is_some_and(|v| v == true || v == "true"),
        };
        let none_set = rules.unencrypted_suffix.is_none()
            && rules.encrypted_suffix.is_none()
            && rules.unencrypted_regex.is_none()
            && rules.encrypted_regex.is_none()
            && !rules.by_comment();
        if none_set {
            rules.unencrypted_suffix = Some("_unencrypted".to_owned());
        }
        Ok(rules)
    }

    pub(crate) fn by_comment(&self) -> bool {
        self.unencrypted_comment_regex.is_some() || self.encrypted_comment_regex.is_some()
    }

    /// Whether sops encrypts this leaf (`sops.go` `shouldBeEncrypted`, in its order).
    pub(crate) fn encrypts(&self, leaf: &Leaf<'_>) -> bool {
        let path = leaf.path;
        let mut encrypted = true;
        if let Some(s) = &self.unencrypted_suffix
            && path.iter().any(|k| k.ends_with(s.as_str()))
        {
            encrypted = false;
        }
        if let Some(s) = &self.encrypted_suffix {
            encrypted = path.iter().any(|k| k.ends_with(s.as_str()));
        }
        if let Some(r) = &self.unencrypted_regex
            && path.iter().any(|k| r.is_match(k))
        {
            encrypted = false;
        }
        if let Some(r) = &self.encrypted_regex {
            encrypted = path.iter().any(|k| r.is_match(k));
        }
        if let Some(r) = &self.unencrypted_comment_regex
            && leaf.comments.iter().flatten().any(|c| r.is_match(c))
        {
            encrypted = false;
        }
        if let Some(r) = &self.encrypted_comment_regex {
            // A marker comment does not encrypt itself.
            let last = leaf.comments.len().saturating_sub(1);
            encrypted = leaf.comments.iter().enumerate().any(|(level, comments)| {
                let upto =
                    if leaf.is_comment && level == last { comments.len().saturating_sub(1) } else { comments.len() };
                comments[..upto].iter().any(|c| r.is_match(c))
            });
        }
        encrypted
    }

    /// On decryption: with comment rules the choice depends on comments that may themselves be
    /// encrypted, so go by the value's form, as the result is the same.
    pub(crate) fn encrypted_on_decrypt(&self, leaf: &Leaf<'_>, node: &Node) -> bool {
        if self.by_comment() || leaf.is_comment {
            return matches!(node, Node::Str(s) if is_encrypted_value(s))
                || matches!(node, Node::Comment(c) if is_encrypted_value(&c.text));
        }
        self.encrypts(leaf)
    }
}

/// What is done at each leaf.
pub(crate) type LeafVisitor<'a> = dyn FnMut(&Leaf<'_>, &mut Node) -> Result<(), SopsError> + 'a;

/// Visit every non-null leaf and comment depth-first in document order, with its path of
/// mapping keys (list indices are not part of a sops path) and the comments in force.
pub(crate) fn walk(
    node: &mut Node,
    path: &mut Vec<String>,
    comments: &mut Vec<Vec<String>>,
    visit: &mut LeafVisitor<'_>,
) -> Result<(), SopsError> {
    // A comment is visited with the path of the map or list it is in.
    let visit_comment =
        |comment: &mut Comment, path: &[String], comments: &mut Vec<Vec<String>>, visit: &mut LeafVisitor<'_>| {
            if let Some(level) = comments.last_mut() {
                level.push(comment.text.clone());
            }
            let mut leaf = Node::Comment(std::mem::replace(comment, Comment::line("")));
            let result = visit(&Leaf { path, comments, is_comment: true }, &mut leaf);
            if let Node::Comment(new) = leaf {
                *comment = new;
            }
            result
        };
    match node {
        Node::Map(entries) => {
            comments.push(Vec::new());
            for entry in entries.iter_mut() {
                match entry {
                    Entry::Comment(text) => visit_comment(text, path, comments, visit)?,
                    Entry::Pair(k, v) => {
                        path.push(k.clone());
                        walk(v, path, comments, visit)?;
                        path.pop();
                        if let Some(level) = comments.last_mut() {
                            level.clear();
                        }
                    }
                }
            }
            comments.pop();
        }
        Node::List(items) => {
            comments.push(Vec::new());
            for item in items.iter_mut() {
                if let Node::Comment(text) = item {
                    visit_comment(text, path, comments, visit)?;
                } else {
                    walk(item, path, comments, visit)?;
                    if let Some(level) = comments.last_mut() {
                        level.clear();
                    }
                }
            }
            comments.pop();
        }
        Node::Null => {}
        leaf => visit(&Leaf { path, comments, is_comment: false }, leaf)?,
    }
    Ok(())
}

/// The values of `doc` that the selection rules of `meta` (comment rules included) say sops
/// encrypts but that are not `ENC[...]` strings: plaintext left in a SOPS file, by their key
/// paths (`a.b`; list indices are not part of a sops path). Empty strings and comments are left
/// as sops leaves them. An invalid rule (a bad regex) is an error, not a silent pass.
pub fn unencrypted_values(doc: &Node, meta: &Value) -> Result<Vec<String>, SopsError> {
    let rules = Rules::from(meta)?;
    let mut doc = doc.clone();
    let mut found = Vec::new();
    walk(&mut doc, &mut Vec::new(), &mut Vec::new(), &mut |leaf, node| {
        let sealed = match node {
            Node::Str(s) => s.is_empty() || is_encrypted_value(s),
            Node::Comment(_) => true,
            _ => false,
        };
        if !sealed && rules.encrypts(leaf) {
            found.push(leaf.path.join("."));
        }
        Ok(())
    })?;
    Ok(found)
}

/// Which values to encrypt; at most one rule, as in sops.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Selection {
    /// The default: everything except keys ending in `_unencrypted`.
    #[default]
    Default,
    UnencryptedSuffix(String),
    EncryptedSuffix(String),
    UnencryptedRegex(String),
    EncryptedRegex(String),
    UnencryptedCommentRegex(String),
    EncryptedCommentRegex(String),
}

impl Selection {
    /// The rule set among the fields sops uses for them (metadata, `.sops.yaml`, flags), where
    /// `field` gives a field's non-empty value.
    pub fn from_fields(field: impl Fn(&str) -> Option<String>) -> Option<Selection> {
        field("encrypted_regex")
            .map(Selection::EncryptedRegex)
            .or_else(|| field("unencrypted_regex").map(Selection::UnencryptedRegex))
            .or_else(|| field("encrypted_suffix").map(Selection::EncryptedSuffix))
            .or_else(|| field("unencrypted_suffix").map(Selection::UnencryptedSuffix))
            .or_else(|| field("encrypted_comment_regex").map(Selection::EncryptedCommentRegex))
            .or_else(|| field("unencrypted_comment_regex").map(Selection::UnencryptedCommentRegex))
    }

    pub(crate) fn metadata(&self) -> (&'static str, String) {
        match self {
            Selection::Default => ("unencrypted_suffix", "_unencrypted".to_owned()),
            Selection::UnencryptedSuffix(s) => ("unencrypted_suffix", s.clone()),
            Selection::EncryptedSuffix(s) => ("encrypted_suffix", s.clone()),
            Selection::UnencryptedRegex(r) => ("unencrypted_regex", r.clone()),
            Selection::EncryptedRegex(r) => ("encrypted_regex", r.clone()),
            Selection::UnencryptedCommentRegex(r) => ("unencrypted_comment_regex", r.clone()),
            Selection::EncryptedCommentRegex(r) => ("encrypted_comment_regex", r.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_regex_that_would_compile_to_megabytes_is_refused() {
        assert!(bounded_regex(r"^(data|stringData)$").is_ok());
        assert!(bounded_regex(r"^clusters/(?P<cluster>[\w-]+)/.*\.ya?ml$").is_ok());
        assert!(bounded_regex(r"(\w{50}){50}").is_err(), "its NFA is tens of megabytes");
    }
}
