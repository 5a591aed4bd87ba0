//! The tokenizer against llama.cpp's own tokenizer tests (its
//! `test-tokenizer-0`): every `ggml-vocab-*.gguf` whose
//! `tokenizer.ggml.model` is `gpt2`, `llama` or `gemma4` and that comes with `.inp`
//! / `.out` files must give exactly the expected ids for every text
//! (no BOS/EOS, special-token text not parsed, as that test calls it).
//! The files are fetched by `scripts/fetch-vocab-tests.sh` into the cache
//! (or `$GGUF_LOADER_VOCAB_TESTS`); the test is skipped with a message when
//! they are absent, unless `GGUF_LOADER_REQUIRE_MODEL` is set.

#[path = "../../gguf-loader/tests/common/mod.rs"]
mod common;

use std::path::PathBuf;

use gguf_loader::MmapGGUFLoader;
use gguf_loader_llm::{Tokenizer, TokenizerKind};

fn vocab_dir() -> Option<PathBuf> {
    common::cached(
        "GGUF_LOADER_VOCAB_TESTS",
        "vocab-tests",
        "ggml-vocab-gpt-2.gguf.out",
        "scripts/fetch-vocab-tests.sh",
    )
}

/// The `(text, ids)` pairs of one vocabulary's test files.
fn cases(gguf: &std::path::Path) -> Vec<(String, Vec<u32>)> {
    let inp = std::fs::read_to_string(gguf.with_extension("gguf.inp")).unwrap();
    let out = std::fs::read_to_string(gguf.with_extension("gguf.out")).unwrap();
    let texts: Vec<&str> = inp.split("\n__ggml_vocab_test__\n").collect();
    let ids: Vec<Vec<u32>> = out
        .lines()
        .map(|l| l.split_whitespace().map(|t| t.parse().unwrap()).collect())
        .collect();
    // The last text is followed by a separator and an empty remainder.
    let texts = &texts[..ids.len()];
    texts.iter().map(|t| t.to_string()).zip(ids).collect()
}

/// The vocabularies this crate must pass, with their algorithm.
const EXPECTED: &[(&str, TokenizerKind)] = &[
    ("command-r", TokenizerKind::Bpe),
    ("deepseek-coder", TokenizerKind::Bpe),
    ("deepseek-llm", TokenizerKind::Bpe),
    ("falcon", TokenizerKind::Bpe),
    ("gpt-2", TokenizerKind::Bpe),
    ("llama-bpe", TokenizerKind::Bpe),
    ("mpt", TokenizerKind::Bpe),
    ("qwen2", TokenizerKind::Bpe),
    ("qwen35", TokenizerKind::Bpe),
    ("refact", TokenizerKind::Bpe),
    ("starcoder", TokenizerKind::Bpe),
    ("llama-spm", TokenizerKind::Spm),
    ("phi-3", TokenizerKind::Spm),
    ("gemma-4", TokenizerKind::Bpe),
    ("bert-bge", TokenizerKind::Wpm),
];

