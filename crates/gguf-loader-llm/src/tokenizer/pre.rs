//! The pre-tokenizers of `gpt2` (byte-level BPE) vocabularies, chosen by
//! `tokenizer.ggml.pre` as llama.cpp chooses them, and the GPT-2 byte-to-
//! character mapping.

use fancy_regex::Regex;

/// How llama.cpp's BPE treats one `tokenizer.ggml.pre` value.
pub(crate) struct PreTokenizer {
    /// Applied in turn: each splits the pieces the previous one left, keeping
    /// both its matches and the text between them.
    pub(crate) regexes: Vec<Regex>,
    /// A whole pre-tokenized word that is itself a token is taken as is.
    pub(crate) ignore_merges: bool,
    /// `clean_up_tokenization_spaces` when decoding.
    pub(crate) clean_spaces: bool,
    /// The pre-tokenizer turns on BOS (llama3) before the metadata says.
    pub(crate) add_bos: bool,
}

const CONTRACTIONS: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])";
const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";

/// The expressions (in order) and flags for a pre-tokenizer name, `None`
/// for a name llama.cpp does not know or this crate does not implement.
fn table(name: &str) -> Option<(Vec<String>, bool, bool, bool)> {
    let llama3 = format!(
        r"{CONTRACTIONS}|[^\r\n\p{{L}}\p{{N}}]?\p{{L}}+|\p{{N}}{{1,3}}| ?[^\s\p{{L}}\p{{N}}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
    );
    let qwen2 = format!(
        r"{CONTRACTIONS}|[^\r\n\p{{L}}\p{{N}}]?\p{{L}}+|\p{{N}}| ?[^\s\p{{L}}\p{{N}}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
    );
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    // (regexes, ignore_merges, clean_spaces, add_bos)
    Some(match name {
        "default" => (
            s(&[
                r"[\p{P}\$\+<=>\^~\|]+",
                GPT2,
                r"\p{N}+",
                r"[0-9][0-9][0-9]",
            ]),
            false,
            true,
            false,
        ),
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0"
        | "lfm2" | "jina-v5-nano" => (vec![llama3], true, true, true),
        "dbrx" | "smaug-bpe" => (vec![llama3], false, true, false),
        "chatglm-bpe" => (vec![llama3], false, true, false),
        "glm4" | "glm5" => (vec![llama3], true, true, false),
        "deepseek-llm" => (
            s(&[
                "[\r\n]",
                "\\s?[A-Za-z\u{b5}\u{c0}-\u{d6}\u{d8}-\u{f6}\u{f8}-\u{1ba}\u{1bc}-\u{1bf}\u{1c4}-\u{293}\u{295}-\u{2af}\u{370}-\u{373}\u{376}\u{377}\u{37b}-\u{37d}\u{37f}\u{386}\u{388}-\u{38a}\u{38c}\u{38e}-\u{3a1}\u{3a3}-\u{3f5}\u{3f7}-\u{481}\u{48a}-\u{52f}\u{531}-\u{556}\u{10a0}-\u{10c5}\u{13a0}-\u{13f5}\u{13f8}-\u{13fd}\u{1c90}-\u{1cba}\u{1cbd}-\u{1cbf}\u{1d00}-\u{1d2b}\u{1d6b}-\u{1d77}\u{1d79}-\u{1d9a}\u{1e00}-\u{1f15}\u{1f18}-\u{1f1d}\u{1f20}-\u{1f45}\u{1f48}-\u{1f4d}\u{1f50}-\u{1f57}\u{1f59}\u{1f5b}\u{1f5d}\u{1f5f}-\u{1f7d}\u{1f80}-\u{1fb4}\u{1fb6}-\u{1fbc}\u{1fbe}\u{1fc2}-\u{1fc4}\u{1fc6}-\u{1fcc}\u{1fd0}-\u{1fd3}\u{1fd6}-\u{1fdb}\u{1fe0}-\u{1fec}\u{1ff2}-\u{1ff4}\u{1ff6}-\u{1ffc}\u{2102}\u{2107}\u{210a}-\u{2113}\u{2115}\u{2119}-\u{211d}\u{2124}\u{2126}\u{2128}\u{212a}-\u{212d}\u{212f}-\u{2134}\u{2139}\u{213c}-\u{213f}\u{2145}-\u{2149}\u{214e}\u{2183}\u{2184}\u{2c00}-\u{2c7b}\u{2c7e}-\u{2ce4}\u{2ceb}-\u{2cee}\u{2cf2}\u{2cf3}\u{a640}-\u{a66d}\u{a680}-\u{a69b}\u{a722}-\u{a76f}\u{a771}-\u{a787}\u{a78b}-\u{a78e}\u{ab70}-\u{abbf}\u{fb00}-\u{fb06}\u{fb13}-\u{fb17}\u{ff21}-\u{ff3a}\u{ff41}-\u{ff5a}\u{10400}-\u{1044f}\u{104b0}-\u{104d3}\u{104d8}-\u{104fb}\u{10c80}-\u{10cb2}\u{10cc0}-\u{10cf2}\u{118a0}-\u{118df}\u{1e900}-\u{1e943}]+",
                "\\s?[!-/:-~\u{ff01}-\u{ff0f}\u{ff1a}-\u{ff5e}\u{2018}-\u{201f}\u{3000}-\u{3002}]+",
                "\\s+$",
                "[\u{4e00}-\u{9fa5}\u{800}-\u{4e00}\u{ac00}-\u{d7ff}]+",
                "\\p{N}+",
            ]),
            false,
            false,
            false,
        ),
        "deepseek-coder" => (
            s(&[
                "[\r\n]",
                "\\s?\\p{L}+",
                "\\s?\\p{P}+",
                "[\u{4e00}-\u{9fa5}\u{800}-\u{4e00}\u{ac00}-\u{d7ff}]+",
                "\\p{N}",
            ]),
            false,
            false,
            false,
        ),
        "deepseek-v3" => (
            s(&[
                r"\p{N}{1,3}",
                "[\u{4e00}-\u{9fa5}\u{3040}-\u{309f}\u{30a0}-\u{30ff}]+",
                "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+",
            ]),
            false,
            false,
            false,
        ),
        "falcon" => (
            s(&[r"[\p{P}\$\+<=>\^~\|`]+", GPT2, r"[0-9][0-9][0-9]"]),
            false,
            true,
            false,
        ),
        "starcoder" | "refact" | "codeshell" | "exaone" | "minerva-7b" | "mellum2" => {
            (s(&[r"\p{N}", GPT2]), false, true, false)
        }
        "command-r" | "smollm" => (s(&[r"\p{N}", GPT2]), false, false, false),
        "gpt-2" | "phi-2" | "jina-es" | "jina-de" | "gigachat" | "jina-v2-es" | "jina-v2-de"
        | "a.x-4.0" | "mellum" | "modern-bert" | "jina-v1-en" | "jina-v2-code"
        | "roberta-bpe" | "exaone4" | "mpt" | "olmo" | "jais" => (s(&[GPT2]), false, true, false),
        "trillion" | "granite-docling" => (s(&[GPT2]), false, false, false),
        "stablelm2" | "megrez" => (vec![qwen2], false, true, false),
        "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "hunyuan" | "solar-open" => {
            (vec![qwen2], false, false, false)
        }
        "qwen35" => (
            vec![format!(
                r"{CONTRACTIONS}|[^\r\n\p{{L}}\p{{N}}]?[\p{{L}}\p{{M}}]+|\p{{N}}| ?[^\s\p{{L}}\p{{M}}\p{{N}}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
            )],
            false,
            false,
            false,
        ),
        "poro-chat" => (s(&[" ?[^(\\s|.,!?…。，、।۔،)]+"]), false, false, false),
        "bloom" | "gpt3-finnish" => (s(&[" ?[^(\\s|.,!?…。，、।۔،)]+"]), false, true, false),
        "viking" => (
            s(&[" ?[^(\\s|.,!?\u{2026}\u{3002}\u{ff0c}\u{3001}\u{964}\u{6d4}\u{60c})]+", r"\p{N}"]),
            false,
            false,
            false,
        ),
        "gpt-4o" | "llama4" | "kanana2" | "talkie" | "minimax-m2" => (
            vec![format!(
                r"[^\r\n\p{{L}}\p{{N}}]?[\p{{Lu}}\p{{Lt}}\p{{Lm}}\p{{Lo}}\p{{M}}]*[\p{{Ll}}\p{{Lm}}\p{{Lo}}\p{{M}}]+{CONTRACTIONS}?|[^\r\n\p{{L}}\p{{N}}]?[\p{{Lu}}\p{{Lt}}\p{{Lm}}\p{{Lo}}\p{{M}}]+[\p{{Ll}}\p{{Lm}}\p{{Lo}}\p{{M}}]*{CONTRACTIONS}?|\p{{N}}{{1,3}}| ?[^\s\p{{L}}\p{{N}}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
            )],
            false,
            false,
            false,
        ),
        "tekken" => (
            vec![r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+".to_string()],
            true,
            false,
            true,
        ),
        _ => return None,
    })
}

