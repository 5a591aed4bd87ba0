//! The tokenizer stored in a GGUF: `gpt2` byte-level BPE, `llama`
//! SentencePiece, `gemma4`'s SentencePiece-style BPE, `bert` WordPiece and
//! `t5` Unigram, encoding and decoding as llama.cpp does.
//!
//! ```no_run
//! use gguf_loader::MmapGGUFLoader;
//! use gguf_loader_llm::tokenizer::Tokenizer;
//!
//! let loader = MmapGGUFLoader::new("model.gguf")?;
//! let tok = Tokenizer::from_loader(&loader)?;
//! let ids = tok.encode("Hello world", true, false);
//! // BOS (where the model adds one) and the text's ids.
//! assert_eq!(ids.first() == tok.bos().as_ref(), tok.add_bos());
//! let text = tok.decode(&ids, true, false);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Decoding is llama.cpp's, so it does not give every text back: with BOS
//! removed, a SentencePiece vocabulary keeps the space it put before the
//! first word (`" Hello world"`), and a GPT-2-style one that cleans up
//! spaces ([`Tokenizer::cleans_spaces`]) writes `"you ?"` as `"you?"`.

mod bpe;
mod finder;
mod merge;
mod pre;
#[cfg(test)]
mod pre_oracle;
mod spm;
mod std_sort;
mod stream;
mod table;
mod ugm;
mod unicode_data;
mod wpm;

pub use ugm::{MAX_CHARSMAP, MAX_REPLACEMENT};

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use finder::{Finder, ROOT};
use table::{Duplicates, Indexed, Packed};

use gguf_loader::{Escaped, Metadata, MetadataError, MmapGGUFLoader, Value};

pub use stream::StreamDecoder;

use pre::PreTokenizer;

/// Why a GGUF's tokenizer cannot be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenizerError {
    /// A `tokenizer.*` key is missing or of the wrong type.
    #[error("tokenizer: {0}")]
    Metadata(MetadataError),
    /// `tokenizer.ggml.model` names a tokenizer this crate does not implement.
    #[error("tokenizer.ggml.model '{}' is not supported (only 'gpt2', 'llama', 'gemma4', 'bert' and 't5')", Escaped(.0))]
    UnsupportedModel(String),
    /// `tokenizer.ggml.pre` names a pre-tokenizer this crate does not know.
    #[error("tokenizer.ggml.pre '{}' is not a known pre-tokenizer", Escaped(.0))]
    UnknownPre(String),
    /// A per-token array is shorter than `tokenizer.ggml.tokens`.
    #[error("metadata key '{key}' has {found} entries, fewer than the {expected} tokens")]
    TooShort {
        /// The key.
        key: &'static str,
        /// Its length.
        found: usize,
        /// The number of tokens.
        expected: usize,
    },
    /// The tokens' decoded pieces would pass their texts by more than
    /// [`PIECE_SLACK`] bytes (characters outside the byte alphabet of a
    /// `gpt2` vocabulary are spelled out, each with the token's whole text).
    #[error(
        "metadata key 'tokenizer.ggml.tokens': the decoded pieces pass the tokens' texts by \
         more than {} MiB at token {id} (each character outside the byte-level alphabet is \
         spelled out with the whole token)",
        PIECE_SLACK >> 20
    )]
    Pieces {
        /// The token where the budget ran out.
        id: u32,
    },
    /// The bytes given to [`Tokenizer::from_gguf_bytes`] are no valid
    /// GGUF.
    #[error("tokenizer GGUF: {0}")]
    Format(gguf_loader::FormatError),
    /// The vocabulary is empty or larger than [`MAX_VOCAB`].
    #[error("metadata key 'tokenizer.ggml.tokens' holds {0} tokens; expected 1 to {max}", max = MAX_VOCAB)]
    VocabSize(usize),
    /// `tokenizer.ggml.merges` holds more than [`MAX_VOCAB`] merges.
    #[error("metadata key 'tokenizer.ggml.merges' holds {0} merges; expected at most {max}", max = MAX_VOCAB)]
    MergeCount(usize),
    /// A WordPiece vocabulary whose token texts pass [`MAX_WORDPIECE_TEXT`]
    /// bytes in all (real ones hold well under 1 MiB).
    #[error(
        "metadata key 'tokenizer.ggml.tokens': a WordPiece vocabulary of {0} bytes of text; \
         at most {max} MiB is taken",
        max = MAX_WORDPIECE_TEXT >> 20
    )]
    WordPieceText(usize),
    /// A Unigram vocabulary whose token texts pass [`MAX_UNIGRAM_TEXT`]
    /// bytes in all.
    #[error(
        "metadata key 'tokenizer.ggml.tokens': a Unigram vocabulary of {0} bytes of text; \
         at most {max} MiB is taken",
        max = MAX_UNIGRAM_TEXT >> 20
    )]
    UnigramText(usize),
    /// `tokenizer.ggml.precompiled_charsmap` is malformed: a walk of its
    /// double array could read past it (llama.cpp throws there), or it is
    /// larger than [`MAX_CHARSMAP`].
    #[error(
        "metadata key 'tokenizer.ggml.precompiled_charsmap': {why} (at byte {offset} of the array)"
    )]
    Charsmap {
        /// The byte in the array where the fault is.
        offset: usize,
        /// What is wrong.
        why: &'static str,
    },
    /// A token the algorithm needs is missing or out of the vocabulary.
    #[error("metadata key '{key}': {why}")]
    MissingToken {
        /// The key that names it.
        key: &'static str,
        /// Why it is needed.
        why: &'static str,
    },
    /// The memory the tokenizer's tables would take could not be
    /// allocated.
    #[error("the tokenizer's tables would take about {mib} MiB, which cannot be allocated", mib = .0 >> 20)]
    OutOfMemory(usize),
}

/// Texts of special tokens past this many bytes in all are not put in a
/// finder; real vocabularies hold well under 1 MiB of them. Without a
/// finder each special is searched for in the text in turn. (The finder
/// takes some 19 bytes a byte of their text, and about 30 while it is
/// built.)
const MAX_FINDER_TEXT: usize = 64 << 20;

/// `▁`, which stands for a space in SentencePiece-style vocabularies.
const SPACE: &[u8] = "\u{2581}".as_bytes();

/// `s` up to its first NUL, as C reads it (a byte loop: token texts are
/// short).
fn c_str(s: &str) -> &str {
    match s.as_bytes().iter().position(|&b| b == 0) {
        // A NUL is one byte: the text before it is whole UTF-8.
        Some(p) => &s[..p],
        None => s,
    }
}

/// The finder of [`Tokenizer::find_specials`]: an Aho-Corasick automaton of
/// our own ([`finder`]), linear in the texts to build and to hold. (The
/// `AhoCorasick` type builds a DFA for 100 patterns or fewer, in time that
/// grows with the square of a repetitive text: one 64 KiB special token
/// took over 90 s; the crate's NFA lists at each state every special that
/// is a suffix of its text: 1.3 GB for `a` to `a`×100 and one `a`×2^20.)
fn special_finder(special: &[u32], tokens: &Indexed) -> Option<Finder> {
    let texts: Vec<&[u8]> = special
        .iter()
        .map(|&id| tokens[id as usize].as_bytes())
        .collect();
    // (No text is empty: an empty token is renamed `[EMPTY_i]`.)
    if texts.iter().any(|t| t.is_empty())
        || texts.iter().map(|t| t.len()).sum::<usize>() > MAX_FINDER_TEXT
    {
        return None;
    }
    Finder::new(&texts)
}

/// The most bytes of token text a WordPiece vocabulary may hold: its
/// tokens all go into an automaton (about 19 bytes a byte of text, 30
/// while it is built), which finds the longest token at each place of a
/// word in one pass. (Trying every length at each place, as llama.cpp
/// does, costs the cube of a word's length with a token as long.)
pub const MAX_WORDPIECE_TEXT: usize = 64 << 20;

/// The most bytes of token text a Unigram vocabulary may hold: its normal,
/// user-defined and unused tokens all go into an automaton (about 19 bytes
/// a byte of text), walked once over the text to find each place's tokens.
pub const MAX_UNIGRAM_TEXT: usize = 64 << 20;

/// The most tokens (and merges) a vocabulary may hold: 16 times the
/// largest real ones (Gemma's 262 144). The tables take some 60 bytes a
/// token besides its text and piece (4 M tokens of 8 bytes, a 64 MB file:
/// 325 MB at the peak of the build), so a file of empty token texts (8
/// bytes each, named `[EMPTY_i]`) asks for some 10 times its size, and a
/// bound keeps that from growing with the file.
pub const MAX_VOCAB: usize = 1 << 22;

