//! Text from a file, made safe and short for a terminal: control characters
//! escaped as the library's [`Escaped`](gguf_loader::Escaped) escapes them (an ESC sequence in a
//! key cannot retitle or recolour the terminal), long names and values
//! clipped with an ellipsis, invalid UTF-8 replaced without copying the
//! whole string.

use std::fmt::{self, Write as _};

/// Marks where text was clipped.
pub const ELLIPSIS: char = '…';

/// Displays bytes as UTF-8 with each invalid sequence replaced by U+FFFD,
/// exactly as `String::from_utf8_lossy` would, but without copying them.
pub struct Lossy<'a>(pub &'a [u8]);

impl fmt::Display for Lossy<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for chunk in self.0.utf8_chunks() {
            f.write_str(chunk.valid())?;
            if !chunk.invalid().is_empty() {
                f.write_char(char::REPLACEMENT_CHARACTER)?;
            }
        }
        Ok(())
    }
}

/// The characters of [`Lossy`], one by one.
pub fn lossy_chars(bytes: &[u8]) -> impl Iterator<Item = char> + '_ {
    bytes.utf8_chunks().flat_map(|chunk| {
        let bad = (!chunk.invalid().is_empty()).then_some(char::REPLACEMENT_CHARACTER);
        chunk.valid().chars().chain(bad)
    })
}

/// A string being built under a budget of characters: once the budget is
/// spent, further text is dropped and [`Clip::finish`] ends the text with
/// `…` in place of its last character, so that the whole is at most the
/// budget. Escape sequences are kept whole.
pub struct Clip {
    text: String,
    max: usize,
    used: usize,
    /// Where the text is cut if anything is dropped: after the last whole
    /// piece that leaves room for the ellipsis.
    keep: usize,
    cut: bool,
}

impl Clip {
    /// An empty string that will hold at most `max` characters (at least 1).
    pub fn new(max: usize) -> Clip {
        Clip {
            text: String::new(),
            max: max.max(1),
            used: 0,
            keep: 0,
            cut: false,
        }
    }

    /// True once text has been dropped: the caller can stop producing more.
    pub fn is_cut(&self) -> bool {
        self.cut
    }

    /// Appends `s` whole if it fits, else nothing and marks the clip cut.
    pub fn push_whole(&mut self, s: &str) {
        let n = s.chars().count();
        if self.cut || self.used + n > self.max {
            self.cut = true;
            return;
        }
        self.text.push_str(s);
        self.used += n;
        if self.used < self.max {
            self.keep = self.text.len();
        }
    }

    /// Appends what fits of `s`, character by character.
    pub fn push_str(&mut self, s: &str) {
        for c in s.chars() {
            self.push(c);
        }
    }

    /// Appends one character, if it fits.
    pub fn push(&mut self, c: char) {
        self.push_whole(c.encode_utf8(&mut [0; 4]));
    }

    /// Appends one character from a file: a control character (or a
    /// bidirectional one) as its escape sequence (whole or not at all), as
    /// [`Escaped`](gguf_loader::Escaped) shows it, others as they are.
    pub fn push_escaped(&mut self, c: char) {
        let mut buf = String::new();
        let _ = write!(buf, "{}", gguf_loader::Escaped(c.encode_utf8(&mut [0; 4])));
        self.push_whole(&buf);
    }

    /// Appends one character of a double-quoted string, escaped as `{:?}`
    /// escapes it in a `str` (quotes, backslashes, control characters).
    pub fn push_quoted(&mut self, c: char) {
        if c == '\'' {
            self.push(c);
        } else {
            let esc: String = c.escape_debug().collect();
            self.push_whole(&esc);
        }
    }

    /// The text, ending with `…` if anything was dropped.
    pub fn finish(mut self) -> String {
        if self.cut {
            self.text.truncate(self.keep);
            self.text.push(ELLIPSIS);
        }
        self.text
    }
}

/// `text` escaped ([`Escaped`](gguf_loader::Escaped)) and clipped to at most `max` characters,
/// the last of them `…` when it was longer. Reads no more of `text` than it
/// shows.
pub fn clip(text: &str, max: usize) -> String {
    let mut c = Clip::new(max);
    for ch in text.chars() {
        if c.is_cut() {
            break;
        }
        c.push_escaped(ch);
    }
    c.finish()
}

/// `"1 problem"`, `"2 problems"`.
pub fn count(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("{n} {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gguf_loader::Escaped;

    #[test]
    fn escaped_is_idempotent_and_leaves_no_control() {
        let s = "a\u{1b}]0;TITLE\u{7}b\n\u{9b}c";
        let once = Escaped(s).to_string();
        assert_eq!(once, "a\\u{1b}]0;TITLE\\u{7}b\\n\\u{9b}c");
        assert_eq!(Escaped(&once).to_string(), once);
        assert!(!once.chars().any(char::is_control));
        // The bidirectional overrides that make one name look like another
        // ("Trojan Source"), in keys, names and messages alike.
        let spoof = "general.\u{202e}eman\u{202c}\u{2066}x\u{2069}\u{200f}";
        let shown = "general.\\u{202e}eman\\u{202c}\\u{2066}x\\u{2069}\\u{200f}";
        assert_eq!(Escaped(spoof).to_string(), shown);
        assert_eq!(clip(spoof, 80), shown);
        // Invisible ones too; letters of every script stay as they are.
        assert_eq!(
            Escaped("a\u{2029}b\u{feff}c\u{200b}").to_string(),
            "a\\u{2029}b\\u{feff}c\\u{200b}"
        );
        assert_eq!(Escaped("ünïcödé 文字 ✓").to_string(), "ünïcödé 文字 ✓");
    }

    #[test]
    fn clip_keeps_short_text_and_cuts_long_text() {
        assert_eq!(clip("blk.0.attn_q.weight", 48), "blk.0.attn_q.weight");
        let long = "x".repeat(65_536);
        let c = clip(&long, 48);
        assert_eq!(c.chars().count(), 48);
        assert!(c.ends_with(ELLIPSIS));
        assert_eq!(clip("abcdef", 6), "abcdef");
        assert_eq!(clip("abcdefg", 6), "abcde…");
        // An escape sequence is not split.
        assert_eq!(clip("abc\u{1b}", 6), "abc…");
        assert_eq!(clip("", 6), "");
    }

    #[test]
    fn lossy_matches_from_utf8_lossy() {
        for bytes in [
            &b"plain"[..],
            b"a\xffb\xc3",
            b"\xe2\x82",
            b"\xf0\x9f\x98\x80 ok \xed\xa0\x80",
        ] {
            let want = String::from_utf8_lossy(bytes);
            assert_eq!(Lossy(bytes).to_string(), want);
            assert_eq!(lossy_chars(bytes).collect::<String>(), want);
        }
    }

    #[test]
    fn counts_are_singular_for_one() {
        assert_eq!(count(1, "problem"), "1 problem");
        assert_eq!(count(0, "problem"), "0 problems");
        assert_eq!(count(2, "shard"), "2 shards");
    }
}
