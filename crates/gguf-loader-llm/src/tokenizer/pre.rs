//! The pre-tokenizers of `gpt2` (byte-level BPE) vocabularies, chosen by
//! `tokenizer.ggml.pre` as llama.cpp chooses them, and the GPT-2 byte-to-
//! character mapping.
//!
//! The table mirrors `llama-vocab.cpp` of the llama.cpp this crate is held
//! against (the one vendored in llama-cpp-python 0.3.36): the same names,
//! the same expressions in the same order, the same flags. Two things of
//! llama.cpp's that a Unicode regex engine does otherwise are copied too:
//! its character categories are those of its own generated table (an older
//! Unicode than the `regex` crate's, see [`CATEGORY_FIXES`]), and it reads
//! `\p{Lu}`, `\p{Ll}`, `\p{Lt}`, `\p{Lm}` and `\p{Lo}` all as `\p{L}`.

use fancy_regex::{Regex, RegexBuilder};

/// One step of a pre-tokenizer: splits each piece the previous step left
/// into its matches and the text between them.
pub(crate) enum Split {
    /// The matches of an expression.
    Regex(Regex),
    /// The matches of an expression that ends in `|\s+(?!\S)` (or
    /// `|\s+(?!\S)|\s+`, `fallback`), that alternative written `(?P<ws>\s+)`
    /// and its look-ahead done by [`split_words`]: the rest is a plain
    /// regex, which matches in linear time with no backtracking stack
    /// (fancy-regex's holds a million entries, fewer than the spaces of a
    /// long run).
    Words { re: Regex, fallback: bool },
    /// llama.cpp's `unicode_regex_split_custom_afmoe` (its
    /// `\p{AFMoE_digits}` and tiny_aya's `\d{1,3}(?=(?:\d{3})*\b)`): each
    /// run of digits is cut into groups of three from the right, the text
    /// before a run going with its first group. The predicate is `\p{N}`.
    Digits3(Regex),
    /// The matches of jais-2's expression, which ends in
    /// [`JAIS2_CHUNKS`]: those alternatives written `\s+` (a plain regex)
    /// and done by [`split_chunks`]. Each match of the expression as
    /// written tried `\s*[\r\n]+` first, which reads a run of whitespace
    /// to its end: a run of `n` spaces, cut in words of at most 512
    /// characters, took time quadratic in `n`.
    Chunks(Regex),
    /// superbpe's `(?=([0-9]{3})+(?![0-9]))`, done by hand
    /// ([`split_before_thousands`]): fancy-regex's backtracking stack ran
    /// out in a run of a few million digits and left the run unsplit.
    Thousands,
}

/// How llama.cpp's BPE treats one `tokenizer.ggml.pre` value.
pub(crate) struct PreTokenizer {
    /// Applied in turn: each splits the pieces the previous one left, keeping
    /// both its matches and the text between them.
    pub(crate) steps: Vec<Split>,
    /// A whole pre-tokenized word that is itself a token is taken as is.
    pub(crate) ignore_merges: bool,
    /// `clean_up_tokenization_spaces` when decoding.
    pub(crate) clean_spaces: bool,
    /// The pre-tokenizer turns on BOS (llama3) before the metadata says.
    pub(crate) add_bos: bool,
    /// SentencePiece-style BPE (llama.cpp's `escape_whitespaces` with
    /// `byte_encode` off: gemma4, sarvam-moe): spaces are written `▁` before
    /// splitting, tokens are UTF-8 text rather than GPT-2's byte alphabet,
    /// bytes fall back to `<0xXX>` tokens.
    pub(crate) escape_spaces: bool,
    /// gemma4's rule: a word of newlines only that is a token is that token.
    pub(crate) newline_words: bool,
}

/// The names whose vocabularies are SentencePiece-style BPE
/// ([`PreTokenizer::escape_spaces`]).
pub(crate) fn escapes_spaces(name: &str) -> bool {
    matches!(name, "gemma4" | "granite-embed-multi-311m" | "sarvam-moe")
}

const CONTRACTIONS: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])";
const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
/// The step that stands for llama.cpp's custom digit splitter.
pub(crate) const DIGITS3: &str = "<digits3>";
/// superbpe's second expression, which [`Split::Thousands`] does by hand.
const THOUSANDS: &str = "(?=([0-9]{3})+(?![0-9]))";
/// The whitespace alternatives that end jais-2's expression, which
/// [`Split::Chunks`] does by hand.
const JAIS2_CHUNKS: &str = r"|\s{512}(?!\S)|\s{256}(?!\S)|\s{128}(?!\S)|\s{64}(?!\S)|\s{32}(?!\S)|\s{16}(?!\S)|\s{8}(?!\S)|\s{4}(?!\S)|\s{1,2}(?!\S)|\s{1}";
/// The tail that llama3, qwen2 and their kin share after the numbers.
const TAIL: &str = r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// The same tail as gpt-4o, tekken and their kin have it (a symbol run may
/// end in slashes too).
const TAIL_SLASH: &str = r"| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// The two word alternatives of gpt-4o's, tekken's and tiny_aya's
/// expression, in the original casing form (upper* lower+ | upper+
/// lower*), `{C}` standing for an optional contraction.
const CASED: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+{C}|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*{C}";
/// The same alternatives as llama.cpp rewrites them for gpt-4o and tekken:
/// `((?=[\p{L}])([^a-z]))` is one letter that is not `a`–`z`, written here
/// as the class it is (no look-ahead), and marks are no longer part of a
/// word. `{W}` is the word class (`\p{L}`, or `\p{L}\p{M}` for
/// granite-embed-multi).
const CASED_LLAMA: &str = r"[^\r\n\p{L}\p{N}]?[[{W}]--[a-z]]*[[{W}]--[A-Z]]+{C}|[^\r\n\p{L}\p{N}]?[[{W}]--[a-z]]+[[{W}]--[A-Z]]*{C}";

/// llama.cpp's `unicode_cpt_is_han`, as a class.
const HAN: &str = "[\u{3400}-\u{4dbf}\u{4e00}-\u{9fff}\u{f900}-\u{faff}\u{20000}-\u{2a6df}\u{2a700}-\u{2ebef}\u{2f800}-\u{2fa1f}]";