/// A guess, on the high side, of the bytes [`Tokenizer::from_metadata`]
/// allocates for `n` tokens of `text` bytes in all and `m` merges of
/// `merge_text` bytes.
fn table_bytes(n: usize, text: usize, m: usize, merge_text: usize) -> usize {
    n.saturating_mul(128)
        .saturating_add(text.saturating_mul(3))
        .saturating_add(m.saturating_mul(96))
        .saturating_add(merge_text.saturating_mul(2))
}

/// How many bytes the decoded pieces of a vocabulary may pass its token
/// texts by, in all (64 MiB): a real vocabulary's pieces are never longer
/// than its texts, but a `gpt2` token's character outside the byte alphabet
/// is spelled out with the token's whole text, as llama.cpp does, so a
/// file could otherwise ask for memory quadratic in its size.
pub const PIECE_SLACK: usize = 64 << 20;

impl From<MetadataError> for TokenizerError {
    fn from(e: MetadataError) -> Self {
        TokenizerError::Metadata(e)
    }
}

/// Which algorithm the vocabulary uses (`tokenizer.ggml.model`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenizerKind {
    /// `gpt2`: byte-level BPE over `tokenizer.ggml.merges` (and `gemma4`:
    /// the same merging over UTF-8 text with `▁` for spaces and `<0xXX>`
    /// byte tokens, as llama.cpp counts it among its BPE vocabularies).
    Bpe,
    /// `llama`: SentencePiece, greedy merging of the best-scoring bigram
    /// with `<0xXX>` byte fallback.
    Spm,
    /// `bert`: WordPiece, the longest token at each place of each
    /// normalized word (`▁` before it), the unknown token for a word that
    /// cannot be covered; with `add_special`, CLS (the BOS id) before and
    /// SEP after.
    Wpm,
    /// `t5`: Unigram, the best-scoring tokenization (Viterbi) of the text
    /// normalized by the vocabulary's precompiled charsmap, as llama.cpp's
    /// UGM tokenizer (T5, XLM-RoBERTa, bge-m3, nomic-embed-v2).
    Ugm,
}

/// A token's attributes, as llama.cpp derives them from
/// `tokenizer.ggml.token_type` (bit flags).
pub mod attr {
    /// The unknown token.
    pub const UNKNOWN: u32 = 1 << 0;
    /// Unused (reserved) token.
    pub const UNUSED: u32 = 1 << 1;
    /// Ordinary text.
    pub const NORMAL: u32 = 1 << 2;
    /// Control token (BOS, EOS, turn markers): not text.
    pub const CONTROL: u32 = 1 << 3;
    /// User-defined token: matched in text before tokenizing.
    pub const USER_DEFINED: u32 = 1 << 4;
    /// One raw byte (`<0xXX>`).
    pub const BYTE: u32 = 1 << 5;
    /// Whitespace to the left of a match is stripped.
    pub const LSTRIP: u32 = 1 << 7;
    /// Whitespace to the right of a match is stripped.
    pub const RSTRIP: u32 = 1 << 8;
}

/// The tokenizer of a GGUF model: vocabulary, merges or scores, special
/// tokens and flags, all from the file's `tokenizer.*` metadata.
pub struct Tokenizer {
    kind: TokenizerKind,
    pre_name: String,
    /// The token texts, each found by its text (the last token of a text,
    /// as in llama.cpp).
    tokens: Indexed,
    scores: Vec<f32>,
    attrs: Vec<u32>,
    /// `"left right"`, found by that text as its merge rank (the first
    /// merge of a text; gpt2 only).
    merges: Indexed,
    pre: Option<PreTokenizer>,
    byte_chars: [char; 256],
    /// SentencePiece: the characters some token holds followed by `▁`
    /// (sorted): a text is merged in segments cut before each `▁` that
    /// none of these precedes ([`spm::tokenize`]). Gemma-3's: `>`
    /// (`>▁</`); llama's: `▁` (runs of spaces).
    spm_glue: Vec<char>,
    /// The byte of each character of `byte_chars` (all below U+0200), by
    /// its scalar value.
    byte_of_char: [Option<u8>; 0x200],
    /// Control, user-defined and unknown tokens, longest text first.
    special: Vec<u32>,
    /// Finds which of `special` occur in a text, in one pass (pattern `k`
    /// is `special[k]`); `None` where their texts are too long in all.
    special_finder: Option<Finder>,
    /// Each token's text as decoded bytes (with specials rendered).
    pieces: Packed<Vec<u8>>,
    bos: Option<u32>,
    eos: Option<u32>,
    eot: Option<u32>,
    unk: Option<u32>,
    /// The separator (`tokenizer.ggml.seperator_token_id`; WordPiece ends
    /// an encoding with it).
    sep: Option<u32>,
    eog: Vec<u32>,
    add_bos: bool,
    add_eos: bool,
    add_space_prefix: bool,
    clean_spaces: bool,
    /// WordPiece's normalization.
    normalizer: wpm::Normalizer,
    /// WordPiece's automaton of the reversed token texts (`None` for
    /// other kinds).
    wpm_finder: Option<Finder>,
    /// Unigram's charsmap and lattice automaton (`None` for other kinds).
    ugm: Option<ugm::Ugm>,
    /// The file's template; a wrongly typed one fails only a chat render
    /// (tokenizing needs none).
    chat_template: Result<Option<String>, MetadataError>,
    /// What llama.cpp would warn of while loading it.
    warnings: Vec<String>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("kind", &self.kind)
            .field("pre", &self.pre_name)
            .field("n_tokens", &self.tokens.len())
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .field("add_bos", &self.add_bos)
            .finish_non_exhaustive()
    }
}

// llama.cpp's LLAMA_TOKEN_TYPE_* values.
fn attr_of_type(t: i32) -> u32 {
    match t {
        1 => attr::NORMAL,
        2 => attr::UNKNOWN,
        3 => attr::CONTROL,
        4 => attr::USER_DEFINED,
        5 => attr::UNUSED,
        6 => attr::BYTE,
        _ => 0,
    }
}

const EOT_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
];
const FIM_PAD: &[&str] = &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"];
const FIM_REP: &[&str] = &[
    "<|fim_repo|>",
    "<|repo_name|>",
    "<fim-repo>",
    "<REPO>",
    "<reponame>",
];
const FIM_SEP: &[&str] = &["<|file_sep|>"];
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];

fn opt_bool(md: &Metadata<'_>, key: &str) -> Result<Option<bool>, MetadataError> {
    if md.contains_key(key) {
        md.get_bool(key).map(Some)
    } else {
        Ok(None)
    }
}

/// A special token id from the metadata: the default when the key is
/// absent or its value is out of the vocabulary (as llama.cpp warns, in
/// `warnings`, and keeps the default), a default out of the vocabulary
/// dropped.
fn special_id(
    md: &Metadata<'_>,
    key: &str,
    default: Option<u32>,
    n: usize,
    warnings: &mut Vec<String>,
) -> Result<Option<u32>, MetadataError> {
    let default = default.filter(|&d| (d as usize) < n);
    match md.get(key) {
        None => Ok(default),
        Some(v) => match v.as_u64() {
            Some(id) if (id as usize) < n && id <= u32::MAX as u64 => Ok(Some(id as u32)),
            Some(id) => {
                let using = match default {
                    Some(d) => format!("using default id {d}"),
                    None => "using none".to_string(),
                };
                warnings.push(format!(
                    "bad special token: {key} = {id} is not below the vocabulary's {n} tokens; \
                     {using}"
                ));
                Ok(default)
            }
            None => Err(MetadataError::WrongType {
                key: key.to_string(),
                expected: "non-negative integer",
                found: value_type(v),
            }),
        },
    }
}

fn value_type(v: &Value<'_>) -> gguf_loader::ValueType {
    v.value_type()
}

impl Tokenizer {
    /// The tokenizer of the GGUF open in `loader`.
    ///
    /// Errs when `tokenizer.ggml.model` is not `gpt2`, `llama`, `gemma4`,
    /// `bert` or `t5`, when `tokenizer.ggml.pre` names a pre-tokenizer
    /// llama.cpp does not know, when a `tokenizer.*` key is missing,
    /// mistyped or too short, or when a table cannot be built (a `t5`
    /// charsmap that would read past itself, or no unknown token).
    pub fn from_loader(loader: &MmapGGUFLoader) -> Result<Self, TokenizerError> {
        Self::from_metadata(loader.metadata())
    }

