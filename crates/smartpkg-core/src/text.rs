//! Text that clients send and others later read (reviewers, third parties, logs, terminals):
//! no control characters, so nothing can forge a line, move a cursor or recolour a terminal;
//! and no invisible format or separator characters, so nothing can reorder, hide or split
//! what a reviewer sees (a right-to-left mark turning `exe.txt` around, a line separator
//! that one viewer breaks on and another does not, a BOM or a zero-width joiner inside a
//! version that makes two equal-looking strings differ).

/// Refuses control, format and separator characters in `value`; descriptions (`multiline`)
/// may hold tab and line feed. A zero-width joiner is accepted between two emoji (family and
/// profession emoji are built with it), a zero-width non-joiner between two letters (Persian
/// and Indic words need it), and tag characters after a black flag (subdivision flags). The
/// error names the field, the character and where it is.
pub fn check(field: &str, value: &str, multiline: bool) -> Result<(), String> {
    let chars: Vec<char> = value.chars().collect();
    let bad = (0..chars.len()).find_map(|i| forbidden(&chars, i, multiline).map(|k| (i, k)));
    match bad {
        None => Ok(()),
        Some((at, kind)) => Err(format!(
            "{field} contains the {kind} U+{:04X} at position {}{}",
            chars[at] as u32,
            at + 1,
            if multiline {
                " (of the invisible characters, only tab and line feed are allowed)"
            } else {
                ""
            }
        )),
    }
}

/// A character that is not shown as itself: a control, a line or paragraph separator, or a
/// format character. Tools that print values others wrote show these escaped.
pub fn is_invisible(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') || is_format(c)
}

/// `s` with every invisible character (see [`is_invisible`]) written as its Rust escape
/// (`\u{1b}`), as the server's logs show them; borrowed when there is none.
pub fn escape_invisible(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(is_invisible) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if is_invisible(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// What is wrong with `chars[i]`, if anything.
fn forbidden(chars: &[char], i: usize, multiline: bool) -> Option<&'static str> {
    let c = chars[i];
    if multiline && (c == '\t' || c == '\n') {
        return None;
    }
    if c.is_control() {
        return Some("control character");
    }
    if matches!(c, '\u{2028}' | '\u{2029}') {
        return Some("line or paragraph separator");
    }
    if !is_format(c) {
        return None;
    }
    let before = i.checked_sub(1).map(|j| chars[j]);
    let after = chars.get(i + 1).copied();
    let allowed = match c {
        '\u{200D}' => emoji_before(chars, i) && after.is_some_and(is_emoji),
        '\u{200C}' => {
            before.is_some_and(char::is_alphabetic) && after.is_some_and(char::is_alphabetic)
        }
        '\u{E0020}'..='\u{E007F}' => {
            before.is_some_and(|b| b == '\u{1F3F4}' || ('\u{E0020}'..='\u{E007E}').contains(&b))
        }
        _ => false,
    };
    (!allowed).then_some("invisible format character")
}

/// Unicode's format characters (general category Cf), as of Unicode 15.
fn is_format(c: char) -> bool {
    matches!(c,
        '\u{00AD}'
        | '\u{0600}'..='\u{0605}'
        | '\u{061C}'
        | '\u{06DD}'
        | '\u{070F}'
        | '\u{0890}'..='\u{0891}'
        | '\u{08E2}'
        | '\u{180E}'
        | '\u{200B}'..='\u{200F}'
        | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{206F}'
        | '\u{FEFF}'
        | '\u{FFF9}'..='\u{FFFB}'
        | '\u{110BD}'
        | '\u{110CD}'
        | '\u{13430}'..='\u{1343F}'
        | '\u{1BCA0}'..='\u{1BCA3}'
        | '\u{1D173}'..='\u{1D17A}'
        | '\u{E0001}'
        | '\u{E0020}'..='\u{E007F}')
}

/// Pictographic characters that emoji sequences are made of (an approximation by block:
/// close enough to tell an emoji sequence from a joiner hidden in a word or a version).
fn is_emoji(c: char) -> bool {
    matches!(c,
        '\u{2190}'..='\u{21FF}'
        | '\u{2300}'..='\u{23FF}'
        | '\u{2460}'..='\u{24FF}'
        | '\u{25A0}'..='\u{27BF}'
        | '\u{2900}'..='\u{297F}'
        | '\u{2B00}'..='\u{2BFF}'
        | '\u{3030}'
        | '\u{303D}'
        | '\u{3297}'
        | '\u{3299}'
        | '\u{1F000}'..='\u{1FAFF}')
}

/// An emoji ends just before `chars[i]`, perhaps followed by a variation selector or a skin
/// tone (themselves part of the emoji).
fn emoji_before(chars: &[char], i: usize) -> bool {
    chars[..i]
        .iter()
        .rev()
        .find(|c| !matches!(c, '\u{FE0F}' | '\u{1F3FB}'..='\u{1F3FF}'))
        .is_some_and(|c| is_emoji(*c))
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

    #[test]
    fn format_and_separator_characters_that_reorder_or_hide_text_are_refused() {
        for (text, code) in [
            ("line\u{2028}break", "U+2028"),
            ("para\u{2029}", "U+2029"),
            ("\u{FEFF}1.0.0", "U+FEFF"),
            ("abc\u{200F}def", "U+200F"),
            ("abc\u{061C}def", "U+061C"),
            ("abc\u{200E}", "U+200E"),
            ("1.0\u{200D}.0", "U+200D"),
            ("shop\u{200B}name", "U+200B"),
            ("a\u{2066}b\u{2069}", "U+2066"),
            ("soft\u{00AD}hyphen", "U+00AD"),
            ("tag\u{E0041}", "U+E0041"),
        ] {
            for multiline in [false, true] {
                let e = check("user_desc", text, multiline).expect_err(text);
                assert!(e.contains(code), "{text:?}: {e}");
            }
        }
    }

    #[test]
    fn invisible_characters_are_escaped_for_a_terminal_and_the_rest_is_kept() {
        assert_eq!(
            escape_invisible("red\u{1b}[31m \u{202E}txt\u{7f}\u{9b} 中文"),
            "red\\u{1b}[31m \\u{202e}txt\\u{7f}\\u{9b} 中文"
        );
        assert!(matches!(
            escape_invisible("plain 文本"),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    #[test]
    fn emoji_sequences_and_joiners_inside_words_stay_allowed() {
        for ok in [
            "family 👨\u{200D}👩\u{200D}👧 shop",
            "doctor 👩🏽\u{200D}⚕\u{FE0F}",
            "rainbow 🏳\u{FE0F}\u{200D}🌈",
            "Persian می\u{200C}خواهم",
            "Scotland 🏴\u{E0067}\u{E0062}\u{E0073}\u{E0063}\u{E0074}\u{E007F}",
        ] {
            assert!(check("name", ok, false).is_ok(), "{ok:?}");
        }
        // A joiner at the edge of an emoji but next to a letter is not a sequence.
        assert!(check("name", "👨\u{200D}a", false).is_err());
        assert!(check("name", "a\u{200C}1", false).is_err());
    }
}
