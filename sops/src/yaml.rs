//! The YAML store: documents with comments as tree items, typed the way yaml.v3 types them,
//! and written back in yaml.v3's block style with an indent of 4.
//!
//! The parser gives events with positions; comment lines are found in the text around them
//! (a line whose first non-blank character is `#`, outside any multi-line scalar, or a `# c`
//! after a value on its line) and placed before the next key or item that follows them. A
//! comment after a value on its line goes before that key, as sops 3.11 writes it.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};
use zeroize::Zeroizing;

use super::SopsError;
use super::tree::{Comment, Entry, Node, go_float_g};

/// A comment found in the text: its position (inline comments sort before their line) and text.
struct Found {
    line: usize,
    col: isize,
    text: String,
}

enum Frame {
    /// `keys` holds the keys so far, to refuse duplicates.
    Map {
        entries: Vec<Entry>,
        keys: HashSet<String>,
        key: Option<String>,
        col: usize,
        anchor: usize,
    },
    List {
        items: Vec<Node>,
        col: usize,
        anchor: usize,
    },
}

/// Every comment of `text`, in order; `spans` are the multi-line scalars, whose lines hold none.
fn find_comments(text: &str, events: &[(Event<'_>, Span)]) -> Vec<Found> {
    let lines: Vec<&str> = text.split('\n').collect();
    let mut covered = vec![false; lines.len() + 2];
    // Byte offsets of each character of the non-ASCII lines, made when first needed: the parser
    // counts columns in characters, and counting from the start of a long line for every
    // scalar on it would be quadratic.
    let ascii: Vec<bool> = lines.iter().map(|l| l.is_ascii()).collect();
    let mut offsets: HashMap<usize, Vec<usize>> = HashMap::new();
    let mut tail = |number: usize, col: usize| -> Option<&str> {
        let line = *lines.get(number.wrapping_sub(1))?;
        if ascii[number - 1] {
            return line.get(col.min(line.len())..);
        }
        let starts = offsets.entry(number).or_insert_with(|| line.char_indices().map(|(i, _)| i).collect());
        Some(&line[starts.get(col).copied().unwrap_or(line.len())..])
    };
    let mut inline = Vec::new();
    for (event, span) in events {
        let (start, end) = (span.start.line(), span.end.line());
        if let Event::Scalar(_, style, ..) = event {
            let block = matches!(style, ScalarStyle::Literal | ScalarStyle::Folded);
            let last = if span.end.col() == 0 { end.saturating_sub(1) } else { end };
            for number in start..=last {
                // A block's content is indented at least as far as its first line; a
                // comment indented less is after it.
                let indent = lines.get(number.wrapping_sub(1)).map_or(0, |l| l.len() - l.trim_start().len());
                if let Some(flag) = covered.get_mut(number)
                    && (!block || indent >= span.start.col())
                {
                    *flag = true;
                }
            }
            if block {
                continue;
            }
        } else if !matches!(event, Event::Alias(_)) {
            continue;
        }
        // `value # comment` (or `key: # comment` before a nested block) ends the line.
        let Some(rest) = tail(end, span.end.col()) else { continue };
        let trimmed = rest.trim_start();
        let after_colon = trimmed.strip_prefix(':').map_or(trimmed, str::trim_start);
        if after_colon.len() < rest.len()
            && let Some(comment) = after_colon.strip_prefix('#')
        {
            inline.push(Found { line: end, col: -1, text: comment.to_owned() });
        }
    }
    let mut comments = inline;
    for (i, line) in lines.iter().enumerate() {
        let number = i + 1;
        let trimmed = line.trim_start();
        if !covered[number]
            && let Some(comment) = trimmed.strip_prefix('#')
        {
            let col = (line.len() - trimmed.len()) as isize;
            comments.push(Found { line: number, col, text: comment.trim_end_matches('\r').to_owned() });
        }
    }
    comments.sort_by_key(|c| (c.line, c.col));
    comments.dedup_by_key(|c| (c.line, c.col));
    comments
}

/// yaml.v3's resolution of a plain scalar (YAML 1.2 core schema plus timestamps).
pub fn resolve_plain(text: &str) -> Node {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Node::Null,
        "true" | "True" | "TRUE" => return Node::Bool(true),
        "false" | "False" | "FALSE" => return Node::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => return Node::Float(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => return Node::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Node::Float(f64::NAN),
        _ => {}
    }
    if !text.starts_with(|c: char| c.is_ascii_digit() || matches!(c, '-' | '+' | '.')) {
        return Node::str(text);
    }
    if let Some(time) = timestamp(text) {
        return Node::Time(time);
    }
    let plain = text.replace('_', "");
    if let Some(i) = go_parse_int(&plain) {
        return Node::Int(i);
    }
    let digits = plain.trim_start_matches(['-', '+']);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        // Too large for int64: a float, as sops takes it.
        if let Ok(f) = plain.parse::<f64>() {
            return Node::Float(f);
        }
    }
    if is_yaml_float(&plain)
        && let Ok(f) = plain.parse::<f64>()
    {
        return Node::Float(f);
    }
    Node::str(text)
}

/// Go's `strconv.ParseInt(s, 0, 64)`: sign, then `0x`, `0o`, `0b`, a leading `0` (octal) or decimal.
fn go_parse_int(text: &str) -> Option<i64> {
    let (negative, body) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let lower = body.to_ascii_lowercase();
    let (radix, digits) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d.to_owned())
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d.to_owned())
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d.to_owned())
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, lower[1..].to_owned())
    } else {
        (10, lower)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = i128::from_str_radix(&digits, radix).ok()?;
    i64::try_from(if negative { -magnitude } else { magnitude }).ok()
}