    /// Whether [`Tokenizer::from_metadata`] reads `key`: the
    /// `tokenizer.*` keys, and `general.name` and `general.architecture`
    /// (which some of llama.cpp's per-model settings go by). The same
    /// tokenizer is built from these keys alone (a small GGUF of them
    /// makes a tokenizer portable: the Python package pickles it so).
    pub fn reads_key(key: &str) -> bool {
        key.starts_with("tokenizer.") || key == "general.name" || key == "general.architecture"
    }

    /// The keys of `md` that [`Tokenizer::reads_key`] names, as a GGUF of
    /// their own (no tensors; the values copied as they are, byte strings
    /// and all): [`Tokenizer::from_gguf_bytes`] makes the same tokenizer of
    /// it, in another process or later, without the model's file.
    pub fn metadata_gguf(md: &Metadata<'_>) -> std::io::Result<Vec<u8>> {
        let mut w = gguf_loader::GgufWriter::new();
        for (key, value) in md.iter().filter(|(k, _)| Self::reads_key(k)) {
            w.add_value(key, *value);
        }
        w.to_bytes()
    }

    /// The tokenizer of the GGUF in `bytes` (as [`Tokenizer::metadata_gguf`]
    /// writes one): `Err` with the parse error where `bytes` is no valid
    /// GGUF, else as [`Tokenizer::from_metadata`].
    pub fn from_gguf_bytes(bytes: &[u8]) -> Result<Self, TokenizerError> {
        let file = gguf_loader::GgufFile::parse(bytes).map_err(TokenizerError::Format)?;
        Self::from_metadata(&file.metadata)
    }