/// kimi-k2: llama.cpp's hand-written `unicode_regex_split_custom_kimi_k2`
/// (which stands for the expression `\p{Han}+` in its table) as the
/// expression it implements: Han runs, words of other letters (no marks,
/// either case) with an optional contraction, then llama3's numbers,
/// symbols and whitespace. Tested against a port of that function.
pub(crate) fn kimi_k2() -> String {
    format!(
        r"{HAN}+|[^\r\n\p{{L}}\p{{N}}]?[\p{{L}}--{HAN}]+(?:'[sStTmMdD]|'[rR][eE]|'[vV][eE]|'[lL][lL])?|\p{{N}}{{1,3}}{TAIL}"
    )
}

/// The expressions (in order) and flags for a pre-tokenizer name, `None`
/// for a name llama.cpp does not know or this crate does not implement
/// (`whitespace`, which llama.cpp tokenizes with a session of its own).
pub(crate) fn table(name: &str) -> Option<(Vec<String>, bool, bool, bool)> {
    let c = CONTRACTIONS;
    let llama3 = format!(r"{c}|[^\r\n\p{{L}}\p{{N}}]?\p{{L}}+|\p{{N}}{{1,3}}{TAIL}");
    let qwen2 = format!(r"{c}|[^\r\n\p{{L}}\p{{N}}]?\p{{L}}+|\p{{N}}{TAIL}");
    let cased = |c: &str| CASED.replace("{C}", c);
    let cased_llama = |w: &str| {
        CASED_LLAMA
            .replace("{W}", w)
            .replace("{C}", &format!("{c}?"))
    };
    let gpt4o = format!(r"{}|\p{{N}}{{1,3}}{TAIL_SLASH}", cased_llama(r"\p{L}"));
    let deepseek3 = [
        r"\p{N}{1,3}",
        "[\u{4e00}-\u{9fa5}\u{3040}-\u{309f}\u{30a0}-\u{30ff}]+",
        "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+",
    ];
    let starcoder = [r"\p{N}", GPT2];
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    // (expressions, ignore_merges, clean_spaces, add_bos); llama.cpp's
    // defaults for BPE are (false, true, false).
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
        "minicpm5" => (
            s(&[
                r"\p{N}{1,3}",
                &format!(r"{c}|[^\r\n\p{{L}}\p{{N}}]?\p{{L}}+|\p{{N}}+{TAIL}"),
            ]),
            true,
            true,
            false,
        ),
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0"
        | "lfm2" | "jina-v5-nano" => (vec![llama3], true, true, true),
        "dbrx" | "smaug-bpe" | "chatglm-bpe" => (vec![llama3], false, true, false),
        "glm4" | "glm5" => (vec![llama3], true, true, false),
        "jais-2" => (
            vec![format!(
                r"{c}|[^\r\n\p{{L}}\p{{N}}]?\p{{L}}+|\p{{N}}{{1,3}}| ?[^\s\p{{L}}\p{{N}}]+[\r\n]*|\s*[\r\n]+{JAIS2_CHUNKS}"
            )],
            false,
            true,
            false,
        ),
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
        "deepseek-v3" | "hunyuan-dense" | "hy_v4" | "joyai-llm" => (s(&deepseek3), false, false, false),
        "spark2_5" => (
            s(&[
                r"\p{N}{1,3}",
                "[\u{4e00}-\u{9fa5}\u{3040}-\u{309f}\u{30a0}-\u{30ff}]+",
                "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+|[\r\n]|\\s+(?!\\S)|\\s+",
                r"\p{N}",
            ]),
            false,
            false,
            false,
        ),
        "youtu" => (
            vec![
                "[\u{ac00}-\u{d7a3}\u{3131}-\u{318e}]+|[\u{ff01}\u{2026}\u{201c}\u{201d}\u{2018}\u{2019}\u{2014}\u{ff1a}\u{ff1b}\u{ff0c}\u{3001}-\u{303f}\u{fe30}-\u{fe4f}]+|[\u{3105}-\u{312f}]+|[\u{4e00}-\u{9fa5}\u{3040}-\u{309f}\u{30a0}-\u{30ff}]+".to_string(),
                format!(
                    r"{}|\p{{N}}{TAIL_SLASH}",
                    cased(&format!("{c}?"))
                ),
            ],
            true,
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
            (s(&starcoder), false, true, false)
        }
        "command-r" | "smollm" => (s(&starcoder), false, false, false),
        // llama.cpp also sets `add_sep` for jina-v1-en, jina-v2-code and
        // roberta-bpe; its BPE tokenizer does not read it (only its
        // reranking prompts join query and document with SEP), nor does
        // this one.
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
                r"{c}|[^\r\n\p{{L}}\p{{N}}]?[\p{{L}}\p{{M}}]+|\p{{N}}| ?[^\s\p{{L}}\p{{M}}\p{{N}}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
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
        "tekken" => (
            vec![format!(
                r"{}|\p{{N}}{TAIL_SLASH}",
                CASED_LLAMA.replace("{W}", r"\p{L}").replace("{C}", "")
            )],
            true,
            false,
            true,
        ),
        "chameleon" => (
            s(&[
                "<sentinel:[0-9]+>",
                "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z",
                "([\\t\\n]|    |  )",
                r"\p{N}",
                "[\\p{P}!-/:-@\\[-`{-~]",
                GPT2,
            ]),
            false,
            false,
            true,
        ),
        "gpt-4o" | "llama4" | "kanana2" | "talkie" | "minimax-m2" => {
            (vec![gpt4o], false, false, false)
        }
        "granite-embed-multi-97m" => (
            vec![format!(
                r"{}|\p{{N}}{{1,3}}{TAIL_SLASH}",
                cased_llama(r"\p{L}\p{M}")
            )],
            true,
            false,
            false,
        ),
        "tiny_aya" | "cohere2moe" => (
            vec![
                DIGITS3.to_string(),
                format!(
                    r"{}|\p{{N}}{{1,3}}{TAIL_SLASH}",
                    cased(&format!("{c}?"))
                ),
            ],
            false,
            false,
            false,
        ),
        // std::regex reads `\d` as ASCII digits.
        "superbpe" => (s(&[r"\p{N}+", THOUSANDS]), false, false, false),
        "bailingmoe" | "bailingmoe2" | "llada-moe" => (
            s(&[r"'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"]),
            false,
            false,
            false,
        ),
        "seed-coder" => (
            vec![format!(
                r"{c}|[^\r\n\p{{L}}\p{{N}}]?\p{{L}}+|\p{{N}}{{1}}| ?[^\s\p{{L}}\p{{N}}\r\n]+|\s*[\r\n]+|\s+(?!\S)|\s+"
            )],
            false,
            false,
            false,
        ),
        "ufakzeka" => (
            vec![format!(r"[^\r\n\p{{L}}\p{{N}}]?\p{{L}}+|\p{{N}}{TAIL}")],
            false,
            false,
            false,
        ),
        "grok-2" => (vec![qwen2], false, false, false),
        "kimi-k2" => (vec![kimi_k2()], false, false, false),
        // llama.cpp's CJK class starts its third range at U+8C48, the
        // unified ideograph, where the tokenizer it copies has U+F900 (the
        // compatibility one, which NFC turns into U+8C48): kept as is.
        "afmoe" => (
            vec![
                DIGITS3.to_string(),
                "[\u{4e00}-\u{9fff}\u{3400}-\u{4dbf}\u{8c48}-\u{faff}\u{3040}-\u{309f}\u{30a0}-\u{30ff}\u{ff65}-\u{ff9f}\u{2f00}-\u{2fdf}\u{e40}-\u{e7f}\u{e80}-\u{eff}\u{1780}-\u{17ff}\u{1000}-\u{109f}\u{aa60}-\u{aa7f}\u{a9e0}-\u{a9ff}\u{ac00}-\u{d7af}\u{1100}-\u{11ff}]+".to_string(),
                "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\\r\\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+".to_string(),
            ],
            false,
            false,
            false,
        ),
        "laguna" => (vec!["[^\\n]+|[\\n]+".to_string(), qwen2], false, false, false),
        // SentencePiece-style BPE (`escapes_spaces`); gemma4 turns BOS on
        // after the metadata (`Tokenizer::from_metadata`).
        "gemma4" | "granite-embed-multi-311m" => (s(&["[^\\n]+|[\\n]+"]), false, true, false),
        "sarvam-moe" => (s(&["[^\\n]+|[\\n]+"]), false, false, false),
        "exaone-moe" => (
            vec![format!(
                r"{c}|[^\r\n\p{{L}}\p{{N}}]?(?:\p{{L}}\p{{M}}*(?: \p{{L}}\p{{M}}*)*)+|\p{{N}}| ?[^\s\p{{L}}\p{{N}}]+[\r\n/]?|\s*[\r\n]|\s+(?!\S)|\s+"
            )],
            false,
            true,
            false,
        ),
        _ => return None,
    })
}