/// `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`, yaml.v3's float syntax.
fn is_yaml_float(text: &str) -> bool {
    let body = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (number, exponent) = match body.find(['e', 'E']) {
        Some(at) => (&body[..at], Some(&body[at + 1..])),
        None => (body, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let number_ok = match number.split_once('.') {
        Some(("", fraction)) => digits(fraction),
        Some((whole, fraction)) => digits(whole) && (fraction.is_empty() || digits(fraction)),
        None => digits(number),
    };
    let exponent_ok = exponent.is_none_or(|e| digits(e.strip_prefix(['-', '+']).unwrap_or(e)));
    number_ok && exponent_ok
}

/// A yaml.v3 timestamp (`2006-1-2`, `2006-1-2T15:4:5.999Z07:00`, `2006-1-2 15:4:5.999`) as
/// Go's `MarshalText` writes it.
fn timestamp(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    if bytes.len() < 5 || !bytes[..4].iter().all(u8::is_ascii_digit) || bytes[4] != b'-' {
        return None;
    }
    let number = |s: &str, max_len: usize| -> Option<u32> {
        (!s.is_empty() && s.len() <= max_len && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok())?
    };
    let (date, rest) = match text.find(['T', 't', ' ']) {
        Some(at) => (&text[..at], Some((&text[at..at + 1], &text[at + 1..]))),
        None => (text, None),
    };
    let mut parts = date.splitn(3, '-');
    let year: i32 = parts.next()?.parse().ok()?;
    let month = number(parts.next()?, 2)?;
    let day = number(parts.next()?, 2)?;
    let month = time::Month::try_from(u8::try_from(month).ok()?).ok()?;
    time::Date::from_calendar_date(year, month, u8::try_from(day).ok()?).ok()?;
    let date_text = format!("{year:04}-{:02}-{day:02}", month as u8);
    let Some((separator, clock)) = rest else { return Some(format!("{date_text}T00:00:00Z")) };
    // With `T` the zone is required; with a space there is none.
    let (clock, zone) = if separator == " " {
        (clock, "Z".to_owned())
    } else {
        let at = clock.find(['Z', '+', '-'])?;
        let zone = &clock[at..];
        let zone = if zone == "Z" {
            "Z".to_owned()
        } else {
            let offset = &zone[1..];
            if offset.len() != 5 || offset.as_bytes()[2] != b':' {
                return None;
            }
            let (h, m) = (number(&offset[..2], 2)?, number(&offset[3..], 2)?);
            if h > 23 || m > 59 {
                return None;
            }
            if h == 0 && m == 0 { "Z".to_owned() } else { format!("{}{h:02}:{m:02}", &zone[..1]) }
        };
        (&clock[..at], zone)
    };
    let (hms, fraction) = clock.split_once('.').map_or((clock, None), |(a, b)| (a, Some(b)));
    let mut parts = hms.splitn(3, ':');
    let (h, m, s) = (number(parts.next()?, 2)?, number(parts.next()?, 2)?, number(parts.next()?, 2)?);
    if h > 23 || m > 59 || s > 59 {
        return None;
    }
    let fraction = match fraction {
        Some(f) if f.is_empty() || f.len() > 9 || !f.bytes().all(|b| b.is_ascii_digit()) => return None,
        Some(f) => {
            let trimmed = f.trim_end_matches('0');
            if trimmed.is_empty() { String::new() } else { format!(".{trimmed}") }
        }
        None => String::new(),
    };
    Some(format!("{date_text}T{h:02}:{m:02}:{s:02}{fraction}{zone}"))
}

/// Parse every document of a YAML text. Each must be a mapping (or empty).
/// Nodes in `node`, counted as yaml.v3 counts decoded nodes.
fn node_count(node: &Node) -> usize {
    match node {
        Node::Map(entries) => {
            1 + entries.iter().map(|e| if let Entry::Pair(_, v) = e { 1 + node_count(v) } else { 0 }).sum::<usize>()
        }
        Node::List(items) => 1 + items.iter().map(node_count).sum::<usize>(),
        _ => 1,
    }
}

/// yaml.v3's bound on alias expansion ("billion laughs"): once more than 100 nodes came from
/// aliases among more than 1,000 decoded, their share may not exceed 99% up to 400,000
/// decoded nodes, falling to 10% at 4,000,000. sops refuses such documents the same way.
fn excessive_aliasing(decoded: usize, aliased: usize) -> bool {
    const LOW: f64 = 400_000.0;
    const HIGH: f64 = 4_000_000.0;
    let decoded_f = decoded as f64;
    let allowed = if decoded_f <= LOW {
        0.99
    } else if decoded_f >= HIGH {
        0.10
    } else {
        0.99 - 0.89 * ((decoded_f - LOW) / (HIGH - LOW))
    };
    aliased > 100 && decoded > 1_000 && aliased as f64 / decoded_f > allowed
}

pub fn parse(text: &str) -> Result<Vec<Node>, SopsError> {
    let bad = |at: &Span, what: &str| SopsError::Parse(format!("line {}: {what}", at.start.line()));
    if sealant_core::yaml::flow_depth(text) > sealant_core::yaml::MAX_NESTING {
        return Err(SopsError::Parse(format!(
            "the document is nested deeper than {} levels",
            sealant_core::yaml::MAX_NESTING
        )));
    }
    let events: Vec<(Event<'_>, Span)> = Parser::new_from_str(text)
        .collect::<Result<_, _>>()
        // The scanner's own message quotes the text, which may be a secret: position only.
        .map_err(|e| SopsError::Parse(format!("invalid YAML at line {}: {}", e.marker().line(), e.info())))?;
    // Block nesting (`- - - x`, indented maps) has no brackets for `flow_depth` to count: count the
    // collections as they open, before anything walks the tree recursively.
    let mut depth = 0usize;
    for (event, at) in &events {
        match event {
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                depth += 1;
                if depth > sealant_core::yaml::MAX_NESTING {
                    return Err(bad(
                        at,
                        &format!("the document is nested deeper than {} levels", sealant_core::yaml::MAX_NESTING),
                    ));
                }
            }
            Event::MappingEnd | Event::SequenceEnd => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    let mut comments = find_comments(text, &events).into_iter().peekable();
    let mut docs = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut root: Option<Node> = None;
    // Each anchored node with its node count, and the counts that bound alias expansion.
    let mut anchors: HashMap<usize, (Node, usize)> = HashMap::new();
    let (mut decoded, mut aliased) = (0usize, 0usize);

    // Comments that come before `line:col` (and pass `takes`) go into the innermost open frame.
    let mut before = |stack: &mut Vec<Frame>, line: usize, col: usize, takes: &dyn Fn(&Found) -> bool| {
        let mut taken = Vec::new();
        while let Some(c) = comments.peek() {
            if (c.line, c.col) >= (line, col as isize) || !takes(c) {
                break;
            }
            if let Some(c) = comments.next() {
                taken.push(c);
            }
        }
        match stack.last_mut() {
            Some(Frame::Map { entries, .. }) => {
                entries.extend(taken.into_iter().map(|c| Entry::Comment(Comment { inline: c.col < 0, text: c.text })))
            }
            Some(Frame::List { items, .. }) => {
                items.extend(taken.into_iter().map(|c| Node::Comment(Comment { inline: c.col < 0, text: c.text })))
            }
            None => {}
        }
    };

    for (event, span) in &events {
        let (line, col) = (span.start.line(), span.start.col());
        let value = match event {
            Event::DocumentStart(_) => {
                root = None;
                continue;
            }
            Event::DocumentEnd => {
                let mut doc = match root.take() {
                    Some(node @ Node::Map(_)) => node,
                    Some(Node::Null) | None => Node::Map(Vec::new()),
                    Some(_) => return Err(bad(span, "a document must be a mapping")),
                };
                // Comments left at the end of the document belong to its top level.
                let mut frame =
                    vec![Frame::Map { entries: Vec::new(), keys: HashSet::new(), key: None, col: 0, anchor: 0 }];
                before(&mut frame, span.end.line(), span.end.col(), &|_| true);
                if let (Node::Map(entries), Some(Frame::Map { entries: tail, .. })) = (&mut doc, frame.pop()) {
                    entries.extend(tail);
                }
                docs.push(doc);
                continue;
            }
            Event::MappingStart(anchor, _) | Event::SequenceStart(anchor, _) => {
                decoded += 1;
                match stack.last() {
                    Some(Frame::Map { key: None, .. }) => return Err(bad(span, "a key must be a plain value")),
                    // Comments indented as far as the new block's first item are its own. So is
                    // an inline one on its first line, as in sops, and for a map an encrypted one
                    // on a line before: sops writes the list's own comments as items there.
                    Some(Frame::List { .. }) => {
                        let map = matches!(event, Event::MappingStart(..));
                        before(&mut stack, line, col, &|c| {
                            let own = c.line == line || (map && c.col >= 0 && crate::is_encrypted_value(&c.text));
                            c.col < col as isize && !own
                        })
                    }
                    _ => {}
                }
                stack.push(if matches!(event, Event::MappingStart(..)) {
                    Frame::Map { entries: Vec::new(), keys: HashSet::new(), key: None, col, anchor: *anchor }
                } else {
                    Frame::List { items: Vec::new(), col, anchor: *anchor }
                });
                continue;
            }
            Event::MappingEnd | Event::SequenceEnd => {
                let min = match stack.last() {
                    Some(Frame::Map { col, .. } | Frame::List { col, .. }) => *col,
                    None => 0,
                };
                // A comment at the end of a block is its own if indented as far as its items; an
                // inline one on the line where the block ends is the next key's.
                let end = span.end.line();
                before(&mut stack, end, span.end.col(), &|c| (c.col < 0 && c.line < end) || c.col >= min as isize);
                let (node, anchor) = match stack.pop() {
                    Some(Frame::Map { entries, anchor, .. }) => (Node::Map(entries), anchor),
                    Some(Frame::List { items, anchor, .. }) => (Node::List(items), anchor),
                    None => return Err(bad(span, "unbalanced YAML")),
                };
                if anchor != 0 {
                    anchors.insert(anchor, (node.clone(), node_count(&node)));
                }
                node
            }
            Event::Scalar(text, style, anchor, tag) => {
                decoded += 1;
                if matches!(stack.last(), Some(Frame::Map { key: None, .. })) {
                    let key_text = text.to_string();
                    before(&mut stack, line, col, &|_| true);
                    if let Some(Frame::Map { keys, key, .. }) = stack.last_mut() {
                        if !keys.insert(key_text.clone()) {
                            return Err(bad(
                                span,
                                &format!("duplicate key {}", sealant_core::error::quoted(&key_text)),
                            ));
                        }
                        *key = Some(key_text);
                    }
                    continue;
                }
                if matches!(stack.last(), Some(Frame::List { .. })) {
                    before(&mut stack, line, col, &|_| true);
                }
                let is_str_tag = tag.as_ref().is_some_and(|t| t.suffix == "str" || t.suffix == "binary");
                let node = if *style == ScalarStyle::Plain && !is_str_tag {
                    resolve_plain(text)
                } else {
                    Node::Str(Zeroizing::new(text.to_string()))
                };
                if *anchor != 0 {
                    anchors.insert(*anchor, (node.clone(), 1));
                }
                node
            }
            Event::Alias(id) => {
                if matches!(stack.last(), Some(Frame::Map { key: None, .. })) {
                    return Err(bad(span, "an alias cannot be a key"));
                }
                if matches!(stack.last(), Some(Frame::List { .. })) {
                    before(&mut stack, line, col, &|_| true);
                }
                let (node, count) = anchors.get(id).ok_or_else(|| bad(span, "unknown alias"))?;
                // Counted before the copy is made, so a bomb is refused before it costs memory.
                decoded += count;
                aliased += count;
                if excessive_aliasing(decoded, aliased) {
                    return Err(bad(span, "the document contains excessive aliasing"));
                }
                node.clone()
            }
            _ => continue,
        };
        match stack.last_mut() {
            Some(Frame::Map { entries, key, .. }) => {
                let k = key.take().unwrap_or_default();
                entries.push(Entry::Pair(k, value));
            }
            Some(Frame::List { items, .. }) => items.push(value),
            None => root = Some(value),
        }
    }
    Ok(docs)
}

/// libyaml's printable characters; anything else is escaped in a double-quoted scalar.
fn printable(c: char) -> bool {
    matches!(c as u32, 0x0A | 0x20..=0x7E | 0xA0..=0xD7FF | 0xE000..=0xFFFD) && c != '\u{feff}'
}

/// Whether yaml.v3 must quote this string because a reader would take it for another type:
/// it resolves to something else, or is a YAML 1.1 boolean or sexagesimal number.
fn looks_typed(text: &str) -> bool {
    const YAML11: [&str; 16] =
        ["y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "on", "On", "ON", "off", "Off", "OFF"];
    // yaml.v3's isBase60Float: `1:20` would be a number to a YAML 1.1 reader.
    static BASE60: std::sync::LazyLock<Option<regex::Regex>> =
        std::sync::LazyLock::new(|| regex::Regex::new(r"^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$").ok());
    let base60 = || BASE60.as_ref().is_some_and(|r| r.is_match(text));
    YAML11.contains(&text) || text == "<<" || !matches!(resolve_plain(text), Node::Str(_)) || base60()
}

/// Whether libyaml's emitter may write this string plain in block context.
fn plain_allowed(text: &str) -> bool {
    let mut chars = text.chars();
    let Some(first) = chars.next() else { return false };
    // `-`, `?` and `:` start a plain scalar only when something other than a space follows.
    let indicator =
        "#,[]{}&*!|>'\"%@`".contains(first) || ("-?:".contains(first) && chars.next().is_none_or(|c| c == ' '));
    let breaks_or_unprintable = text.chars().any(|c| !printable(c) || matches!(c, '\n' | '\u{2028}' | '\u{2029}'));
    let edge_space = first.is_whitespace() || text.ends_with(char::is_whitespace);
    let document_marker = text.starts_with("---") || text.starts_with("...");
    let comment_or_mapping = text.contains(": ") || text.contains(" #") || text.ends_with(':');
    !(indicator || breaks_or_unprintable || edge_space || document_marker || comment_or_mapping)
}

/// A string as a YAML scalar on one line, as yaml.v3 chooses: plain when it can be, double
/// quotes when it would read as another type, else single quotes when every character is
/// printable, else double quotes with escapes.
fn quoted(text: &str) -> String {
    let typed = looks_typed(text);
    if !typed && plain_allowed(text) {
        return text.to_owned();
    }
    if !typed && text.chars().all(|c| printable(c) && c != '\n') {
        return format!("'{}'", text.replace('\'', "''"));
    }
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        let escape = match c {
            '\0' => "0",
            '\u{7}' => "a",
            '\u{8}' => "b",
            '\t' => "t",
            '\n' => "n",
            '\u{b}' => "v",
            '\u{c}' => "f",
            '\r' => "r",
            '\u{1b}' => "e",
            '"' => "\"",
            '\\' => "\\",
            '\u{85}' => "N",
            '\u{a0}' => "_",
            '\u{2028}' => "L",
            '\u{2029}' => "P",
            c if printable(c) => {
                out.push(c);
                continue;
            }
            c => {
                let code = c as u32;
                let escaped = match code {
                    0..=0xFF => format!("\\x{code:02X}"),
                    0x100..=0xFFFF => format!("\\u{code:04X}"),
                    _ => format!("\\U{code:08X}"),
                };
                out.push_str(&escaped);
                continue;
            }
        };
        out.push('\\');
        out.push_str(escape);
    }
    out.push('"');
    out
}

/// A scalar's text after `key: ` or `- `, with a block's lines at `indent`. With `exact`, a
/// whole float keeps a `.0` so that it reads back as a float.
fn scalar(node: &Node, indent: usize, exact: bool, hint_ok: bool) -> String {
    match node {
        Node::Str(s) => block_or_quoted(s, indent, hint_ok),
        Node::Bytes(b) => block_or_quoted(&String::from_utf8_lossy(b), indent, hint_ok),
        Node::Int(i) => i.to_string(),
        Node::Float(f) if f.is_nan() => ".nan".to_owned(),
        Node::Float(f) if f.is_infinite() => if *f > 0.0 { ".inf" } else { "-.inf" }.to_owned(),
        Node::Float(f) => {
            let text = go_float_g(*f);
            if exact && !text.contains(['.', 'e']) { format!("{text}.0") } else { text }
        }
        Node::Bool(b) => b.to_string(),
        Node::Time(t) => t.clone(),
        Node::Null => "null".to_owned(),
        Node::Map(_) => "{}".to_owned(),
        Node::List(_) => "[]".to_owned(),
        Node::Comment(_) => String::new(),
    }
}

/// A multi-line string as a literal block (`|`, `|-`, `|+`), unless libyaml would not write
/// it so. One that starts with a space or a line break needs an indentation indicator, which
/// is written only where the block is indented by 4 from its key (`hint_ok`); elsewhere such a
/// string is double-quoted.
fn block_or_quoted(text: &str, indent: usize, hint_ok: bool) -> String {
    let literal_ok = text.contains('\n')
        && text.chars().all(printable)
        && !text.contains(" \n")
        && !text.ends_with(' ')
        && (hint_ok || !text.starts_with([' ', '\n']));
    if !literal_ok {
        return quoted(text);
    }
    let chomp = if text.ends_with("\n\n") || text == "\n" {
        "+"
    } else if text.ends_with('\n') {
        ""
    } else {
        "-"
    };
    let hint = if text.starts_with([' ', '\n']) { INDENT.to_string() } else { String::new() };
    let pad = " ".repeat(indent);
    let mut out = format!("|{hint}{chomp}");
    for line in text.strip_suffix('\n').unwrap_or(text).split('\n') {
        out.push('\n');
        if !line.is_empty() {
            out.push_str(&pad);
            out.push_str(line);
        }
    }
    out
}

const INDENT: usize = 4;

/// How documents are written: whole floats with their `.0` (for editing), and inline comments
/// where sops 3.13 writes them in an encrypted file (on their key's line; in a list, as an item).
#[derive(Clone, Copy)]
struct Layout {
    exact: bool,
    inline_comments: bool,
}

/// A map's entries with keys at `indent`; what nests under a key goes to `inner`, which is
/// `indent + 4` except in a map that is a list item, where yaml.v3 counts from the dash.
fn write_map(entries: &[Entry], indent: usize, inner: usize, layout: Layout, out: &mut String) {
    let pad = " ".repeat(indent);
    let exact = layout.exact;
    // An inline comment waiting for the line of the key after it.
    let mut trailing: Option<&str> = None;
    for (i, entry) in entries.iter().enumerate() {
        match entry {
            Entry::Comment(comment) => {
                let next_is_scalar = matches!(entries.get(i + 1), Some(Entry::Pair(_, value)) if !has_block(value));
                if layout.inline_comments && comment.inline && next_is_scalar && trailing.is_none() {
                    trailing = Some(&comment.text);
                } else {
                    let _ = writeln!(out, "{pad}#{}", comment.text);
                }
            }
            Entry::Pair(key, value) => {
                // A merge key holds the expanded map; yaml.v3 tags it so that it stays a key.
                let key = if key == "<<" { "!!merge <<".to_owned() } else { quoted(key) };
                match value {
                    Node::Map(entries) if !entries.is_empty() => {
                        let _ = writeln!(out, "{pad}{key}:");
                        write_map(entries, inner, inner + INDENT, layout, out);
                    }
                    Node::List(items) if !items.is_empty() => {
                        let _ = writeln!(out, "{pad}{key}:");
                        write_list(items, inner, layout, out);
                    }
                    other => {
                        let value = scalar(other, inner, exact, inner == indent + INDENT);
                        match trailing.take() {
                            Some(text) => {
                                let _ = writeln!(out, "{pad}{key}: {value} #{text}");
                            }
                            None => {
                                let _ = writeln!(out, "{pad}{key}: {value}");
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Whether a value is written as a block under its key (a non-empty map or list).
fn has_block(value: &Node) -> bool {
    matches!(value, Node::Map(e) if !e.is_empty()) || matches!(value, Node::List(i) if !i.is_empty())
}

/// A list's items at `indent` (the column of the `-`); a map or list item starts on the dash line.
/// In an encrypted file every sops writes a comment in a list as an item of its own
/// (`- ENC[...,type:comment]`), and 3.13 an inline one of a map item on its first key's line.
fn write_list(items: &[Node], indent: usize, layout: Layout, out: &mut String) {
    let pad = " ".repeat(indent);
    let mut trailing: Option<&str> = None;
    for (i, item) in items.iter().enumerate() {
        let mut nested = String::new();
        match item {
            Node::Comment(comment) if layout.inline_comments => {
                match items.get(i + 1) {
                    Some(Node::Map(entries))
                        if comment.inline && trailing.is_none() && first_pair_is_scalar(entries) =>
                    {
                        trailing = Some(&comment.text);
                    }
                    // Only an encrypted one: a plaintext comment as an item would be a value.
                    _ if crate::is_encrypted_value(&comment.text) => {
                        let _ = writeln!(out, "{pad}- {}", comment.text);
                    }
                    _ => {
                        let _ = writeln!(out, "{pad}#{}", comment.text);
                    }
                }
                continue;
            }
            Node::Comment(comment) => {
                let _ = writeln!(out, "{pad}#{}", comment.text);
                continue;
            }
            Node::Map(inner) if !inner.is_empty() => {
                write_map(inner, indent + 2, indent + INDENT, layout, &mut nested);
                if let Some(text) = trailing.take()
                    && let Some(end) = nested.find('\n')
                {
                    nested.insert_str(end, &format!(" #{text}"));
                }
            }
            Node::List(inner) if !inner.is_empty() => write_list(inner, indent + 2, layout, &mut nested),
            other => {
                let _ = writeln!(out, "{pad}- {}", scalar(other, indent + 2, layout.exact, false));
                continue;
            }
        }
        // The comments a map or list item starts with go before its dash, as yaml.v3 prints
        // them (a comment cannot share the dash line).
        while nested.trim_start().starts_with('#') {
            let end = nested.find('\n').map_or(nested.len(), |e| e + 1);
            let _ = write!(out, "{pad}{}", nested[..end].trim_start());
            nested.drain(..end);
        }
        if nested.is_empty() {
            continue;
        }
        out.push_str(&pad);
        out.push_str("- ");
        out.push_str(&nested[indent + 2..]);
    }
}

/// Whether a map's first entry is a key with a value on its line.
fn first_pair_is_scalar(entries: &[Entry]) -> bool {
    matches!(entries.first(), Some(Entry::Pair(_, value)) if !has_block(value))
}

/// Plaintext documents as YAML, separated by `---`, as sops writes them (a comment on a line of
/// its own, inline ones too).
pub fn write(docs: &[Node]) -> String {
    write_with(docs, Layout { exact: false, inline_comments: false })
}

/// Encrypted documents as YAML: inline comments where sops 3.13 writes them.
pub fn write_encrypted(docs: &[Node]) -> String {
    write_with(docs, Layout { exact: false, inline_comments: true })
}

/// Documents as YAML for editing: whole floats keep their `.0`, so that an unchanged value
/// keeps its type, and so its ciphertext.
pub fn write_editable(docs: &[Node]) -> String {
    write_with(docs, Layout { exact: true, inline_comments: false })
}

fn write_with(docs: &[Node], layout: Layout) -> String {
    let mut out = String::new();
    for (i, doc) in docs.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        match doc {
            Node::Map(entries) if !entries.is_empty() => write_map(entries, 0, INDENT, layout, &mut out),
            Node::List(items) if !items.is_empty() => write_list(items, 0, layout, &mut out),
            other => {
                let _ = writeln!(out, "{}", scalar(other, INDENT, layout.exact, false));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_block_nesting_is_refused_before_any_walk() {
        let deep = format!("{}x\n", "- ".repeat(100_000));
        let Err(SopsError::Parse(message)) = parse(&deep) else { panic!("parsed") };
        assert_eq!(message, "line 1: the document is nested deeper than 100 levels");
        let indented = |levels: usize| {
            let mut text: String = (0..levels).map(|i| format!("{}k{i}:\n", "  ".repeat(i))).collect();
            text.push_str(&format!("{}leaf: x\n", "  ".repeat(levels)));
            text
        };
        assert!(matches!(parse(&indented(200)), Err(SopsError::Parse(_))));
        assert!(parse(&indented(50)).is_ok());
    }

    #[test]
    fn scalars_are_typed_like_yaml_v3() {
        assert_eq!(resolve_plain("yes"), Node::str("yes"));
        assert_eq!(resolve_plain("on"), Node::str("on"));
        assert_eq!(resolve_plain("0x1F"), Node::Int(31));
        assert_eq!(resolve_plain("0o17"), Node::Int(15));
        assert_eq!(resolve_plain("1_000"), Node::Int(1000));
        assert_eq!(resolve_plain("~"), Node::Null);
        assert_eq!(resolve_plain("1.0"), Node::Float(1.0));
        assert_eq!(resolve_plain("1.5e+20"), Node::Float(1.5e20));
        assert_eq!(resolve_plain("99999999999999999999"), Node::Float(1e20));
        assert_eq!(resolve_plain("2024-01-02"), Node::Time("2024-01-02T00:00:00Z".into()));
        assert_eq!(resolve_plain("2024-01-02T03:04:05Z"), Node::Time("2024-01-02T03:04:05Z".into()));
        assert_eq!(resolve_plain("2024-1-2T03:04:05.500+02:00"), Node::Time("2024-01-02T03:04:05.5+02:00".into()));
        assert_eq!(resolve_plain("2024-13-02"), Node::str("2024-13-02"));
        assert_eq!(resolve_plain("1.2.3"), Node::str("1.2.3"));
        assert_eq!(resolve_plain("-"), Node::str("-"));
    }

    #[test]
    fn comments_are_items_where_they_appear() {
        let text =
            "# top\na: 1 # inline\nb: |\n  # not a comment\n  x\n# before c\nc:\n  - x\n  # in list\n  - k: v\n# end\n";
        let docs = parse(text).unwrap();
        let Node::Map(entries) = &docs[0] else { panic!() };
        assert_eq!(entries[0], Entry::Comment(Comment::line(" top")));
        assert_eq!(entries[1], Entry::Comment(Comment { text: " inline".into(), inline: true }));
        assert_eq!(entries[2], Entry::Pair("a".into(), Node::Int(1)));
        assert_eq!(entries[3], Entry::Pair("b".into(), Node::str("# not a comment\nx\n")));
        assert_eq!(entries[4], Entry::Comment(Comment::line(" before c")));
        let Some(Node::List(items)) = docs[0].get("c") else { panic!() };
        assert_eq!(items[1], Node::Comment(Comment::line(" in list")));
        assert_eq!(entries.last(), Some(&Entry::Comment(Comment::line(" end"))));
        let written = write(&docs);
        assert!(written.starts_with("# top\n# inline\na: 1\nb: |\n    # not a comment\n    x\n# before c\nc:\n"));
        assert_eq!(write(&parse(&written).unwrap()), written);
    }

    /// Comments as sops places them in an encrypted file: an inline one on its key's line (3.13);
    /// in a list an inline one of a map item on its first key's line (3.13), others (encrypted,
    /// tests/sops_versions.rs; plaintext ones here) as items; on a line of their own before a key
    /// with a block. Plaintext puts each on a line of its own.
    #[test]
    fn comments_where_sops_writes_them_in_an_encrypted_file() {
        let text = "a: 1 # on a\nb: # on b\n  c: x # on c\nl:\n  - one # on one\n  # own line\n  - two\n  - k: v # on k\nz: last # on z\n";
        let docs = parse(text).unwrap();
        assert_eq!(
            write_encrypted(&docs),
            "a: 1 # on a\n# on b\nb:\n    c: x # on c\nl:\n    # on one\n    - one\n    # own line\n    - two\n    - k: v # on k\nz: last # on z\n"
        );
        assert_eq!(
            write(&docs),
            "# on a\na: 1\n# on b\nb:\n    # on c\n    c: x\nl:\n    # on one\n    - one\n    # own line\n    - two\n    # on k\n    - k: v\n# on z\nz: last\n"
        );
        // Read back (as a file 3.13 encrypted is: the list's comment item decrypts to a
        // comment, tests/sops_versions.rs), the map's inline comments are inline again.
        let again = parse(&write_encrypted(&docs)).unwrap();
        assert_eq!(again[0].get("b"), docs[0].get("b"));
    }

    #[test]
    fn anchors_expand_and_bad_documents_fail() {
        let docs = parse("a: &x\n  k: v\nb: *x\n").unwrap();
        assert_eq!(docs[0].get("b"), docs[0].get("a"));
        assert!(parse("- a\n").is_err());
        assert!(parse("a: 1\na: 2\n").is_err());
        assert_eq!(parse("a: 1\n---\nb: 2\n").unwrap().len(), 2);
    }

    /// The 583-byte "billion laughs" document that took sops commands past 2 GB.
    #[test]
    fn alias_bombs_are_refused_before_they_expand() {
        let mut bomb =
            String::from("a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n");
        let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
        for pair in names.windows(2) {
            let refs = vec![format!("*{}", pair[0]); 9].join(",");
            bomb.push_str(&format!("{0}: &{0} [{refs}]\n", pair[1]));
        }
        let err = parse(&bomb).unwrap_err().to_string();
        assert!(err.contains("excessive aliasing"), "{err}");
        // Ordinary reuse stays fine.
        let reuse: String = (0..200).map(|i| format!("k{i}: *x\n")).collect();
        assert_eq!(
            parse(&format!("x: &x {{a: 1, b: 2}}\n{reuse}")).unwrap()[0].get("k199"),
            parse("a: {a: 1, b: 2}").unwrap()[0].get("a")
        );
    }

    #[test]
    fn parse_errors_do_not_quote_the_text() {
        let err = parse("k: \"s3cr3t\n  x: [\n").unwrap_err().to_string();
        assert!(err.contains("line") && !err.contains("s3cr3t"), "{err}");
    }

    #[test]
    fn strings_are_quoted_only_when_needed() {
        for text in ["yes", "", " x", "a: b", "1", "true", "null", "2024-01-02", "#x", "y", "tab\there"] {
            let written = write(&[Node::Map(vec![Entry::Pair("k".into(), Node::str(text))])]);
            assert_eq!(parse(&written).unwrap()[0].get("k"), Some(&Node::str(text)), "{written}");
        }
        assert_eq!(write(&[Node::Map(vec![Entry::Pair("k".into(), Node::str("plain text"))])]), "k: plain text\n");
    }
}