    /// The tokenizer described by `md` (see [`Tokenizer::from_loader`]).
    /// It reads no key but those [`Tokenizer::reads_key`] names.
    pub fn from_metadata(md: &Metadata<'_>) -> Result<Self, TokenizerError> {
        let model = md.get_str("tokenizer.ggml.model")?;
        let pre_key = "tokenizer.ggml.pre";
        let pre_name = if model == "gemma4" {
            // llama.cpp's choice, whatever the key says.
            "gemma4"
        } else if md.contains_key(pre_key) {
            md.get_str(pre_key)?
        } else {
            "default"
        };
        let (kind, default_bos, default_eos, default_unk) = match model {
            "llama" => (TokenizerKind::Spm, Some(1), Some(2), Some(0)),
            "gpt2" => (TokenizerKind::Bpe, Some(11), Some(11), None),
            // SentencePiece-style BPE: UTF-8 tokens, `▁` for spaces.
            "gemma4" => (TokenizerKind::Bpe, None, None, None),
            "bert" => (TokenizerKind::Wpm, Some(101), None, Some(100)),
            "t5" => (TokenizerKind::Ugm, None, Some(1), Some(2)),
            other => return Err(TokenizerError::UnsupportedModel(other.to_string())),
        };
        let (pre, mut add_bos, mut add_eos, mut add_space_prefix, mut clean_spaces) = match kind {
            TokenizerKind::Bpe => {
                let pre = PreTokenizer::new(pre_name)
                    .ok_or_else(|| TokenizerError::UnknownPre(pre_name.to_string()))?;
                let (b, c) = (pre.add_bos, pre.clean_spaces);
                (Some(pre), b, false, false, c)
            }
            TokenizerKind::Spm => (None, true, false, true, false),
            TokenizerKind::Wpm => (None, true, false, false, true),
            TokenizerKind::Ugm => (None, false, true, false, false),
        };
        if let Some(b) = opt_bool(md, "tokenizer.ggml.add_space_prefix")? {
            add_space_prefix = b;
        }

        // Counted before the arrays are collected.
        let count = |key: &str| {
            md.get(key)
                .and_then(|v| v.as_array())
                .map_or(0, |a| usize::try_from(a.len()).unwrap_or(usize::MAX))
        };
        let n = count("tokenizer.ggml.tokens");
        if n > MAX_VOCAB {
            return Err(TokenizerError::VocabSize(n));
        }
        let words = md.get_str_array("tokenizer.ggml.tokens")?;
        let n = words.len();
        if n == 0 {
            return Err(TokenizerError::VocabSize(n));
        }
        let merge_words = if kind == TokenizerKind::Bpe {
            let m = count("tokenizer.ggml.merges");
            if m > MAX_VOCAB {
                return Err(TokenizerError::MergeCount(m));
            }
            Some(md.get_str_array("tokenizer.ggml.merges")?)
        } else {
            None
        };
        // The tables are many small allocations, which cannot fail softly:
        // ask for their sum once, fallibly, so that a vocabulary that will
        // not fit (under a memory limit) is an error instead of an abort.
        let text: usize = words.iter().map(|w| w.len()).sum();
        let wordpiece = kind == TokenizerKind::Wpm;
        if wordpiece && text > MAX_WORDPIECE_TEXT {
            return Err(TokenizerError::WordPieceText(text));
        }
        let unigram = kind == TokenizerKind::Ugm;
        if unigram && text > MAX_UNIGRAM_TEXT {
            return Err(TokenizerError::UnigramText(text));
        }
        let merge_count = merge_words.as_ref().map_or(0, |m| m.len());
        let merge_text = merge_words
            .as_ref()
            .map_or(0, |m| m.iter().map(|w| w.len()).sum());
        let need = table_bytes(n, text, merge_count, merge_text)
            // WordPiece's or Unigram's automaton while it is built.
            .saturating_add(if wordpiece || unigram {
                text.saturating_mul(32)
            } else {
                0
            });
        if Vec::<u8>::new().try_reserve_exact(need).is_err() {
            return Err(TokenizerError::OutOfMemory(need));
        }
        let scores = if md.contains_key("tokenizer.ggml.scores") {
            let key = "tokenizer.ggml.scores";
            let s = match md.get_f32_array(key) {
                Ok(s) => s,
                Err(MetadataError::WrongElementType { .. }) => md
                    .get_i32_array(key)?
                    .into_iter()
                    .map(|x| x as f32)
                    .collect(),
                Err(e) => return Err(e.into()),
            };
            if s.len() < n {
                return Err(TokenizerError::TooShort {
                    key,
                    found: s.len(),
                    expected: n,
                });
            }
            s
        } else {
            vec![0.0; n]
        };
        let mut attrs = if md.contains_key("tokenizer.ggml.token_type") {
            let key = "tokenizer.ggml.token_type";
            let t = md.get_i32_array(key)?;
            if t.len() < n {
                return Err(TokenizerError::TooShort {
                    key,
                    found: t.len(),
                    expected: n,
                });
            }
            t.iter().take(n).map(|&t| attr_of_type(t)).collect()
        } else {
            vec![attr::NORMAL; n]
        };
        let mut texts = Packed::<String>::with_capacity(n, text);
        // The attributes from `token_type` alone: llama.cpp builds its
        // Unigram tables from these, before it marks tokens by their text.
        let type_attrs = if kind == TokenizerKind::Ugm {
            attrs.clone()
        } else {
            Vec::new()
        };
        for (i, w) in words.iter().enumerate() {
            // llama.cpp reads each text as a C string: up to its first NUL.
            let w = c_str(w);
            if w.is_empty() {
                texts.push(&format!("[EMPTY_{i}]"));
            } else {
                texts.push(w);
            }
        }
        // A later duplicate wins, as in llama.cpp.
        let tokens = Indexed::new(texts, Duplicates::Last);

        let mut keys = Packed::<String>::with_capacity(merge_count, merge_text);
        for m in merge_words.iter().flatten() {
            // A C string in llama.cpp, as the tokens.
            let m = c_str(m);
            // Split at the first space after the first byte, as llama.cpp
            // (a space is one byte, so both sides are whole UTF-8): the
            // key is the two sides with one space between.
            if m.as_bytes().iter().skip(1).any(|&b| b == b' ') {
                keys.push(m);
            } else {
                keys.push(" ");
            }
        }
        // The first merge of a text gives its rank.
        let merges = Indexed::new(keys, Duplicates::First);

        let mut warnings = Vec::new();
        let mut bos = special_id(
            md,
            "tokenizer.ggml.bos_token_id",
            default_bos,
            n,
            &mut warnings,
        )?;
        if matches!(pre_name, "chatglm-bpe" | "glm4" | "glm5") && kind == TokenizerKind::Bpe {
            bos = None;
        }
        let eos = special_id(
            md,
            "tokenizer.ggml.eos_token_id",
            default_eos,
            n,
            &mut warnings,
        )?;
        let sep = special_id(
            md,
            "tokenizer.ggml.seperator_token_id",
            (kind == TokenizerKind::Wpm).then_some(102),
            n,
            &mut warnings,
        )?;
        // BertNormalizer's options, as llama.cpp reads them (both default
        // to true; strip_accents to lowercase's value).
        let lowercase = opt_bool(md, "tokenizer.ggml.normalizer.lowercase")?.unwrap_or(true);
        let normalizer = wpm::Normalizer {
            lowercase,
            strip_accents: opt_bool(md, "tokenizer.ggml.normalizer.strip_accents")?
                .unwrap_or(lowercase),
        };
        let mut eot = special_id(md, "tokenizer.ggml.eot_token_id", None, n, &mut warnings)?;
        let mut eom = special_id(md, "tokenizer.ggml.eom_token_id", None, n, &mut warnings)?;
        let unk = special_id(
            md,
            "tokenizer.ggml.unknown_token_id",
            default_unk,
            n,
            &mut warnings,
        )?;
        let mut fim = [
            special_id(
                md,
                "tokenizer.ggml.fim_pad_token_id",
                None,
                n,
                &mut warnings,
            )?,
            special_id(
                md,
                "tokenizer.ggml.fim_rep_token_id",
                None,
                n,
                &mut warnings,
            )?,
            special_id(
                md,
                "tokenizer.ggml.fim_sep_token_id",
                None,
                n,
                &mut warnings,
            )?,
        ];
        if let Some(b) = opt_bool(md, "tokenizer.ggml.add_bos_token")? {
            add_bos = b;
        }
        if let Some(b) = opt_bool(md, "tokenizer.ggml.add_eos_token")? {
            add_eos = b;
        }
        // llama.cpp turns BOS on for gemma4 whatever the metadata says.
        if pre.as_ref().is_some_and(|p| p.newline_words) {
            add_bos = true;
        }
        if kind == TokenizerKind::Spm {
            clean_spaces = false;
        }

        // Special tokens llama.cpp finds by their text: each found one is
        // made a control token.
        // (The first token, in id order, that is the last of its text.)
        let by_text = |list: &[&str]| list.iter().filter_map(|t| tokens.id(t)).min();
        let make_control = |id: Option<u32>, attrs: &mut Vec<u32>| {
            if let Some(id) = id {
                attrs[id as usize] |= attr::CONTROL;
            }
        };
        if eot.is_none() {
            eot = by_text(EOT_TEXTS);
            make_control(eot, &mut attrs);
        }
        if eom.is_none() {
            eom = by_text(&["<|eom_id|>"]);
            make_control(eom, &mut attrs);
        }
        for (slot, list) in fim.iter_mut().zip([FIM_PAD, FIM_REP, FIM_SEP]) {
            if slot.is_none() {
                *slot = by_text(list);
                make_control(*slot, &mut attrs);
            }
        }
        // The prefix/suffix/middle FIM tokens are also made control tokens.
        for list in [
            &[
                "<|fim_prefix|>",
                "<fim-prefix>",
                "<fim_prefix>",
                "<｜fim▁begin｜>",
                "<PRE>",
                "▁<PRE>",
                "<|code_prefix|>",
                "<|prefix|>",
            ][..],
            &[
                "<|fim_suffix|>",
                "<fim-suffix>",
                "<fim_suffix>",
                "<｜fim▁hole｜>",
                "<SUF>",
                "▁<SUF>",
                "<|code_suffix|>",
                "<|suffix|>",
            ][..],
            &[
                "<|fim_middle|>",
                "<fim-middle>",
                "<fim_middle>",
                "<｜fim▁end｜>",
                "<MID>",
                "▁<MID>",
                "<|code_middle|>",
                "<|middle|>",
            ][..],
        ] {
            let found = by_text(list);
            make_control(found, &mut attrs);
        }
        for i in 0..n {
            if attrs[i] & attr::CONTROL != 0 && tokens[i].contains("unused") {
                attrs[i] |= attr::UNUSED;
            }
        }
        let mut eog: Vec<u32> = fim.iter().flatten().copied().collect();
        // (`eog` is sorted below.)
        for id in EOG_TEXTS.iter().filter_map(|t| tokens.id(t)) {
            eog.push(id);
            attrs[id as usize] |= attr::CONTROL;
        }
        for (i, t) in tokens.iter().enumerate() {
            if matches!(
                t,
                "<|channel|>" | "<|message|>" | "<|start|>" | "<|constrain|>"
            ) {
                attrs[i] = attr::USER_DEFINED;
            }
        }
        eog.extend([eos, eot, eom].into_iter().flatten());
        eog.sort_unstable();
        eog.dedup();
        let text_of = |id: &u32| &tokens[*id as usize];
        let has = |eog: &[u32], s: &str| eog.iter().any(|id| text_of(id) == s);
        if (has(&eog, "<|return|>") && has(&eog, "<|call|>")
            || has(&eog, "<|calls|>") && has(&eog, "<|flush|>"))
            && has(&eog, "<|end|>")
        {
            if let Some(pos) = eog.iter().position(|id| text_of(id) == "<|end|>") {
                let id = eog.remove(pos);
                attrs[id as usize] = attr::USER_DEFINED;
            }
        }
        if has(&eog, "<|tool_response>") || has(&eog, "<|plamo:eos|>") {
            if let Some(pos) = eog.iter().position(|id| text_of(id) == "</s>") {
                let id = eog.remove(pos);
                attrs[id as usize] = attr::NORMAL;
            }
        }

        let mut special: Vec<u32> = (0..n as u32)
            .filter(|&i| {
                attrs[i as usize] & (attr::CONTROL | attr::USER_DEFINED | attr::UNKNOWN) != 0
            })
            .collect();
        // Longest first, in libstdc++'s `std::sort` order as llama.cpp
        // sorts them (not the ids' among texts of one length: introsort is
        // not stable), which decides between overlapping specials of one
        // length.
        std_sort::std_sort(&mut special, &|&a: &u32, &b: &u32| {
            tokens[a as usize].len() > tokens[b as usize].len()
        });

        // Per-model attributes llama.cpp sets by name (lowercased byte by
        // byte, as `std::tolower` there), architecture or pre-tokenizer.
        let str_or_empty = |key: &str| {
            if md.contains_key(key) {
                md.get_str(key).unwrap_or("")
            } else {
                ""
            }
        };
        let name = str_or_empty("general.name").to_ascii_lowercase();
        let raw_pre = str_or_empty(pre_key);
        let arch = str_or_empty("general.architecture");
        let set_lstrip = |attrs: &mut Vec<u32>, text: &str| {
            if let Some(id) = tokens.id(text) {
                attrs[id as usize] |= attr::LSTRIP;
            }
        };
        if ["jina-v2-de", "jina-v2-es", "jina-v2-code"]
            .iter()
            .any(|p| raw_pre.contains(p))
            || ["nomic-bert-moe", "jina-bert-v3"]
                .iter()
                .any(|a| arch.contains(a))
        {
            set_lstrip(&mut attrs, "<mask>");
        } else if name.contains("phi-3") || name.contains("phi3") {
            for &id in &special {
                attrs[id as usize] |= attr::RSTRIP;
            }
            for (t, on) in [
                ("</s>", true),
                ("<unk>", false),
                ("<s>", false),
                ("<|endoftext|>", false),
            ] {
                if let Some(id) = tokens.id(t) {
                    if on {
                        attrs[id as usize] |= attr::RSTRIP;
                    } else {
                        attrs[id as usize] &= !attr::RSTRIP;
                    }
                }
            }
        } else if name.contains("modern-bert") {
            set_lstrip(&mut attrs, "[MASK]");
        }

        let spm_glue = if kind == TokenizerKind::Spm {
            spm::glue(tokens.texts())
        } else {
            Vec::new()
        };
        let byte_chars = pre::byte_to_char_table();
        let mut byte_of_char = [None; 0x200];
        for (b, &c) in byte_chars.iter().enumerate() {
            if let Some(slot) = byte_of_char.get_mut(c as usize) {
                *slot = Some(b as u8);
            }
        }
        let chat_template = if md.contains_key("tokenizer.chat_template") {
            md.get_str("tokenizer.chat_template")
                .map(|t| Some(t.to_string()))
        } else {
            Ok(None)
        };

        // One special a text (the first in that order takes every
        // occurrence, so later ones of the same text never match; llama.cpp
        // refuses duplicate texts outright).
        let mut seen_text = HashSet::with_capacity(special.len());
        special.retain(|&id| seen_text.insert(&tokens[id as usize]));
        drop(seen_text);
        let finder = special_finder(&special, &tokens);
        let wpm_finder = if wordpiece {
            Some(wpm::reversed_finder(&tokens).ok_or(TokenizerError::OutOfMemory(need))?)
        } else {
            None
        };
        let ugm = if unigram {
            let remove_extra_whitespaces =
                opt_bool(md, "tokenizer.ggml.remove_extra_whitespaces")?.unwrap_or(false);
            Some(ugm::Ugm::new(
                md,
                &tokens,
                &scores,
                &type_attrs,
                &attrs,
                unk,
                add_space_prefix,
                remove_extra_whitespaces,
            )?)
        } else {
            None
        };
        let mut tok = Tokenizer {
            kind,
            pre_name: pre_name.to_string(),
            tokens,
            scores: scores.into_iter().take(n).collect(),
            attrs,
            merges,
            pre,
            byte_chars,
            byte_of_char,
            spm_glue,
            special_finder: finder,
            special,
            pieces: Packed::<Vec<u8>>::with_capacity(0, 0),
            bos,
            eos,
            eot,
            unk,
            sep,
            eog,
            add_bos,
            add_eos,
            add_space_prefix,
            clean_spaces,
            normalizer,
            wpm_finder,
            ugm,
            chat_template,
            warnings,
        };
        // A piece is at most its text, except in a `gpt2` vocabulary whose
        // text holds characters outside the byte alphabet: each is spelled
        // out with the whole text (as llama.cpp does), quadratic in the
        // text's length. The pieces may pass the texts by PIECE_SLACK in all.
        let text = tok.tokens.texts().total_len();
        let mut pieces = Packed::<Vec<u8>>::with_capacity(n, text);
        let limit = text + PIECE_SLACK;
        for id in 0..n as u32 {
            tok.render_piece(id, limit, &mut pieces)
                .then_some(())
                .ok_or(TokenizerError::Pieces { id })?;
        }
        tok.pieces = pieces;
        Ok(tok)
    }