/// Inclusive ranges of code points.
type Ranges = &'static [(u32, u32)];

/// Where llama.cpp's character categories (its `unicode-data.cpp`,
/// generated from an older Unicode) differ from the `regex` crate's:
/// `(category, code points the regex crate has and llama.cpp has not,
/// code points llama.cpp has and the regex crate has not)`, as inclusive
/// ranges. Checked code point by code point against llama.cpp's table by
/// the test `categories_are_llama_cpps`.
#[rustfmt::skip]
pub(crate) const CATEGORY_FIXES: &[(&str, Ranges, Ranges)] = &[
    ("L", &[
        (0x1C89, 0x1C8A), (0xA7CB, 0xA7CD), (0xA7DA, 0xA7DC), (0x105C0, 0x105F3),
        (0x10D4A, 0x10D65), (0x10D6F, 0x10D85), (0x10EC2, 0x10EC4), (0x11380, 0x11389),
        (0x1138B, 0x1138B), (0x1138E, 0x1138E), (0x11390, 0x113B5), (0x113B7, 0x113B7),
        (0x113D1, 0x113D1), (0x113D3, 0x113D3), (0x11BC0, 0x11BE0), (0x13460, 0x143FA),
        (0x16100, 0x1611D), (0x16D40, 0x16D6C), (0x18CFF, 0x18CFF), (0x1E5D0, 0x1E5ED),
        (0x1E5F0, 0x1E5F0),
    ], &[]),
    ("N", &[
        (0x10D40, 0x10D49), (0x116D0, 0x116E3), (0x11BF0, 0x11BF9), (0x16130, 0x16139),
        (0x16D70, 0x16D79), (0x1CCF0, 0x1CCF9), (0x1E5F1, 0x1E5FA),
    ], &[]),
    ("M", &[
        (0x897, 0x897), (0x10D69, 0x10D6D), (0x10EFC, 0x10EFC), (0x113B8, 0x113C0),
        (0x113C2, 0x113C2), (0x113C5, 0x113C5), (0x113C7, 0x113CA), (0x113CC, 0x113D0),
        (0x113D2, 0x113D2), (0x113E1, 0x113E2), (0x11F5A, 0x11F5A), (0x1611E, 0x1612F),
        (0x1E5EE, 0x1E5EF),
    ], &[]),
    ("P", &[
        (0x1B4E, 0x1B4F), (0x1B7F, 0x1B7F), (0x10D6E, 0x10D6E), (0x113D4, 0x113D5),
        (0x113D7, 0x113D8), (0x11BE1, 0x11BE1), (0x16D6D, 0x16D6F), (0x1E5FF, 0x1E5FF),
    ], &[]),
    ("S", &[
        (0x2427, 0x2429), (0x31E4, 0x31E5), (0x10D8E, 0x10D8F), (0x1CC00, 0x1CCEF),
        (0x1CD00, 0x1CEB3), (0x1F8B2, 0x1F8BB), (0x1F8C0, 0x1F8C1), (0x1FA89, 0x1FA89),
        (0x1FA8F, 0x1FA8F), (0x1FABE, 0x1FABE), (0x1FAC6, 0x1FAC6), (0x1FADC, 0x1FADC),
        (0x1FADF, 0x1FADF), (0x1FAE9, 0x1FAE9), (0x1FBCB, 0x1FBEF),
    ], &[]),
];

