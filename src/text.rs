//! Text from untrusted sources — tensor and key names from checkpoints anyone can publish, server messages,
//! paths — made safe to show: `plain` for a terminal or a log file, `md` for a markdown table cell. JSON needs
//! neither (serde escapes it). This module only transforms strings; `report` and the log writer decide where
//! they go.

/// `s` safe for a terminal: control characters (ESC, CR, BEL, …) are shown escaped (`\u{1b}`), so a tensor
/// name cannot move the cursor, recolour or overwrite what was printed before.
pub fn plain(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(s);
    }
    std::borrow::Cow::Owned(
        s.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect(),
    )
}

/// `plain` for a message of several lines (an error with its snippet): each line made safe, the line breaks
/// kept.
pub fn plain_lines(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(|c| c.is_control() && c != '\n') {
        return std::borrow::Cow::Borrowed(s);
    }
    std::borrow::Cow::Owned(s.split('\n').map(|l| plain(l).into_owned()).collect::<Vec<_>>().join("\n"))
}

/// `s` as the text of a markdown table cell: control characters escaped, markdown punctuation backslashed, and
/// `<`, `>`, `&` as entities, so a name cannot open a comment, a heading, a link or an HTML tag.
pub(crate) fn md(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in plain(s).chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\\' | '`' | '*' | '_' | '{' | '}' | '[' | ']' | '(' | ')' | '#' | '+' | '-' | '!' | '|' | '~' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}