    /// The algorithm (`gpt2` / `gemma4` BPE, `llama` SentencePiece, `bert`
    /// WordPiece or `t5` Unigram).
    pub fn kind(&self) -> TokenizerKind {
        self.kind
    }

    /// The pre-tokenizer name (`tokenizer.ggml.pre`, `"default"` when absent).
    pub fn pre(&self) -> &str {
        &self.pre_name
    }

    /// The number of tokens in the vocabulary.
    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    /// The beginning-of-sequence token, if the vocabulary has one.
    pub fn bos(&self) -> Option<u32> {
        self.bos
    }

    /// The end-of-sequence token, if the vocabulary has one.
    pub fn eos(&self) -> Option<u32> {
        self.eos
    }

    /// The end-of-turn token (`<|im_end|>`, `<end_of_turn>`, ...), if any.
    pub fn eot(&self) -> Option<u32> {
        self.eot
    }

    /// The unknown token, if any.
    pub fn unk(&self) -> Option<u32> {
        self.unk
    }

    /// True when generation should stop at `id`: EOS, end-of-turn and the
    /// other end-of-generation tokens llama.cpp recognises.
    pub fn is_eog(&self, id: u32) -> bool {
        self.eog.binary_search(&id).is_ok()
    }

    /// The end-of-generation tokens, ascending.
    pub fn eog_tokens(&self) -> &[u32] {
        &self.eog
    }

    /// True when `encode(.., add_special = true, ..)` prepends BOS (CLS
    /// for WordPiece, whatever `add_bos_token` says, as llama.cpp does).
    pub fn add_bos(&self) -> bool {
        (self.add_bos || self.kind == TokenizerKind::Wpm) && self.bos.is_some()
    }

    /// True when `encode(.., add_special = true, ..)` appends EOS (never
    /// for WordPiece, which appends SEP: [`sep`](Self::sep)).
    pub fn add_eos(&self) -> bool {
        self.add_eos && self.eos.is_some() && self.kind != TokenizerKind::Wpm
    }

    /// The separator token (`tokenizer.ggml.seperator_token_id`, 102 by
    /// default for WordPiece), which WordPiece's
    /// `encode(.., add_special = true, ..)` appends.
    pub fn sep(&self) -> Option<u32> {
        self.sep
    }

    /// True when [`decode`](Self::decode) cleans up spaces as llama.cpp's
    /// `clean_up_tokenization_spaces` does (`" ?"` → `"?"`, `" 's"` →
    /// `"'s"`…; GPT-2-style vocabularies): its text then differs from the
    /// pieces a [`StreamDecoder`] gives, and neither round-trips every text.
    pub fn cleans_spaces(&self) -> bool {
        self.clean_spaces
    }

