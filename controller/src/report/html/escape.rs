//! Escaping for text the report puts into HTML and SVG: recipe names,
//! params, result lines and job output are the user's (or a command's)
//! and may hold `<script>`, quotes or `&`.

use std::fmt::Write as _;

/// Escapes `s` for HTML/SVG text and for a quoted attribute value
/// (`&`, `<`, `>`, `"` and `'`); drops the control characters XML does not
/// allow (they would make the SVG invalid), keeping tab and newlines.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\u{fffd}");
            }
            c => out.push(c),
        }
    }
    out
}

/// A path for an `href`: each segment percent-encoded where a URL needs
/// it (a job file of host `h 1` or `a#b`), `/` kept.
pub fn href_path(p: &str) -> String {
    let mut out = String::with_capacity(p.len());
    for b in p.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            b => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_strings_are_inert() {
        assert_eq!(
            esc("<script>alert(\"x\")</script>"),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"
        );
        assert_eq!(esc("a & b 'c'"), "a &amp; b &#39;c&#39;");
        assert_eq!(esc("&amp;"), "&amp;amp;");
        assert_eq!(esc("x\u{1}y\u{7f}\tz\n"), "x\u{fffd}y\u{fffd}\tz\n");
        assert_eq!(esc("Gbit/s ± é"), "Gbit/s ± é");
    }

    #[test]
    fn hrefs_are_percent_encoded() {
        assert_eq!(href_path("jobs/h1-1.stdout"), "jobs/h1-1.stdout");
        assert_eq!(
            href_path("../x y/\"a\"#?<b>.txt"),
            "../x%20y/%22a%22%23%3F%3Cb%3E.txt"
        );
        assert_eq!(
            href_path("javascript:alert(1)"),
            "javascript%3Aalert%281%29"
        );
    }
}