/// `expr` with every `\p{…}` category made llama.cpp's: the letter
/// subcategories read as `\p{L}`, and each of `L`, `N`, `P`, `S` and `M`
/// the class of [`CATEGORY_FIXES`]. Valid inside a bracket class and out.
pub(crate) fn llama_categories(expr: &str) -> String {
    let mut out = String::with_capacity(expr.len());
    let mut chars = expr.char_indices();
    while let Some((i, ch)) = chars.next() {
        if ch != '\\' {
            out.push(ch);
            continue;
        }
        let rest = &expr[i + 1..];
        if let Some(name) = rest
            .strip_prefix("p{")
            .and_then(|r| r.split_once('}'))
            .map(|(n, _)| n)
        {
            let name = match name {
                "Lu" | "Ll" | "Lt" | "Lm" | "Lo" => "L",
                n => n,
            };
            out.push_str(&category_class(name));
            // Skip `p{name}`.
            for _ in 0..rest.find('}').unwrap_or(0) + 1 {
                chars.next();
            }
            continue;
        }
        out.push('\\');
        if let Some((_, next)) = chars.next() {
            out.push(next);
        }
    }
    out
}

/// The class of category `name` as llama.cpp has it.
pub(crate) fn category_class(name: &str) -> String {
    let ranges = |rs: &[(u32, u32)]| {
        let mut s = String::new();
        for &(a, b) in rs {
            // The ranges are constants of valid scalar values.
            let (a, b) = (
                char::from_u32(a).unwrap_or('\0'),
                char::from_u32(b).unwrap_or('\0'),
            );
            s.push(a);
            if b != a {
                s.push('-');
                s.push(b);
            }
        }
        s
    };
    match CATEGORY_FIXES.iter().find(|f| f.0 == name) {
        Some((_, minus, plus)) => {
            let mut class = format!(r"[\p{{{name}}}");
            if !minus.is_empty() {
                class = format!("{class}--[{}]", ranges(minus));
            }
            class.push(']');
            if !plus.is_empty() {
                class = format!("[{class}[{}]]", ranges(plus));
            }
            class
        }
        None => format!(r"\p{{{name}}}"),
    }
}

/// llama.cpp's non-ASCII whitespace (its `unicode_set_whitespace` above
/// U+007F), which it turns into U+000B before matching an expression.
const WIDE_SPACES: &str =
    "\u{85}\u{a0}\u{1680}\u{2000}-\u{200a}\u{2028}\u{2029}\u{202f}\u{205f}\u{3000}";