impl PreTokenizer {
    /// The pre-tokenizer llama.cpp uses for `name` (a missing
    /// `tokenizer.ggml.pre` is `"default"`), or `None` for an unknown name.
    pub(crate) fn new(name: &str) -> Option<Self> {
        let (exprs, ignore_merges, clean_spaces, add_bos) = table(name)?;
        let regexes = exprs
            .iter()
            // The expressions are constants of this file, each compiled in
            // the tests; an error here is a bug, reported as "unknown".
            .map(|e| Regex::new(e).ok())
            .collect::<Option<Vec<_>>>()?;
        Some(Self {
            regexes,
            ignore_merges,
            clean_spaces,
            add_bos,
        })
    }

    /// Splits `text` into words: each expression in turn splits every piece
    /// left by the previous one into its matches and the gaps between them.
    pub(crate) fn split<'t>(&self, text: &'t str) -> Vec<&'t str> {
        let mut pieces = vec![text];
        for re in &self.regexes {
            let mut next = Vec::with_capacity(pieces.len() * 2);
            for piece in pieces {
                let mut last = 0;
                for m in re.find_iter(piece) {
                    // A backtracking limit hit on hostile text ends the
                    // matching; the rest of the piece stays one word.
                    let Ok(m) = m else { break };
                    if m.start() > last {
                        next.push(&piece[last..m.start()]);
                    }
                    if m.end() > m.start() {
                        next.push(m.as_str());
                    }
                    last = m.end();
                }
                if last < piece.len() {
                    next.push(&piece[last..]);
                }
            }
            pieces = next;
        }
        pieces
    }
}