fn check(name: &str, kind: TokenizerKind) -> Result<usize, String> {
    let Some(dir) = vocab_dir() else {
        return Ok(0);
    };
    let path = dir.join(format!("ggml-vocab-{name}.gguf"));
    let loader = MmapGGUFLoader::new(&path).unwrap();
    let tok = Tokenizer::from_loader(&loader).unwrap();
    assert_eq!(tok.kind(), kind, "{name}");
    // The same tokenizer from its keys alone, as a GGUF of their own (how
    // the Python package pickles one).
    let gguf = Tokenizer::metadata_gguf(loader.metadata()).unwrap();
    let portable = Tokenizer::from_gguf_bytes(&gguf).unwrap();
    let cases = cases(&path);
    let mut failures = Vec::new();
    // All the texts at once, shared among threads: each text's own ids.
    let texts: Vec<&str> = cases.iter().map(|(t, _)| t.as_str()).collect();
    for (add, parse) in [(false, false), (true, true)] {
        let batch = tok.encode_batch(&texts, add, parse);
        let one_by_one: Vec<Vec<u32>> = texts.iter().map(|t| tok.encode(t, add, parse)).collect();
        if batch != one_by_one {
            failures.push(format!(
                "{name}: encode_batch ({add}, {parse}) is not encode's"
            ));
        }
    }
    for (text, want) in &cases {
        let got = tok.encode(text, false, false);
        if &got != want {
            failures.push(format!("{name}: {text:?}\n  got  {got:?}\n  want {want:?}"));
        }
        for (add, parse) in [(false, false), (true, true)] {
            let ids = portable.encode(text, add, parse);
            if ids != tok.encode(text, add, parse)
                || portable.decode(&ids, true, true) != tok.decode(&ids, true, true)
            {
                failures.push(format!("{name}: {text:?}: not the same from its own GGUF"));
            }
        }
        // Streamed, the ids (and BOS with them) give `decode`'s text, where
        // it cleans up no spaces: SentencePiece's leading space dropped
        // from the first id's piece only.
        if !tok.cleans_spaces() {
            let with_bos: Vec<u32> = tok.bos().into_iter().chain(got.iter().copied()).collect();
            for ids in [&got, &with_bos] {
                let mut s = tok.stream_decoder(false);
                let mut streamed: String = ids.iter().map(|&id| s.push(id)).collect();
                streamed.push_str(&s.finish());
                let whole = tok.decode(ids, false, false);
                if streamed != whole {
                    failures.push(format!("{name}: stream {ids:?}: {streamed:?} != {whole:?}"));
                }
            }
        }
    }
    eprintln!(
        "{name}: {}/{} pass",
        cases.len() - failures.len(),
        cases.len()
    );
    if failures.is_empty() {
        Ok(cases.len())
    } else {
        Err(failures.join("\n"))
    }
}

macro_rules! vocab_test {
    ($fn:ident, $name:literal, $kind:ident) => {
        #[test]
        fn $fn() {
            if let Err(e) = check($name, TokenizerKind::$kind) {
                panic!("{e}");
            }
        }
    };
}

vocab_test!(command_r, "command-r", Bpe);
vocab_test!(deepseek_coder, "deepseek-coder", Bpe);
vocab_test!(deepseek_llm, "deepseek-llm", Bpe);
vocab_test!(falcon, "falcon", Bpe);
vocab_test!(gpt_2, "gpt-2", Bpe);
vocab_test!(llama_bpe, "llama-bpe", Bpe);
vocab_test!(mpt, "mpt", Bpe);
vocab_test!(qwen2, "qwen2", Bpe);
vocab_test!(qwen35, "qwen35", Bpe);
vocab_test!(refact, "refact", Bpe);
vocab_test!(starcoder, "starcoder", Bpe);
vocab_test!(llama_spm, "llama-spm", Spm);
vocab_test!(phi_3, "phi-3", Spm);
vocab_test!(gemma_4, "gemma-4", Bpe);
vocab_test!(bert_bge, "bert-bge", Wpm);

/// Every vocabulary in the folder whose model is `gpt2`, `llama`,
/// `gemma4` or `bert` and that has test files is one of the list above, so
/// none goes unchecked. (The one `t5` vocabulary, nomic-bert-moe's, has no
/// test files: tokenizer_golden.rs holds it against llama.cpp.)
#[test]
fn every_gpt2_and_llama_vocab_is_tested() {
    let Some(dir) = vocab_dir() else { return };
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        let Some(stem) = name
            .strip_prefix("ggml-vocab-")
            .and_then(|s| s.strip_suffix(".gguf"))
        else {
            continue;
        };
        if !p.with_extension("gguf.out").exists() {
            continue;
        }
        let loader = MmapGGUFLoader::new(&p).unwrap();
        let model = loader.metadata().get_str("tokenizer.ggml.model").unwrap();
        if matches!(model, "gpt2" | "llama" | "gemma4" | "bert") {
            assert!(
                EXPECTED.iter().any(|(n, _)| *n == stem),
                "{stem} ({model}) has tests but is not in EXPECTED"
            );
        }
    }
}