/// `expr` with every bracket class that lists non-ASCII characters (not
/// negated) made to leave out non-ASCII whitespace. llama.cpp turns such
/// whitespace into U+000B in the text before matching (std::regex's `\s`
/// knows only ASCII), so a class like deepseek's `[ࠀ-一]` (which spans
/// U+3000) never matches it there, while `\s` does.
pub(crate) fn mask_wide_spaces(expr: &str) -> String {
    let mut out = String::with_capacity(expr.len());
    let mut rest = expr;
    while let Some(c) = rest.chars().next() {
        match c {
            '\\' => {
                let n = rest.chars().nth(1).map_or(0, char::len_utf8);
                out.push_str(&rest[..1 + n]);
                rest = &rest[1 + n..];
            }
            '[' => {
                // The class runs to the first `]` not escaped and not its
                // first character (llama.cpp's classes do not nest).
                let body = &rest[1..];
                let mut end = None;
                let mut chars = body.char_indices();
                if body.starts_with('^') {
                    chars.next();
                }
                let mut first = true;
                while let Some((i, ch)) = chars.next() {
                    match ch {
                        '\\' => {
                            chars.next();
                        }
                        ']' if !first => {
                            end = Some(i);
                            break;
                        }
                        _ => {}
                    }
                    first = false;
                }
                let Some(end) = end else {
                    out.push_str(rest);
                    break;
                };
                let class = &rest[..end + 2];
                if !body.starts_with('^') && !class.is_ascii() {
                    out.push_str(&format!("[{class}--[{WIDE_SPACES}]]"));
                } else {
                    out.push_str(class);
                }
                rest = &rest[end + 2..];
            }
            c => {
                out.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    out
}

/// The regex of one expression of the table: llama.cpp's categories, and
/// no backtracking limit. The expressions are fixed and match in time
/// linear in the text (a limit would end matching early in a long run of
/// spaces and give other words than llama.cpp's).
fn compile(expr: &str) -> Option<Regex> {
    RegexBuilder::new(&llama_categories(&mask_wide_spaces(expr)))
        .backtrack_limit(usize::MAX)
        .build()
        .ok()
}

/// The step of one expression of the table: [`Split::Words`] where it
/// ends in the whitespace look-ahead, [`Split::Chunks`] where it ends in
/// jais-2's whitespace chunks, [`Split::Regex`] otherwise.
fn step(expr: &str) -> Option<Split> {
    const WS: &str = r"|\s+(?!\S)";
    const WS_FALLBACK: &str = r"|\s+(?!\S)|\s+";
    if let Some(head) = expr.strip_suffix(JAIS2_CHUNKS) {
        return compile(&format!(r"{head}|\s+")).map(Split::Chunks);
    }
    let (head, fallback) = match expr.strip_suffix(WS_FALLBACK) {
        Some(head) => (head, true),
        None => match expr.strip_suffix(WS) {
            Some(head) => (head, false),
            None => return compile(expr).map(Split::Regex),
        },
    };
    let re = compile(&format!(r"{head}|(?P<ws>\s+)"))?;
    Some(Split::Words { re, fallback })
}

impl PreTokenizer {
    /// The pre-tokenizer llama.cpp uses for `name` (a missing
    /// `tokenizer.ggml.pre` is `"default"`), or `None` for an unknown name.
    pub(crate) fn new(name: &str) -> Option<Self> {
        let (exprs, ignore_merges, clean_spaces, add_bos) = table(name)?;
        let steps = exprs
            .iter()
            // The expressions are constants of this file, each compiled in
            // the tests; an error here is a bug, reported as "unknown".
            .map(|e| match e.as_str() {
                DIGITS3 => compile(r"\p{N}").map(Split::Digits3),
                THOUSANDS => Some(Split::Thousands),
                e => step(e),
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Self {
            steps,
            ignore_merges,
            clean_spaces,
            add_bos,
            escape_spaces: escapes_spaces(name),
            newline_words: matches!(name, "gemma4" | "granite-embed-multi-311m"),
        })
    }

    /// Splits `text` into words: each step in turn splits every piece left
    /// by the previous one into its matches and the gaps between them.
    pub(crate) fn split<'t>(&self, text: &'t str) -> Vec<&'t str> {
        let mut pieces = vec![text];
        for step in &self.steps {
            let mut next = Vec::with_capacity(pieces.len() * 2);
            for piece in pieces {
                match step {
                    Split::Regex(re) => split_regex(re, piece, &mut next),
                    Split::Words { re, fallback } => split_words(re, *fallback, piece, &mut next),
                    Split::Chunks(re) => split_chunks(re, piece, &mut next),
                    Split::Digits3(digit) => split_digits3(digit, piece, &mut next),
                    Split::Thousands => split_before_thousands(piece, &mut next),
                }
            }
            pieces = next;
        }
        pieces
    }
}

/// `piece` cut at the matches of `re`: matches and gaps, empty ones left out.
fn split_regex<'t>(re: &Regex, piece: &'t str, next: &mut Vec<&'t str>) {
    let mut last = 0;
    for m in re.find_iter(piece) {
        // With no backtracking limit matching cannot fail; were it to, the
        // rest of the piece stays one word.
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

/// `piece` cut at the matches of a [`Split::Words`] expression, as the
/// expression with `\s+(?!\S)` would cut it. A run of whitespace matched by
/// `ws` that a non-space follows gives back its last character, as the
/// look-ahead backtracks one; a run of one character then does not match
/// there (the search goes on one character later), unless `fallback` (the
/// expression's last alternative, `\s+`, takes it whole).
fn split_words<'t>(re: &Regex, fallback: bool, piece: &'t str, next: &mut Vec<&'t str>) {
    let (mut last, mut pos) = (0, 0);
    while pos <= piece.len() {
        // The expression is a plain regex: matching does not fail.
        let Ok(Some(caps)) = re.captures_from_pos(piece, pos) else {
            break;
        };
        let Some(m) = caps.get(0) else { break };
        let (start, mut end) = (m.start(), m.end());
        if caps.name("ws").is_some() && end < piece.len() {
            // `\s+` is greedy: a non-space follows.
            let w = piece[start..end]
                .chars()
                .next_back()
                .map_or(1, char::len_utf8);
            if end - start > w {
                end -= w;
            } else if !fallback {
                pos = start + w;
                continue;
            }
        }
        if start > last {
            next.push(&piece[last..start]);
        }
        if end > start {
            next.push(&piece[start..end]);
            pos = end;
        } else {
            // An empty match: the search goes on after the next character.
            pos = end + piece[end..].chars().next().map_or(1, char::len_utf8);
        }
        last = end;
    }
    if last < piece.len() {
        next.push(&piece[last..]);
    }
}

/// `piece` cut at the matches of a [`Split::Chunks`] expression, as the
/// expression with [`JAIS2_CHUNKS`] would cut it, in one pass over each
/// run of whitespace.
///
/// Where the last alternative, `\s+`, matches, the run `[start, end)`
/// (the rest of a run of whitespace) holds no newline, and the
/// alternatives before it match nowhere in it: not at `start` (the regex
/// tried them first), nor further in (each needs a newline in the run or
/// a non-space right after its first character). So the chunk
/// alternatives cut it, left to right: with `r` characters left and
/// `l = r` at the end of the piece, `l = r - 1` before a non-space
/// (`(?!\S)`), each word is the largest power of two up to 512 and `l`
/// (`\s{1,2}` takes 2 before 1), while `l > 0`. The last character before
/// a non-space is matched again (it may start a word, ` x`), or is `\s{1}`
/// alone.
fn split_chunks<'t>(re: &Regex, piece: &'t str, next: &mut Vec<&'t str>) {
    let (mut last, mut pos) = (0, 0);
    while pos < piece.len() {
        // The expression is a plain regex: matching does not fail.
        let Ok(Some(m)) = re.find_from_pos(piece, pos) else {
            break;
        };
        let (start, end) = (m.start(), m.end());
        if start > last {
            next.push(&piece[last..start]);
        }
        // Whether `\s+` matched: the other alternatives end in a letter, a
        // digit, a newline or a character `\s` does not match (`\s` is
        // White_Space, as `char::is_whitespace` is). Telling it from the
        // match is cheaper than a capture group over a long run.
        let ws = m
            .as_str()
            .chars()
            .next_back()
            .is_some_and(|c| c.is_whitespace() && c != '\r' && c != '\n');
        if !ws {
            if end > start {
                next.push(m.as_str());
                pos = end;
            } else {
                // No alternative matches empty; were one to, the search
                // goes on after the next character.
                pos = end + piece[end..].chars().next().map_or(1, char::len_utf8);
            }
            last = end;
            continue;
        }
        let run = &piece[start..end];
        let r = run.chars().count();
        let mut l = if end == piece.len() { r } else { r - 1 };
        if l == 0 {
            // One character before a non-space: `\s{1}`.
            next.push(run);
            last = end;
            pos = end;
            continue;
        }
        let mut chars = run.char_indices().skip(1);
        let mut cut = start;
        while l > 0 {
            let k = 1usize << l.min(512).ilog2();
            // The byte after the k-th character from `cut`.
            let to = chars.nth(k - 1).map_or(end, |(i, _)| start + i);
            next.push(&piece[cut..to]);
            cut = to;
            l -= k;
        }
        last = cut;
        pos = cut;
    }
    if last < piece.len() {
        next.push(&piece[last..]);
    }
}

/// `piece` cut as llama.cpp's `unicode_regex_split_custom_afmoe` cuts it:
/// a run of `n` digits (`digit` matches one) ends a word after its first
/// `n % 3` digits (where not 0) and after each three digits that follow;
/// what comes before a run is part of its first word.
fn split_digits3<'t>(digit: &Regex, piece: &'t str, next: &mut Vec<&'t str>) {
    let is_digit = |c: char| digit.is_match(c.encode_utf8(&mut [0; 4])).unwrap_or(false);
    let mut last = 0;
    let mut chars = piece.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        if !is_digit(c) {
            continue;
        }
        // The ends of the digits of the run, in bytes.
        let mut ends = vec![chars.peek().map_or(piece.len(), |&(i, _)| i)];
        while let Some(&(_, d)) = chars.peek() {
            if !is_digit(d) {
                break;
            }
            chars.next();
            ends.push(chars.peek().map_or(piece.len(), |&(i, _)| i));
        }
        // A word ends after digit k (1-based) where k ≡ n (mod 3).
        let first = ends.len() % 3;
        for (k, &end) in (1..).zip(&ends) {
            if k % 3 == first {
                next.push(&piece[last..end]);
                last = end;
            }
        }
    }
    if last < piece.len() {
        next.push(&piece[last..]);
    }
}

