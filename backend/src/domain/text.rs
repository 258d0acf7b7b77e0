//! Which characters free text may hold. Two kinds of field:
//!
//! - **single-line** (names, titles, display names, versions, labels,
//!   filters): no control character at all;
//! - **free-form** (descriptions, comments, reasons): tabs and line breaks
//!   (`\n`, or `\r\n` as browsers send a textarea), no other control
//!   character.
//!
//! NUL is refused everywhere before it gets this far (the API extractors,
//! the page form extractor and the request filter in front of the router),
//! because PostgreSQL cannot store it in text; these rules keep terminal
//! escapes, bells and stray carriage returns out of what people read.

/// A value from outside (a token's claim, a provider's answer) as a
/// message may quote it: at most [`SHOWN_CHARS`] characters (then `…`),
/// control characters as `?`.
pub fn shown(value: &str) -> String {
    let mut out: String = value
        .chars()
        .take(SHOWN_CHARS)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if value.chars().count() > SHOWN_CHARS {
        out.push('…');
    }
    out
}

/// How much of an outside value a message quotes.
pub const SHOWN_CHARS: usize = 64;

/// Checks a single-line field: no control characters (Unicode `Cc`).
pub fn check_single_line(field: &str, value: &str) -> Result<(), String> {
    match value.chars().find(|c| c.is_control()) {
        None => Ok(()),
        Some(c) => Err(format!(
            "{field} must be a single line without control characters (found {})",
            describe(c)
        )),
    }
}

/// Checks a free-form field: tabs and line breaks are fine, other control
/// characters (a carriage return not followed by a line feed included) are
/// not.
pub fn check_free_form(field: &str, value: &str) -> Result<(), String> {
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        let allowed = match c {
            '\t' | '\n' => true,
            '\r' => chars.peek() == Some(&'\n'),
            c => !c.is_control(),
        };
        if !allowed {
            return Err(format!(
                "{field} must not contain control characters other than tabs and line breaks (found {})",
                describe(c)
            ));
        }
    }
    Ok(())
}

/// A control character as people can read it in a message, e.g. `U+0000`.
fn describe(c: char) -> String {
    format!("U+{:04X}", u32::from(c))
}

/// How long something took, to the second below an hour: "45 s",
/// "4 min 12 s", "2 h 5 min", "3 days 4 h".
pub fn duration(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    let (d, h, m, sec) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60, s % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{sec} s"),
        (0, 0, _) if sec == 0 => format!("{m} min"),
        (0, 0, _) => format!("{m} min {sec} s"),
        (0, _, _) if m == 0 => format!("{h} h"),
        (0, _, _) => format!("{h} h {m} min"),
        (1, _, _) if h == 0 => "1 day".into(),
        (1, _, _) => format!("1 day {h} h"),
        _ if h == 0 => format!("{d} days"),
        _ => format!("{d} days {h} h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_values_are_quoted_short_and_printable() {
        assert_eq!(shown("a\u{1b}[31mb"), "a?[31mb");
        let long = "x".repeat(SHOWN_CHARS + 5);
        let quoted = shown(&long);
        assert_eq!(quoted.chars().count(), SHOWN_CHARS + 1);
        assert!(quoted.ends_with('…'));
    }

    #[test]
    fn single_line_fields_refuse_every_control_character() {
        for ok in ["", "Payments API", "café ☕", "v1.2.3-rc.1", "a b"] {
            assert_eq!(check_single_line("title", ok), Ok(()), "{ok:?}");
        }
        for bad in [
            "a\0b",
            "a\nb",
            "a\tb",
            "a\rb",
            "\u{7}",
            "\u{1b}[31m",
            "\u{7f}",
            "\u{85}",
        ] {
            let err = check_single_line("title", bad).unwrap_err();
            assert!(err.starts_with("title "), "{err}");
        }
        assert!(
            check_single_line("title", "x\0")
                .unwrap_err()
                .contains("U+0000")
        );
    }

    #[test]
    fn free_form_fields_keep_tabs_and_line_breaks_only() {
        for ok in [
            "",
            "line one\nline two",
            "a\tb",
            "windows\r\nline",
            "ünïcödé",
        ] {
            assert_eq!(check_free_form("description", ok), Ok(()), "{ok:?}");
        }
        for bad in [
            "a\0b",
            "bell\u{7}",
            "\u{1b}[2J",
            "lone\rreturn",
            "end\r",
            "\u{9b}",
        ] {
            let err = check_free_form("description", bad).unwrap_err();
            assert!(err.starts_with("description "), "{bad:?}: {err}");
        }
    }
}