/// A model this crate does not implement is refused by name (`rwkv`).
#[test]
fn unsupported_model_is_refused() {
    use gguf_loader::{GgufWriter, MetaValue, ValueType};
    let mut w = GgufWriter::new();
    w.add("tokenizer.ggml.model", MetaValue::String("rwkv".into()));
    w.add(
        "tokenizer.ggml.tokens",
        MetaValue::Array(ValueType::String, vec![MetaValue::String("a".into())]),
    );
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), w.to_bytes().unwrap()).unwrap();
    let loader = MmapGGUFLoader::new(file.path()).unwrap();
    let e = Tokenizer::from_loader(&loader).unwrap_err();
    assert!(e.to_string().contains("'rwkv'"), "{e}");
}

/// Bytes that are no tokenizer GGUF are an error, never a panic: nothing,
/// a GGUF cut anywhere in its header, one without the tokenizer's keys, one with an
/// unsupported model (the error says which).
#[test]
fn a_tokenizer_gguf_that_is_not_one_is_an_error() {
    use gguf_loader::{GgufWriter, MetaValue, ValueType};
    use gguf_loader_llm::TokenizerError;
    let mut w = GgufWriter::new();
    w.add("tokenizer.ggml.model", MetaValue::String("gpt2".into()));
    let words = ["a", "b", "ab"].map(|s| MetaValue::String(s.into()));
    w.add(
        "tokenizer.ggml.tokens",
        MetaValue::Array(ValueType::String, words.to_vec()),
    );
    w.add(
        "tokenizer.ggml.merges",
        MetaValue::Array(ValueType::String, vec![MetaValue::String("a b".into())]),
    );
    let good = w.to_bytes().unwrap();
    let tok = Tokenizer::from_gguf_bytes(&good).unwrap();
    assert_eq!(tok.encode("ab", false, false), [2]);
    // Cut inside the header: a format error. (Past it, only the padding
    // to the data section's alignment goes: the same tokenizer.)
    for cut in 0..good.len() {
        match Tokenizer::from_gguf_bytes(&good[..cut]) {
            Err(TokenizerError::Format(_)) => {}
            Ok(t) if t.encode("ab", false, false) == [2] && good[cut..].iter().all(|&b| b == 0) => {
            }
            other => panic!("cut at {cut}: {:?}", other.map(|t| t.vocab_size())),
        }
    }
    let empty = GgufWriter::new().to_bytes().unwrap();
    let e = Tokenizer::from_gguf_bytes(&empty).unwrap_err();
    assert!(e.to_string().contains("tokenizer.ggml.model"), "{e}");
    let mut w = GgufWriter::new();
    w.add("tokenizer.ggml.model", MetaValue::String("rwkv".into()));
    let e = Tokenizer::from_gguf_bytes(&w.to_bytes().unwrap()).unwrap_err();
    assert!(e.to_string().contains("'rwkv'"), "{e}");
}

/// A big-endian file's tokenizer (gpt-2's vocabulary rewritten in that
/// order) gives the same ids, and its keys' own GGUF (written in the
/// writer's little-endian order, item by item) the same tokenizer again.
#[test]
fn a_big_endian_files_tokenizer_travels_too() {
    let Some(dir) = vocab_dir() else { return };
    let path = dir.join("ggml-vocab-gpt-2.gguf");
    let bytes = std::fs::read(&path).unwrap();
    let file = gguf_loader::GgufFile::parse(&bytes).unwrap();
    let mut w = gguf_loader::GgufWriter::new().endianness(gguf_loader::Endianness::Big);
    for (k, v) in file.metadata.iter() {
        w.add_value(k, *v);
    }
    let big = w.to_bytes().unwrap();
    let big_file = gguf_loader::GgufFile::parse(&big).unwrap();
    assert_eq!(big_file.endianness, gguf_loader::Endianness::Big);
    let from_big = Tokenizer::from_metadata(&big_file.metadata).unwrap();
    let gguf = Tokenizer::metadata_gguf(&big_file.metadata).unwrap();
    assert_eq!(
        gguf_loader::GgufFile::parse(&gguf).unwrap().endianness,
        gguf_loader::Endianness::Little
    );
    let again = Tokenizer::from_gguf_bytes(&gguf).unwrap();
    for (text, want) in cases(&path) {
        assert_eq!(from_big.encode(&text, false, false), want, "{text:?}");
        assert_eq!(again.encode(&text, false, false), want, "{text:?}");
    }
}

