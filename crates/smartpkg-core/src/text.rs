//! Text that clients send and others later read (reviewers, third parties, logs, terminals):
//! no control characters, so nothing can forge a line, move a cursor or recolour a terminal.

/// Refuses control characters in `value`; descriptions (`multiline`) may hold tab and line
/// feed. The error names the field, the character and where it is.
pub fn check(field: &str, value: &str, multiline: bool) -> Result<(), String> {
    let bad = value
        .chars()
        .enumerate()
        .find(|(_, c)| is_forbidden(*c, multiline));
    match bad {
        None => Ok(()),
        Some((at, c)) => Err(format!(
            "{field} contains the control character U+{:04X} at position {}{}",
            c as u32,
            at + 1,
            if multiline {
                " (only tab and line feed are allowed)"
            } else {
                ""
            }
        )),
    }
}

fn is_forbidden(c: char, multiline: bool) -> bool {
    if multiline && (c == '\t' || c == '\n') {
        return false;
    }
    // C0, DEL and C1 controls, and the bidirectional overrides that reorder what a reader sees.
    c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_refused_with_their_position() {
        let e = check("user_version", "1.0\u{1b}[31m", false).expect_err("escape");
        assert!(e.contains("U+001B") && e.contains("position 4"), "{e}");
        assert!(check("user_version", "1.0\n", false).is_err());
        assert!(check("user_desc", "a\r\nb", true).is_err());
        assert!(check("user_desc", "evil\u{202E}txt", true).is_err());
        assert!(check("user_desc", "line one\n\tline two 中文", true).is_ok());
        assert!(check("name", "商店 shop", false).is_ok());
    }
}