/// `piece` cut where `(?=([0-9]{3})+(?![0-9]))` matches (an empty match,
/// so a cut and no word of its own): before each ASCII digit that a
/// positive multiple of three ASCII digits, itself included, ends the run
/// of. Digits are one byte each, so byte positions are character bounds.
fn split_before_thousands<'t>(piece: &'t str, next: &mut Vec<&'t str>) {
    let bytes = piece.as_bytes();
    let mut last = 0;
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        // The cuts: start + j for j < n - 2 with n - j ≡ 0 (mod 3).
        let n = i - start;
        let mut cut = start + n % 3;
        while cut + 3 <= i {
            if cut > last {
                next.push(&piece[last..cut]);
                last = cut;
            }
            cut += 3;
        }
    }
    if last < piece.len() {
        next.push(&piece[last..]);
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
        "jais-2",
        "spark2_5",
        "youtu",
        "chameleon",
        "granite-embed-multi-97m",
        "tiny_aya",
        "superbpe",
        "bailingmoe",
        "seed-coder",
        "ufakzeka",
        "grok-2",
        "afmoe",
        "laguna",
        "exaone-moe",
        "minicpm5",
        "kimi-k2",
        "gemma4",
        "sarvam-moe",
    ];

    #[test]
    fn every_expression_compiles() {
        for name in NAMES {
            for e in table(name).unwrap().0 {
                if e != DIGITS3 {
                    if let Err(err) = Regex::new(&llama_categories(&e)) {
                        panic!("{name}: {e}: {err}");
                    }
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

    fn split(name: &str, text: &str) -> Vec<String> {
        let p = PreTokenizer::new(name).unwrap();
        p.split(text).into_iter().map(String::from).collect()
    }

    #[test]
    fn cased_words_split_as_llama_cpps() {
        // ASCII case splits words; other letters are both cases to
        // llama.cpp, and marks are not part of a word.
        assert_eq!(split("gpt-4o", "HelloWorld's"), ["Hello", "World's"]);
        assert_eq!(split("gpt-4o", "\u{c0}bc\u{c9}fg"), ["\u{c0}bc\u{c9}fg"]);
        assert_eq!(split("gpt-4o", "cafe\u{301}"), ["cafe", "\u{301}"]);
        assert_eq!(split("tekken", "ABCdef"), ["ABCdef"]);
        assert_eq!(split("tekken", "abcDEF"), ["abc", "DEF"]);
        // tiny_aya keeps HF's expression, whose cases llama.cpp also reads
        // as letters.
        assert_eq!(split("tiny_aya", "abcDEF"), ["abcDEF"]);
        assert_eq!(
            split("granite-embed-multi-97m", "cafe\u{301}"),
            ["cafe\u{301}"]
        );
    }

    #[test]
    fn newer_unicode_letters_are_not_letters() {
        // U+1C89 (Unicode 16) is not in llama.cpp's table: not a letter.
        assert_eq!(split("gpt-2", "a\u{1c89}b"), ["a", "\u{1c89}", "b"]);
        // U+1CCF0 is a Unicode 16 digit.
        assert_eq!(split("starcoder", "1\u{1ccf0}2"), ["1", "\u{1ccf0}", "2"]);
    }

    #[test]
    fn digit_runs_split_in_threes_from_the_right() {
        let digits = compile(r"\p{N}").unwrap();
        let cut = |t: &'static str| {
            let mut v = Vec::new();
            split_digits3(&digits, t, &mut v);
            v
        };
        assert_eq!(cut("ab1234"), ["ab1", "234"]);
        assert_eq!(cut("123456"), ["123", "456"]);
        assert_eq!(cut("12"), ["12"]);
        assert_eq!(cut("1a22b"), ["1", "a22", "b"]);
        assert_eq!(
            cut("x\u{664}\u{665}\u{666}\u{667}"),
            ["x\u{664}", "\u{665}\u{666}\u{667}"]
        );
        assert!(cut("").is_empty());
        assert_eq!(split("tiny_aya", "ab1234"), ["ab", "1", "234"]);
        assert_eq!(split("superbpe", "x1234567"), ["x", "1", "234", "567"]);
    }

    #[test]
    fn a_long_run_of_spaces_is_one_word_as_in_llama_cpp() {
        // fancy-regex's default backtracking limit (a million) ended the
        // matching inside such a run, leaving the rest one word.
        let n = 2_000_000;
        let text = format!("{}hello", " ".repeat(n));
        for name in ["gpt-2", "llama3", "qwen2", "gpt-4o", "tekken"] {
            let words = split(name, &text);
            assert_eq!(words.len(), 2, "{name}");
            assert_eq!(words[0].len(), n - 1, "{name}");
            assert_eq!(words[1], " hello", "{name}");
        }
    }

    /// `count` texts of fewer than `max_len` characters drawn from
    /// `alphabet` (xorshift64 from `seed`).
    fn random_texts(alphabet: &[char], count: usize, max_len: u64, mut seed: u64) -> Vec<String> {
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        (0..count)
            .map(|_| {
                let n = next() % max_len;
                (0..n)
                    .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                    .collect()
            })
            .collect()
    }

    /// Random texts split by every pre-tokenizer as [`split_words`] does
    /// and by the expressions as written (fancy-regex's look-ahead).
    #[test]
    fn words_split_as_the_look_ahead_does() {
        const ALPHABET: &[char] = &[
            ' ', ' ', ' ', '\t', '\n', '\r', 'a', 'B', 'z', 'Q', 's', 't', '\'', '1', '7', '.',
            '$', '/', '\u{a0}', '\u{3000}', '\u{2028}', '\u{e9}', '\u{c9}', '\u{301}', '\u{664}',
            '\u{4e00}', '\u{1c89}', '\u{df}', '\u{ac00}',
        ];
        let texts = random_texts(ALPHABET, 1500, 24, 0x2545_f491_4f6c_dd1d);
        for name in NAMES {
            let ours = PreTokenizer::new(name).unwrap();
            let (exprs, ..) = table(name).unwrap();
            let reference = PreTokenizer {
                steps: exprs
                    .iter()
                    .map(|e| match e.as_str() {
                        DIGITS3 => Split::Digits3(compile(r"\p{N}").unwrap()),
                        e => Split::Regex(compile(e).unwrap()),
                    })
                    .collect(),
                ignore_merges: false,
                clean_spaces: false,
                add_bos: false,
                escape_spaces: false,
                newline_words: false,
            };
            for t in &texts {
                assert_eq!(ours.split(t), reference.split(t), "{name}: {t:?}");
            }
        }
    }

    /// jais-2 as its expression is written (fancy-regex's look-ahead, the
    /// splitter before [`Split::Chunks`]).
    fn jais2_as_written() -> PreTokenizer {
        let (exprs, ..) = table("jais-2").unwrap();
        PreTokenizer {
            steps: vec![Split::Regex(compile(&exprs[0]).unwrap())],
            ignore_merges: false,
            clean_spaces: false,
            add_bos: false,
            escape_spaces: false,
            newline_words: false,
        }
    }

    /// Whitespace-heavy random texts, runs of lengths about the chunk
    /// sizes (1 to 512 and past), between short words, split by
    /// [`split_chunks`] and by the expression as written.
    #[test]
    fn jais2_chunks_split_as_the_look_ahead_does() {
        const SPACES: &[char] = &[
            ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', '\t', '\u{a0}', '\u{3000}', '\u{b}', '\u{c}',
            '\u{85}', '\u{2028}', '\u{2003}',
        ];
        const NEWLINES: &[char] = &['\n', '\r'];
        const WORDS: &[char] = &[
            'a', 'Z', 's', 't', '\'', '1', '7', '.', '!', '$', '/', '\u{e9}', '\u{301}', '\u{664}',
            '\u{4e00}', '\u{1c89}', '\u{180e}', '\u{200b}',
        ];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let pick =
            |next: &mut dyn FnMut() -> u64, set: &[char]| set[(next() % set.len() as u64) as usize];
        let ours = PreTokenizer::new("jais-2").unwrap();
        let theirs = jais2_as_written();
        for _ in 0..3000 {
            let mut t = String::new();
            for _ in 0..next() % 6 {
                // A run: a length near a power of two, or any up to 1100.
                let n = match next() % 3 {
                    0 => {
                        let p = 1i64 << (next() % 11);
                        (p + (next() % 5) as i64 - 2).max(0) as u64
                    }
                    1 => next() % 8,
                    _ => next() % 1100,
                };
                // Mostly spaces; mixed whitespace in a third of the runs,
                // a newline somewhere in one run in eight.
                let mixed = next() % 3 == 0;
                let newline = next() % 8 == 0;
                for _ in 0..n {
                    let c = if mixed { pick(&mut next, SPACES) } else { ' ' };
                    t.push(if newline && next() % 200 == 0 {
                        pick(&mut next, NEWLINES)
                    } else {
                        c
                    });
                }
                for _ in 0..next() % 4 {
                    t.push(pick(&mut next, WORDS));
                }
            }
            assert_eq!(ours.split(&t), theirs.split(&t), "{t:?}");
        }
    }

    /// Long runs: as the expression as written cuts them, and a run of
    /// millions of spaces (the expression as written took time quadratic
    /// in the run: 1.5 s for a million spaces, 4.6 ms now).
    #[test]
    fn jais2_cuts_long_runs_in_chunks_of_512() {
        let ours = PreTokenizer::new("jais-2").unwrap();
        let theirs = jais2_as_written();
        let n = 100_003;
        let run = " ".repeat(n);
        let mixed = " \t\u{a0}\u{3000}".repeat(n / 4);
        for t in [
            run.clone(),
            format!("{run}x"),
            format!("{run}!"),
            format!("{run}\u{3000}x"),
            format!("{run}\n{run}1"),
            format!("a{mixed}x"),
            format!("{mixed}\r\n{mixed}"),
        ] {
            assert_eq!(ours.split(&t), theirs.split(&t));
        }
        let n = 8 << 20;
        let text = format!("{}x", " ".repeat(n));
        let words = ours.split(&text);
        // n - 1 = 512·16383 + 511: 511 = 256 + 128 + … + 2 + 1.
        assert_eq!(words.len(), 16383 + 9 + 1);
        assert!(words[..16383].iter().all(|w| w.len() == 512));
        let tail: Vec<usize> = words[16383..].iter().map(|w| w.len()).collect();
        assert_eq!(tail, [256, 128, 64, 32, 16, 8, 4, 2, 1, 2]);
        assert_eq!(*words.last().unwrap(), " x");
    }

    /// superbpe's hand-done look-ahead against fancy-regex's on digit-heavy
    /// random texts, and on a run longer than fancy-regex's stack holds.
    #[test]
    fn thousands_split_as_the_look_ahead_does() {
        const ALPHABET: &[char] = &['1', '2', '0', '9', '1', '5', 'a', ' ', '\u{664}', '\u{e9}'];
        let fancy = compile(THOUSANDS).unwrap();
        for t in random_texts(ALPHABET, 4000, 40, 0x9e37_79b9_7f4a_7c15) {
            let (mut ours, mut theirs) = (Vec::new(), Vec::new());
            split_before_thousands(&t, &mut ours);
            split_regex(&fancy, &t, &mut theirs);
            assert_eq!(ours, theirs, "{t:?}");
        }
        let n = 3_000_001;
        let text = format!("x{}", "7".repeat(n));
        let words = split("superbpe", &text);
        assert_eq!(words.len(), 2 + n / 3);
        assert_eq!(words[..3], ["x", "7", "777"]);
        assert!(words[1..].iter().skip(1).all(|w| *w == "777"));
    }

    /// llama.cpp's `unicode_regex_split_custom_kimi_k2`, ported line for
    /// line (the oracle of [`kimi_k2`]).
    fn kimi_reference(text: &str) -> Vec<String> {
        let cps: Vec<char> = text.chars().collect();
        let n = cps.len();
        let (l, num, ws) = (
            compile(r"\p{L}").unwrap(),
            compile(r"\p{N}").unwrap(),
            compile(r"\s").unwrap(),
        );
        let is =
            |re: &Regex, p: usize| p < n && re.is_match(cps[p].encode_utf8(&mut [0; 4])).unwrap();
        let han = |p: usize| {
            p < n
                && matches!(cps[p] as u32, 0x4E00..=0x9FFF | 0x3400..=0x4DBF | 0x20000..=0x2A6DF
                    | 0x2A700..=0x2EBEF | 0xF900..=0xFAFF | 0x2F800..=0x2FA1F)
        };
        let letter = |p: usize| is(&l, p) && !han(p);
        let nl = |p: usize| p < n && (cps[p] == '\r' || cps[p] == '\n');
        let lower = |p: usize| cps[p].to_lowercase().next().unwrap();
        let mut out = Vec::new();
        let mut prev = 0;
        let mut add = |end: usize, out: &mut Vec<String>| {
            if end > prev {
                out.push(cps[prev..end].iter().collect());
            }
            prev = end;
        };
        let mut pos = 0;
        while pos < n {
            if han(pos) {
                while han(pos) {
                    pos += 1;
                }
                add(pos, &mut out);
                continue;
            }
            let lead = !(nl(pos) || is(&l, pos) || is(&num, pos));
            if letter(pos) || (lead && letter(pos + 1)) {
                let mut has_leading = false;
                if lead {
                    has_leading = true;
                    pos += 1;
                }
                let mut has_letters = false;
                while letter(pos) {
                    has_letters = true;
                    pos += 1;
                }
                if has_letters || (!has_leading && letter(pos)) {
                    if !has_letters {
                        pos += 1;
                    }
                    while letter(pos) {
                        pos += 1;
                    }
                    if pos < n && cps[pos] == '\'' && pos + 1 < n {
                        let a = lower(pos + 1);
                        if matches!(a, 's' | 't' | 'm' | 'd') {
                            pos += 2;
                        } else if pos + 2 < n {
                            let b = lower(pos + 2);
                            if matches!((a, b), ('r', 'e') | ('v', 'e') | ('l', 'l')) {
                                pos += 3;
                            }
                        }
                    }
                    add(pos, &mut out);
                    continue;
                } else if has_leading {
                    pos -= 1;
                }
            }
            if is(&num, pos) {
                let mut ini = pos;
                while is(&num, pos) {
                    pos += 1;
                    if pos - ini >= 3 {
                        add(pos, &mut out);
                        ini = pos;
                    }
                }
                add(pos, &mut out);
                continue;
            }
            let other = |p: usize| p < n && !(is(&ws, p) || is(&l, p) || is(&num, p));
            if other(if cps[pos] == ' ' { pos + 1 } else { pos }) {
                if cps[pos] == ' ' {
                    pos += 1;
                }
                while other(pos) {
                    pos += 1;
                }
                while nl(pos) {
                    pos += 1;
                }
                add(pos, &mut out);
                continue;
            }
            let (mut k, mut last_nl) = (0, 0);
            while is(&ws, pos + k) {
                if nl(pos + k) {
                    last_nl = pos + k + 1;
                }
                k += 1;
            }
            if last_nl > 0 {
                pos = last_nl;
            } else if k > 1 && pos + k < n {
                pos += k - 1;
            } else if k > 0 {
                pos += k;
            } else {
                pos += 1;
            }
            add(pos, &mut out);
        }
        out
    }

    #[test]
    fn kimi_k2_splits_as_llama_cpps_hand_written_splitter() {
        const ALPHABET: &[char] = &[
            ' ',
            ' ',
            '\t',
            '\n',
            '\r',
            'a',
            'B',
            's',
            'S',
            'r',
            'e',
            'L',
            'l',
            'v',
            '\'',
            '1',
            '7',
            '.',
            '$',
            '\u{a0}',
            '\u{3000}',
            '\u{e9}',
            '\u{301}',
            '\u{664}',
            '\u{4e00}',
            '\u{3400}',
            '\u{f900}',
            '\u{3042}',
            '\u{1c89}',
            '\u{ac00}',
            '\u{20000}',
        ];
        let p = PreTokenizer::new("kimi-k2").unwrap();
        for t in random_texts(ALPHABET, 4000, 20, 0x9e37_79b9_7f4a_7c15) {
            assert_eq!(p.split(&t), kimi_reference(&t), "{t:?}");
        }
        assert_eq!(
            p.split("I'm \u{4e2d}\u{6587}Text we're  1234\n"),
            [
                "I'm",
                " ",
                "\u{4e2d}\u{6587}",
                "Text",
                " we're",
                " ",
                " ",
                "123",
                "4",
                "\n"
            ]
        );
    }

    #[test]
    fn wide_spaces_are_left_out_of_classes_as_in_llama_cpp() {
        assert_eq!(mask_wide_spaces("[a-z]+|[^\u{3000}]"), "[a-z]+|[^\u{3000}]");
        assert_eq!(
            mask_wide_spaces("\\s?[!-~\u{3000}-\u{3002}]+"),
            format!("\\s?[[!-~\u{3000}-\u{3002}]--[{WIDE_SPACES}]]+")
        );
        assert_eq!(
            mask_wide_spaces("[]\u{e9}]"),
            format!("[[]\u{e9}]--[{WIDE_SPACES}]]")
        );
        assert_eq!(mask_wide_spaces("\\[\u{e9}"), "\\[\u{e9}");
        // deepseek's CJK class spans U+3000: llama.cpp's ideographic space
        // is whitespace, not part of the run.
        assert_eq!(
            split("deepseek-coder", "\u{4e00}\u{3000}\u{4e01}"),
            ["\u{4e00}", "\u{3000}", "\u{4e01}"]
        );
        assert_eq!(
            split("deepseek-llm", "  \u{3000}\tx"),
            ["  \u{3000}", "\tx"]
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