/// GPT-2's byte-level alphabet: the character each byte is written as in a
/// `gpt2` vocabulary.
pub(crate) fn byte_to_char_table() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut n = 0u32;
    for b in 0..256u32 {
        let printable =
            (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b);
        let c = if printable {
            b
        } else {
            n += 1;
            255 + n
        };
        // Every value is below 0x200, a valid scalar value.
        table[b as usize] = char::from_u32(c).unwrap_or('\u{FFFD}');
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAMES: &[&str] = &[
        "default",
        "llama3",
        "dbrx",
        "glm4",
        "deepseek-llm",
        "deepseek-coder",
        "deepseek-v3",
        "falcon",
        "starcoder",
        "command-r",
        "gpt-2",
        "trillion",
        "stablelm2",
        "qwen2",
        "qwen35",
        "poro-chat",
        "bloom",
        "viking",
        "gpt-4o",
        "tekken",
    ];

    #[test]
    fn every_expression_compiles() {
        for name in NAMES {
            for e in table(name).unwrap().0 {
                if let Err(err) = Regex::new(&e) {
                    panic!("{name}: {e}: {err}");
                }
            }
            assert!(PreTokenizer::new(name).is_some(), "{name}");
        }
        assert!(PreTokenizer::new("no-such-pre").is_none());
    }

    #[test]
    fn gpt2_split() {
        let p = PreTokenizer::new("gpt-2").unwrap();
        assert_eq!(
            p.split("Hello world's   end\n"),
            ["Hello", " world", "'s", "  ", " end", "\n"]
        );
    }

    #[test]
    fn byte_table_is_a_bijection() {
        let t = byte_to_char_table();
        let mut seen = std::collections::HashSet::new();
        for c in t {
            assert!(seen.insert(c));
        }
        assert_eq!(t[b' ' as usize], 'Ġ');
        assert_eq!(t[b'\n' as usize], 'Ċ');
        assert_eq!(t[b'A' as usize], 'A');
    }
}