/// Decoding what was encoded gives the text back byte for byte, in a
/// byte-level vocabulary without llama.cpp's clean-up of spaces (qwen2).
#[test]
fn gpt2_round_trip() {
    let Some(dir) = vocab_dir() else { return };
    let loader = MmapGGUFLoader::new(dir.join("ggml-vocab-qwen2.gguf")).unwrap();
    let tok = Tokenizer::from_loader(&loader).unwrap();
    for (text, _) in cases(&dir.join("ggml-vocab-qwen2.gguf")) {
        let ids = tok.encode(&text, false, false);
        assert_eq!(
            tok.decode_bytes(&ids, false, false),
            text.as_bytes(),
            "{text:?}"
        );
    }
}

/// gemma4 (SentencePiece-style BPE: `▁` for spaces, `<0xXX>` bytes):
/// decoding what was encoded gives the text back, where llama.cpp's
/// clean-up of spaces before punctuation (on for gemma4) has nothing to
/// remove; BOS is added whatever the metadata says, as llama.cpp does.
#[test]
fn gemma4_round_trip() {
    let Some(dir) = vocab_dir() else { return };
    let path = dir.join("ggml-vocab-gemma-4.gguf");
    let loader = MmapGGUFLoader::new(&path).unwrap();
    let tok = Tokenizer::from_loader(&loader).unwrap();
    assert!(tok.add_bos());
    let mut checked = 0;
    for (text, _) in cases(&path) {
        if [" ?", " !", " .", " ,", " '"]
            .iter()
            .any(|p| text.contains(p))
        {
            continue;
        }
        let ids = tok.encode(&text, false, false);
        assert_eq!(tok.decode(&ids, false, false), text, "{text:?}");
        checked += 1;
    }
    assert!(checked > 20, "{checked}");
    // A character the vocabulary lacks goes through <0xXX> byte tokens.
    let ids = tok.encode("\u{10FFFD}", false, false);
    assert_eq!(tok.decode(&ids, false, false), "\u{10FFFD}");
    let with_bos = tok.encode("Hi", true, false);
    assert_eq!(with_bos[0], tok.bos().unwrap());
}

/// A continuation keeps the leading space of its first piece, so that the
/// prompt and the streamed text join into what the ids decode to whole; a
/// fresh stream drops it as `decode` does (llama-spm: add_space_prefix).
#[test]
fn a_continuation_keeps_its_leading_space() {
    let Some(dir) = vocab_dir() else { return };
    let loader = MmapGGUFLoader::new(dir.join("ggml-vocab-llama-spm.gguf")).unwrap();
    let tok = Tokenizer::from_loader(&loader).unwrap();
    let prompt = tok.encode("The capital of France is", false, false);
    let more = tok.encode("The capital of France is Paris.", false, false);
    assert_eq!(more[..prompt.len()], prompt[..]);
    let stream = |mut s: gguf_loader_llm::StreamDecoder<'_>| {
        let mut t: String = more[prompt.len()..].iter().map(|&id| s.push(id)).collect();
        t.push_str(&s.finish());
        t
    };
    assert_eq!(stream(tok.stream_decoder(false).continuing()), " Paris.");
    assert_eq!(stream(tok.stream_decoder(false)), "Paris.");
    // A decoder holding a share of the tokenizer decodes the same.
    let shared = std::sync::Arc::new(Tokenizer::from_loader(&loader).unwrap());
    assert_eq!(
        stream(shared.shared_stream_decoder(false).continuing()),
        " Paris."
    );
    assert_eq!(stream(shared.shared_stream_decoder(false)), "Paris.");
    assert_eq!(
        tok.decode(&more, false, false),
        "The capital of France is Paris."
    );
}