    /// `tokenizer.chat_template`, if the file has one (and it is a UTF-8
    /// string: see [`chat_template_error`](Self::chat_template_error)).
    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_ref().ok().and_then(|t| t.as_deref())
    }

    /// What llama.cpp warns of while loading this tokenizer and this one
    /// works around as it does (a special token id out of the vocabulary
    /// is replaced by the default): one line each, for the caller to show.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Why the file's `tokenizer.chat_template` cannot be used (not a
    /// string, or not UTF-8): an error for a chat render only, since
    /// tokenizing needs no template.
    pub fn chat_template_error(&self) -> Option<&MetadataError> {
        self.chat_template.as_ref().err()
    }

    /// The vocabulary text of `id` (`None` when out of range).
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize)
    }

    /// The attribute bits ([`attr`]) of `id` (0 when out of range).
    pub fn token_attr(&self, id: u32) -> u32 {
        self.attrs.get(id as usize).copied().unwrap_or(0)
    }

    /// The score of `id` (`tokenizer.ggml.scores`, 0 when absent or out of range).
    pub fn token_score(&self, id: u32) -> f32 {
        self.scores.get(id as usize).copied().unwrap_or(0.0)
    }

    /// The id of the token whose vocabulary text is exactly `text`.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.tokens.id(text)
    }

    /// Tokenizes `text` as llama.cpp's `llama_tokenize` does: with
    /// `add_special`, BOS (and EOS) as the vocabulary asks (WordPiece: CLS
    /// before and SEP after, always); with `parse_special`, control-token
    /// text such as `<|im_start|>` becomes that token (user-defined tokens
    /// always do). Never fails: bytes no token covers fall back to byte
    /// tokens, or are dropped when the vocabulary has none; a WordPiece
    /// word that cannot be covered whole is the unknown token, and so is
    /// a run of code points no Unigram token covers.
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<u32> {
        let mut out = Vec::new();
        let fragments = if text.is_empty() {
            Vec::new()
        } else {
            self.partition(text, parse_special)
        };
        if add_special && self.add_bos() {
            out.extend(self.bos);
        }
        // The words met lately, across fragments (SentencePiece, BPE).
        let recent = || table::Recent::new(text.len());
        match self.kind {
            TokenizerKind::Spm => {
                let mut recent = recent();
                let mut prev_special = true;
                for f in fragments {
                    match f {
                        Fragment::Text(a, b) => {
                            let mut s = String::with_capacity(b - a + 3);
                            if self.add_space_prefix && prev_special {
                                s.push(' ');
                            }
                            s.push_str(&text[a..b]);
                            let s = s.replace(' ', "\u{2581}");
                            spm::tokenize(self, &s, &mut out, &mut recent);
                            prev_special = false;
                        }
                        Fragment::Token(id) => {
                            out.push(id);
                            prev_special = true;
                        }
                    }
                }
            }
            TokenizerKind::Bpe => {
                let mut recent = recent();
                for f in fragments {
                    match f {
                        Fragment::Text(a, b) => {
                            bpe::tokenize(self, &text[a..b], &mut out, &mut recent)
                        }
                        Fragment::Token(id) => out.push(id),
                    }
                }
            }
            TokenizerKind::Wpm => {
                for f in fragments {
                    match f {
                        Fragment::Text(a, b) => {
                            wpm::tokenize(self, &text[a..b], self.normalizer, &mut out)
                        }
                        Fragment::Token(id) => out.push(id),
                    }
                }
                if add_special {
                    out.extend(self.sep);
                }
                return out;
            }
            TokenizerKind::Ugm => {
                for f in fragments {
                    match f {
                        Fragment::Text(a, b) => {
                            if let Some(u) = &self.ugm {
                                u.tokenize(&text[a..b], &mut out);
                            }
                        }
                        Fragment::Token(id) => out.push(id),
                    }
                }
            }
        }
        if add_special && self.add_eos() {
            out.extend(self.eos);
        }
        out
    }

    /// [`Tokenizer::encode`] of each text, in order, the texts shared out
    /// among the threads of rayon's current pool (a dataset's rows, say).
    ///
    /// ```no_run
    /// # let tok: gguf_loader_llm::Tokenizer = unimplemented!();
    /// let rows = ["Hello world", "Bonjour le monde"];
    /// let ids = tok.encode_batch(&rows, true, false);
    /// assert_eq!(ids[1], tok.encode(rows[1], true, false));
    /// ```
    pub fn encode_batch<S: AsRef<str> + Sync>(
        &self,
        texts: &[S],
        add_special: bool,
        parse_special: bool,
    ) -> Vec<Vec<u32>> {
        use rayon::prelude::*;
        texts
            .par_iter()
            .map(|t| self.encode(t.as_ref(), add_special, parse_special))
            .collect()
    }

    /// The first token that `text` holds the text of and that only
    /// `parse_special` makes a token (a control token such as
    /// `<|im_end|>`, or the unknown token's text), if any: a check for text
    /// from someone else before it goes into a prompt encoded with
    /// `parse_special` (see [`crate::chat`]). User-defined tokens are
    /// tokens either way and not reported.
    pub fn special_in(&self, text: &str) -> Option<u32> {
        if text.is_empty() {
            return None;
        }
        self.partition(text, true)
            .into_iter()
            .find_map(|f| match f {
                Fragment::Token(id) if self.needs_parse_special(id) => Some(id),
                _ => None,
            })
    }

    /// Whether `id`'s text becomes the token only with `parse_special`
    /// (control and unknown tokens; user-defined ones always do).
    fn needs_parse_special(&self, id: u32) -> bool {
        self.attrs[id as usize] & (attr::CONTROL | attr::UNKNOWN) != 0
    }

    /// Where the special tokens occur in `text`, found by walking the
    /// finder's automaton over it: the patterns that end at a byte are those
    /// of the state it is in (every special that is a suffix of the text
    /// read so far). `None` where there is no finder (or the text passes
    /// 4 GiB).
    ///
    /// The first walk counts each state's visits, and so each present
    /// special's occurrences (overlapping ones counted). The specials with
    /// the fewest are listed, up to a few occurrences per byte of text in
    /// all ([`Found::at`], from a second walk); the rest, present but too
    /// frequent, are searched for in the text left free
    /// ([`Found::searched`]). (Specials that are suffixes of one another,
    /// such as `a` to `a`×300 over a run of `a`, occur hundreds of times a
    /// byte.)
    fn find_specials(&self, text: &str) -> Option<Found> {
        let budget = (text.len() as u64)
            .saturating_mul(4)
            .saturating_add(1 << 16);
        self.find_specials_within(text, budget)
    }

    /// [`Self::find_specials`] listing at most `budget` occurrences.
    fn find_specials_within(&self, text: &str, mut budget: u64) -> Option<Found> {
        let f = self.special_finder.as_ref()?;
        u32::try_from(text.len()).ok()?;
        // The nearest pattern end of each byte's state: where the patterns
        // that end at that byte begin, down the dictionary links.
        let walk = |on_end: &mut dyn FnMut(usize, u32)| {
            let mut s = ROOT;
            for (i, &b) in text.as_bytes().iter().enumerate() {
                s = f.next(s, b);
                if let Some(d) = f.nearest_end(s) {
                    on_end(i + 1, d);
                }
            }
        };
        // Visits of each such state. (A run of one byte stays in one
        // state: counted without a lookup.)
        let mut visits: HashMap<u32, u64> = HashMap::new();
        let mut run: Option<(u32, u64)> = None;
        walk(&mut |_, d| match &mut run {
            Some((last, n)) if *last == d => *n += 1,
            _ => {
                if let Some((last, n)) = run.replace((d, 1)) {
                    *visits.entry(last).or_default() += n;
                }
            }
        });
        if let Some((last, n)) = run {
            *visits.entry(last).or_default() += n;
        }
        // Each pattern end's occurrences: its own visits and those of the
        // ends whose dictionary links lead to it (deeper, so numbered
        // higher: taken highest first, each is complete when taken).
        let mut pending: BTreeMap<u32, u64> = visits.into_iter().collect();
        let mut count: Vec<(u32, u64)> = Vec::new();
        while let Some((s, n)) = pending.pop_last() {
            if let Some(d) = f.next_end(s) {
                *pending.entry(d).or_default() += n;
            }
            count.push((s, n));
        }
        // The least frequent listed while the budget lasts (a state's
        // patterns, one text, together), none found more than once in 8
        // bytes: a search of the free text costs less than placing each of
        // those. The rest are searched for.
        let mut by_count: Vec<(u64, u32)> = count.iter().map(|&(s, n)| (n, s)).collect();
        by_count.sort_unstable();
        let frequent = text.len() as u64 / 8 + 64;
        let mut listed: HashSet<u32> = HashSet::new();
        let mut searched = Vec::new();
        for (n, s) in by_count {
            let cost = n.saturating_mul(f.patterns_at(s).count() as u64);
            if n <= frequent && cost <= budget {
                budget -= cost;
                listed.insert(s);
            } else {
                searched.extend(f.patterns_at(s).map(|k| k as usize));
            }
        }
        // From each end, the nearest listed one down the dictionary links
        // (itself excluded), shallowest first so that each link's is known.
        count.sort_unstable_by_key(|&(s, _)| s);
        let mut below: HashMap<u32, Option<u32>> = HashMap::with_capacity(count.len());
        for &(s, _) in &count {
            let next = f.next_end(s).and_then(|d| {
                if listed.contains(&d) {
                    Some(d)
                } else {
                    below[&d]
                }
            });
            below.insert(s, next);
        }
        let mut at: HashMap<usize, Vec<u32>> = HashMap::new();
        if !listed.is_empty() {
            walk(&mut |end, d| {
                let mut x = if listed.contains(&d) {
                    Some(d)
                } else {
                    below[&d]
                };
                while let Some(s) = x {
                    for k in f.patterns_at(s) {
                        let len = self.tokens[self.special[k as usize] as usize].len();
                        at.entry(k as usize).or_default().push((end - len) as u32);
                    }
                    x = below[&s];
                }
            });
        }
        Some(Found { at, searched })
    }

    /// Splits `text` at the special tokens in it (longest first), as
    /// llama.cpp's `tokenizer_st_partition`: each special in turn, in
    /// priority order, takes its occurrences left to right in the parts of
    /// the text no special has taken yet (with the spaces around it where
    /// it strips them).
    fn partition(&self, text: &str, parse_special: bool) -> Vec<Fragment> {
        // Without a finder, every special is searched for in turn.
        let found = self.find_specials(text).unwrap_or_else(|| Found {
            at: HashMap::new(),
            searched: (0..self.special.len()).collect(),
        });
        self.partition_at(text, &found, parse_special)
    }

    /// [`Self::partition`] from what [`Self::find_specials`] found: the
    /// taken spans kept by their start, so that a listed occurrence is
    /// checked against its neighbours, not looked for in the whole text (a
    /// million specials each once in a 10 MB text: 1M searches of the
    /// text), and a frequent special is searched for in the free parts
    /// only. Its cost is the occurrences' and the frequent specials' times
    /// the free text's, not every special's times the text's.
    fn partition_at(&self, text: &str, found: &Found, parse_special: bool) -> Vec<Fragment> {
        let bytes = text.as_bytes();
        // Taken spans (the token and the spaces it strips): start -> (end, id).
        let mut taken: BTreeMap<usize, (usize, u32)> = BTreeMap::new();
        let mut order: Vec<usize> = found.at.keys().chain(&found.searched).copied().collect();
        order.sort_unstable();
        for k in order {
            let id = self.special[k];
            let a = self.attrs[id as usize];
            if !parse_special && self.needs_parse_special(id) {
                continue;
            }
            let needle = &self.tokens[id as usize];
            let len = needle.len();
            // Takes `start..start + len`, free from `free_start` to
            // `free_end`, with the spaces it strips there; returns the end.
            let take = |taken: &mut BTreeMap<usize, (usize, u32)>,
                        start: usize,
                        free_start: usize,
                        free_end: usize| {
                let mut left = start;
                if a & attr::LSTRIP != 0 {
                    while left > free_start && is_c_space(bytes[left - 1]) {
                        left -= 1;
                    }
                }
                let mut right = start + len;
                if a & attr::RSTRIP != 0 {
                    while right < free_end && is_c_space(bytes[right]) {
                        right += 1;
                    }
                }
                taken.insert(left, (right, id));
                right
            };
            if let Some(starts) = found.at.get(&k) {
                for &start in starts {
                    let (start, end) = (start as usize, start as usize + len);
                    // The span before `end` that ends last: it overlaps
                    // this occurrence, or it bounds the free part on the left.
                    let before = taken.range(..end).next_back().map(|(_, &(e, _))| e);
                    if before.is_some_and(|e| e > start) {
                        continue;
                    }
                    let free_end = taken.range(end..).next().map_or(bytes.len(), |(&s, _)| s);
                    take(&mut taken, start, before.unwrap_or(0), free_end);
                }
            } else {
                let free: Vec<(usize, usize)> = fragments(&taken, bytes.len())
                    .into_iter()
                    .filter_map(|f| match f {
                        Fragment::Text(s, e) => Some((s, e)),
                        Fragment::Token(_) => None,
                    })
                    .collect();
                for (mut start, end) in free {
                    while let Some(p) = text[start..end].find(needle) {
                        start = take(&mut taken, start + p, start, end);
                    }
                }
            }
        }
        fragments(&taken, bytes.len())
    }

    /// The bytes token `id` stands for, as llama.cpp's `token_to_piece`
    /// with no stripping: control and unknown tokens give their text with
    /// `special`, nothing without; a byte token gives its byte (so a piece
    /// may be part of a UTF-8 character). Out-of-range ids give nothing.
    pub fn token_to_piece(&self, id: u32, special: bool) -> &[u8] {
        let Some(a) = self.attrs.get(id as usize) else {
            return &[];
        };
        if !special && a & (attr::UNKNOWN | attr::CONTROL) != 0 {
            return &[];
        }
        &self.pieces[id as usize]
    }

    /// Appends token `id`'s bytes as decoding writes them to `pieces` as
    /// its next piece; false, with nothing appended, when they would take
    /// the pieces past `limit` bytes in all.
    fn render_piece(&self, id: u32, limit: usize, pieces: &mut Packed<Vec<u8>>) -> bool {
        let text = &self.tokens[id as usize];
        let a = self.attrs[id as usize];
        let out = pieces.tail();
        // SentencePiece's `▁` back to spaces (a byte loop: most texts are
        // a few bytes, shorter than a `str` search takes to set up).
        let unescape = |out: &mut Vec<u8>| {
            let mut rest = text.as_bytes();
            while let Some(p) = rest.iter().position(|&b| b == SPACE[0]) {
                out.extend_from_slice(&rest[..p]);
                if rest[p..].starts_with(SPACE) {
                    out.push(b' ');
                    rest = &rest[p + SPACE.len()..];
                } else {
                    out.push(rest[p]);
                    rest = &rest[p + 1..];
                }
            }
            out.extend_from_slice(rest);
        };
        if a & (attr::UNKNOWN | attr::CONTROL | attr::USER_DEFINED) != 0 {
            out.extend_from_slice(text.as_bytes());
        } else if a & attr::NORMAL != 0 {
            match self.kind {
                TokenizerKind::Spm | TokenizerKind::Wpm | TokenizerKind::Ugm => unescape(out),
                TokenizerKind::Bpe if self.escapes_spaces() => unescape(out),
                TokenizerKind::Bpe => {
                    for c in text.chars() {
                        match self.byte_of_char.get(c as usize).copied().flatten() {
                            Some(b) => out.push(b),
                            None => {
                                // llama.cpp's marker for a character outside
                                // the byte alphabet.
                                let marker = b"[UNK_BYTE_0x".len() + 2 * c.len_utf8() + 1;
                                if out.len() + marker + text.len() > limit {
                                    pieces.discard_open();
                                    return false;
                                }
                                out.extend_from_slice(b"[UNK_BYTE_0x");
                                let mut buf = [0u8; 4];
                                for b in c.encode_utf8(&mut buf).bytes() {
                                    out.extend_from_slice(format!("{b:02x}").as_bytes());
                                }
                                out.extend_from_slice(text.as_bytes());
                                out.push(b']');
                            }
                        }
                    }
                }
            }
        } else if a & attr::BYTE != 0 {
            let b = text
                .get(3..5)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .unwrap_or(0);
            out.push(b);
        }
        if out.len() > limit {
            pieces.discard_open();
            return false;
        }
        pieces.end();
        true
    }

    /// The bytes of `ids` as llama.cpp's `llama_detokenize`: with
    /// `remove_special`, a leading BOS and trailing EOS the tokenizer would
    /// add are dropped; with `unparse_special`, control tokens are written
    /// as their text. SentencePiece's leading space is removed, and `gpt2`
    /// vocabularies that ask for it get the clean-up of spaces before
    /// punctuation. Out-of-range ids are skipped.
    pub fn decode_bytes(
        &self,
        ids: &[u32],
        remove_special: bool,
        unparse_special: bool,
    ) -> Vec<u8> {
        let mut ids = ids;
        let mut remove_space = self.add_space_prefix;
        if remove_special && self.add_bos && !ids.is_empty() && Some(ids[0]) == self.bos {
            remove_space = false;
            ids = &ids[1..];
        }
        if remove_special && self.add_eos && ids.last().copied() == self.eos && self.eos.is_some() {
            ids = &ids[..ids.len() - 1];
        }
        let mut out = Vec::new();
        for &id in ids {
            let mut p = self.token_to_piece(id, unparse_special);
            if remove_space && p.first() == Some(&b' ') {
                p = &p[1..];
            }
            remove_space = false;
            out.extend_from_slice(p);
        }
        if self.clean_spaces {
            clean_spaces(&mut out);
        }
        out
    }

    /// [`Tokenizer::decode_bytes`] as a `String`, invalid UTF-8 replaced by U+FFFD.
    pub fn decode(&self, ids: &[u32], remove_special: bool, unparse_special: bool) -> String {
        String::from_utf8_lossy(&self.decode_bytes(ids, remove_special, unparse_special))
            .into_owned()
    }

    /// A decoder that turns ids into text one at a time, holding back an
    /// incomplete UTF-8 character until its last byte arrives.
    pub fn stream_decoder(&self, unparse_special: bool) -> StreamDecoder<'_> {
        StreamDecoder::new(self, unparse_special)
    }

    /// [`Tokenizer::stream_decoder`] holding a share of the tokenizer
    /// rather than a borrow: a decoder that can be kept anywhere (the
    /// Python package's `Tokenizer.stream`).
    pub fn shared_stream_decoder(
        self: &Arc<Self>,
        unparse_special: bool,
    ) -> StreamDecoder<'static> {
        StreamDecoder::shared(Arc::clone(self), unparse_special)
    }

    /// A SentencePiece-style BPE vocabulary (gemma4): `▁` for spaces,
    /// UTF-8 tokens, `<0xXX>` bytes.
    fn escapes_spaces(&self) -> bool {
        self.pre.as_ref().is_some_and(|p| p.escape_spaces)
    }

    fn byte_token(&self, b: u8) -> Option<u32> {
        match self.kind {
            TokenizerKind::Bpe if self.escapes_spaces() => self.token_id(&format!("<0x{b:02X}>")),
            TokenizerKind::Spm | TokenizerKind::Ugm => {
                let hex = format!("<0x{b:02X}>");
                self.token_id(&hex).or_else(|| {
                    std::str::from_utf8(&[b])
                        .ok()
                        .and_then(|s| self.token_id(s))
                })
            }
            TokenizerKind::Bpe | TokenizerKind::Wpm => {
                let mut buf = [0u8; 4];
                self.token_id(self.byte_chars[b as usize].encode_utf8(&mut buf))
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fragment {
    Text(usize, usize),
    Token(u32),
}

/// What [`Tokenizer::find_specials`] found, by pattern (`k`: `special[k]`).
struct Found {
    /// Listed specials' occurrences by start, ascending.
    at: HashMap<usize, Vec<u32>>,
    /// Specials present but too frequent to list (every special where
    /// there is no finder): searched for in the text.
    searched: Vec<usize>,
}

/// The text of `len` bytes as [`Tokenizer::partition_at`]'s taken spans
/// (start -> (end, id)) leave it, in order: each span's token, and the
/// free parts between them (the spaces a span strips are in no part).
fn fragments(taken: &BTreeMap<usize, (usize, u32)>, len: usize) -> Vec<Fragment> {
    let mut frags = Vec::with_capacity(2 * taken.len() + 1);
    let mut done = 0;
    for (&start, &(end, id)) in taken {
        if start > done {
            frags.push(Fragment::Text(done, start));
        }
        frags.push(Fragment::Token(id));
        done = end;
    }
    if done < len {
        frags.push(Fragment::Text(done, len));
    }
    frags
}

/// C's `isspace` in the C locale, as llama.cpp strips spaces around a
/// special token: Rust's `is_ascii_whitespace` without vertical tab.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// llama.cpp's `clean_up_tokenization_spaces` passes, byte for byte.
fn clean_spaces(text: &mut Vec<u8>) {
    // First pass: " ?", " !", " .", " ," lose the space.
    let mut out: Vec<u8> = Vec::with_capacity(text.len());
    for (i, &x) in text.iter().enumerate() {
        if i > 0 && text[i - 1] == b' ' && matches!(x, b'?' | b'!' | b'.' | b',') {
            out.pop();
        }
        out.push(x);
    }
    // Second pass: " ' " becomes "'".
    // llama.cpp overwrites the dropped space with NUL, which the next
    // character then sees as its predecessor.
    let mut t = std::mem::take(&mut out);
    let mut i = 0;
    while i < t.len() {
        let x = t[i];
        if i > 0 && x == b'\'' && i + 1 < t.len() && t[i - 1] == b' ' && t[i + 1] == b' ' {
            out.pop();
            out.push(x);
            t[i + 1] = 0;
            i += 2;
            continue;
        }
        out.push(x);
        i += 1;
    }
    // Third pass: " 's", " 'm", " 're", " 've" lose the space.
    let t = std::mem::take(&mut out);
    for (i, &x) in t.iter().enumerate() {
        if i > 0 && t[i - 1] == b' ' && x == b'\'' && i + 1 < t.len() {
            let x1 = t[i + 1];
            let drop = matches!(x1, b's' | b'm')
                || (i + 2 < t.len() && matches!((x1, t[i + 2]), (b'r', b'e') | (b'v', b'e')));
            if drop {
                out.pop();
            }
        }
        out.push(x);
    }
    *text = out;
}

/// Test vocabularies, built as a file's are: from a GGUF of their keys.
#[cfg(test)]
pub(super) mod testing {
    use super::{Tokenizer, TokenizerError};
    use gguf_loader::{GgufFile, GgufWriter, MetaValue, ValueType};

    /// A string array.
    pub(crate) fn strings(v: impl IntoIterator<Item = String>) -> MetaValue {
        MetaValue::Array(
            ValueType::String,
            v.into_iter().map(MetaValue::String).collect(),
        )
    }

    /// An int32 array (token types).
    pub(crate) fn ints(v: impl IntoIterator<Item = i32>) -> MetaValue {
        MetaValue::Array(ValueType::I32, v.into_iter().map(MetaValue::I32).collect())
    }

    /// A float32 array (scores).
    pub(crate) fn floats(v: impl IntoIterator<Item = f32>) -> MetaValue {
        MetaValue::Array(ValueType::F32, v.into_iter().map(MetaValue::F32).collect())
    }

    /// The tokenizer of `tokenizer.ggml.model` `model` and `keys`.
    pub(crate) fn tokenizer(
        model: &str,
        keys: Vec<(&str, MetaValue)>,
    ) -> Result<Tokenizer, TokenizerError> {
        let mut w = GgufWriter::new();
        w.add("tokenizer.ggml.model", MetaValue::String(model.into()));
        for (k, v) in keys {
            w.add(k, v);
        }
        let bytes = w.to_bytes().unwrap();
        let file = GgufFile::parse(&bytes).unwrap();
        Tokenizer::from_metadata(&file.metadata)
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{ints, strings};
    use super::{attr, clean_spaces, is_c_space, Found, Fragment, Tokenizer};
    use rand_chacha::rand_core::{RngCore, SeedableRng};
    use std::collections::HashMap;

    /// A llama (SentencePiece) vocabulary whose tokens after the first
    /// three are `specials`, user-defined (even) or control (odd).
    fn with_specials(specials: &[String]) -> Tokenizer {
        let mut tokens = vec!["<unk>".to_string(), "<s>".into(), "</s>".into()];
        let mut types = vec![2, 3, 3];
        for (i, t) in specials.iter().enumerate() {
            tokens.push(t.clone());
            types.push(if i % 2 == 0 { 4 } else { 3 });
        }
        super::testing::tokenizer(
            "llama",
            vec![
                ("tokenizer.ggml.tokens", strings(tokens)),
                ("tokenizer.ggml.token_type", ints(types)),
            ],
        )
        .unwrap()
    }

    /// llama.cpp's `tokenizer_st_partition` as it is written: each special
    /// in turn searched for in each fragment of text left. The oracle of
    /// [`Tokenizer::partition_at`].
    fn search_in_turn(tok: &Tokenizer, text: &str, parse_special: bool) -> Vec<Fragment> {
        let mut frags = vec![Fragment::Text(0, text.len())];
        for &id in &tok.special {
            let a = tok.attrs[id as usize];
            if !parse_special && a & (attr::CONTROL | attr::UNKNOWN) != 0 {
                continue;
            }
            let needle = &tok.tokens[id as usize];
            if !frags
                .iter()
                .any(|f| matches!(f, Fragment::Text(s, e) if text[*s..*e].contains(needle)))
            {
                continue;
            }
            let mut next = Vec::with_capacity(frags.len() + 2);
            for f in frags {
                let Fragment::Text(mut start, end) = f else {
                    next.push(f);
                    continue;
                };
                while let Some(p) = text[start..end].find(needle) {
                    let m = start + p;
                    let mut left_end = m;
                    if a & attr::LSTRIP != 0 {
                        while left_end > start && is_c_space(text.as_bytes()[left_end - 1]) {
                            left_end -= 1;
                        }
                    }
                    if left_end > start {
                        next.push(Fragment::Text(start, left_end));
                    }
                    next.push(Fragment::Token(id));
                    start = m + needle.len();
                    if a & attr::RSTRIP != 0 {
                        while start < end && is_c_space(text.as_bytes()[start]) {
                            start += 1;
                        }
                    }
                }
                if start < end {
                    next.push(Fragment::Text(start, end));
                }
            }
            frags = next;
        }
        frags
    }

    /// The split from each special's occurrences is the split from
    /// searching the text for each in turn (llama.cpp's way), on random
    /// vocabularies of specials that overlap, nest and hold spaces, with
    /// and without stripping, and random texts of their characters.
    #[test]
    fn partition_from_occurrences_is_the_search_in_turn() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let mut pick = |n: u32| (rng.next_u32() % n) as usize;
        let alphabet = [b'a', b'b', b' ', b'<', b'>', b'\x0b'];
        let word = |pick: &mut dyn FnMut(u32) -> usize, max: u32| {
            let n = 1 + pick(max);
            (0..n)
                .map(|_| alphabet[pick(alphabet.len() as u32)] as char)
                .collect::<String>()
        };
        let mut compared = 0;
        for round in 0..400 {
            let n = 1 + pick(12);
            let mut specials: Vec<String> = (0..n).map(|_| word(&mut pick, 5)).collect();
            specials.sort();
            specials.dedup();
            let mut tok = with_specials(&specials);
            for &id in &tok.special.clone() {
                match pick(4) {
                    0 => tok.attrs[id as usize] |= attr::LSTRIP,
                    1 => tok.attrs[id as usize] |= attr::RSTRIP,
                    2 => tok.attrs[id as usize] |= attr::LSTRIP | attr::RSTRIP,
                    _ => {}
                }
            }
            for _ in 0..8 {
                let text = word(&mut pick, 60);
                for parse_special in [false, true] {
                    // Every special listed, none, or some (the rest searched).
                    let budget = [u64::MAX, 0, pick(40) as u64][pick(3)];
                    let found = tok.find_specials_within(&text, budget).unwrap();
                    let by_occurrence = tok.partition_at(&text, &found, parse_special);
                    let by_search = search_in_turn(&tok, &text, parse_special);
                    assert_eq!(
                        by_occurrence, by_search,
                        "round {round}: specials {specials:?}, text {text:?}, parse_special {parse_special}"
                    );
                    // As without a finder: every special searched for.
                    let all = Found {
                        at: HashMap::new(),
                        searched: (0..tok.special.len()).collect(),
                    };
                    assert_eq!(
                        tok.partition_at(&text, &all, parse_special),
                        by_search,
                        "round {round}, all searched: {specials:?}, {text:?}"
                    );
                    compared += 1;
                }
            }
        }
        assert!(compared > 5000, "{compared}");
    }

    #[test]
    fn clean_up_spaces() {
        let mut t = b"a , b . it 's I 've don 't ' x".to_vec();
        clean_spaces(&mut t);
        assert_eq!(String::from_utf8(t).unwrap(), "a, b. it's I've don 't'x");
    }
}
