//! Files whose metadata is hostile to the tokenizer and the forward pass:
//! every value from the file that sizes or indexes something (layer counts,
//! head counts and widths, token ids, the vocabulary's pieces) ends in a
//! typed error, quickly, before anything is allocated from it; never a
//! panic or an abort. The fuzz target `llm` (fuzz/) runs the same paths on
//! mutated files.

mod common;

use std::time::{Duration, Instant};

use gguf_loader::{GgmlType, GgufWriter, MetaValue, MmapGGUFLoader, ValueType};
use gguf_loader_llm::forward::{ForwardError, Transformer};
use gguf_loader_llm::tokenizer::{Tokenizer, TokenizerError, MAX_VOCAB, PIECE_SLACK};

use common::{f32_bytes, HEAD, N_EMBD, N_FF, N_HEAD, N_KV, N_VOCAB};

/// A llama model with one block per entry of `ffs` (its feed-forward
/// width), every tensor F32, with `meta` added after (and so overriding)
/// its own hyper-parameters.
fn llama(ffs: &[u64], meta: &[(&str, MetaValue)]) -> tempfile::NamedTempFile {
    let mut w = GgufWriter::new();
    let mut keys: Vec<(String, MetaValue)> = vec![
        (
            "general.architecture".into(),
            MetaValue::String("llama".into()),
        ),
        ("llama.block_count".into(), MetaValue::U32(ffs.len() as u32)),
        (
            "llama.embedding_length".into(),
            MetaValue::U32(N_EMBD as u32),
        ),
        (
            "llama.feed_forward_length".into(),
            MetaValue::U32(N_FF as u32),
        ),
        ("llama.attention.head_count".into(), MetaValue::U32(N_HEAD)),
        ("llama.attention.head_count_kv".into(), MetaValue::U32(N_KV)),
        (
            "llama.attention.layer_norm_rms_epsilon".into(),
            MetaValue::F32(1e-5),
        ),
    ];
    for (k, v) in meta {
        match keys.iter_mut().find(|(key, _)| key == k) {
            Some(slot) => slot.1 = v.clone(),
            None => keys.push((k.to_string(), v.clone())),
        }
    }
    for (k, v) in keys {
        w.add(k, v);
    }
    let q = N_HEAD as u64 * HEAD;
    let kv = N_KV as u64 * HEAD;
    let mut mats: Vec<(String, [u64; 2])> = vec![
        ("token_embd.weight".into(), [N_EMBD, N_VOCAB]),
        ("output.weight".into(), [N_EMBD, N_VOCAB]),
    ];
    let mut norms = vec!["output_norm.weight".to_string()];
    for (il, &ff) in ffs.iter().enumerate() {
        let p = |s: &str| format!("blk.{il}.{s}.weight");
        mats.extend([
            (p("attn_q"), [N_EMBD, q]),
            (p("attn_k"), [N_EMBD, kv]),
            (p("attn_v"), [N_EMBD, kv]),
            (p("attn_output"), [q, N_EMBD]),
            (p("ffn_gate"), [N_EMBD, ff]),
            (p("ffn_up"), [N_EMBD, ff]),
            (p("ffn_down"), [ff, N_EMBD]),
        ]);
        norms.extend([p("attn_norm"), p("ffn_norm")]);
    }
    for (i, (name, ne)) in mats.iter().enumerate() {
        let data = f32_bytes(ne[0] * ne[1], i as u32);
        w.add_tensor(name.as_str(), ne, GgmlType::F32, data)
            .unwrap();
    }
    for name in norms {
        let ones: Vec<u8> = (0..N_EMBD).flat_map(|_| 1f32.to_le_bytes()).collect();
        w.add_tensor(name, &[N_EMBD], GgmlType::F32, ones).unwrap();
    }
    let file = tempfile::Builder::new().suffix(".gguf").tempfile().unwrap();
    std::fs::write(file.path(), w.to_bytes().unwrap()).unwrap();
    file
}

/// [`llama`] with one block.
fn tiny_llama(meta: &[(&str, MetaValue)]) -> tempfile::NamedTempFile {
    llama(&[N_FF], meta)
}

fn eager(file: &tempfile::NamedTempFile) -> Result<Transformer<f32>, ForwardError> {
    Transformer::<f32>::load(&MmapGGUFLoader::new(file.path()).unwrap())
}

fn lazy(file: &tempfile::NamedTempFile) -> Result<Transformer<f32>, ForwardError> {
    Transformer::<f32>::load_lazy(std::sync::Arc::new(
        MmapGGUFLoader::new(file.path()).unwrap(),
    ))
}

/// Builds (and for a model, runs a token through) both ways; returns the
/// eager error's text, after checking the lazy one fails too.
fn refused(file: &tempfile::NamedTempFile) -> String {
    let start = Instant::now();
    let mut errors = Vec::new();
    for build in [eager, lazy] {
        let e = match build(file) {
            Err(e) => e,
            Ok(model) => {
                let mut cache = model.new_cache(2).expect("a two-position cache");
                model
                    .forward(&mut cache, &[1], false)
                    .expect_err("a forward pass over a hostile model")
            }
        };
        errors.push(e.to_string());
    }
    assert!(start.elapsed() < Duration::from_secs(5), "{errors:?}");
    errors.swap_remove(0)
}

#[test]
fn the_tiny_model_runs_eager_and_lazy_alike() {
    let file = tiny_llama(&[]);
    let mut logits = Vec::new();
    for build in [eager, lazy] {
        let model = build(&file).unwrap();
        assert_eq!(model.config().n_layer, 1);
        let mut cache = model.new_cache(4).unwrap();
        let out = model.forward(&mut cache, &[1, 2, 3], true).unwrap();
        assert_eq!(out.len(), 3 * N_VOCAB as usize);
        assert!(out.iter().all(|x| x.is_finite()));
        logits.push(out);
    }
    assert_eq!(logits[0], logits[1]);
}

#[test]
fn a_block_count_beyond_the_tensors_is_refused_before_allocating() {
    for n in [u32::MAX, 1 << 24, 13] {
        let file = tiny_llama(&[("llama.block_count", MetaValue::U32(n))]);
        let e = refused(&file);
        assert!(
            e.contains("'llama.block_count'") && e.contains(&format!("{n} blocks")),
            "{e}"
        );
    }
    // Within the tensor count, a block with no tensors is missing.
    let file = tiny_llama(&[("llama.block_count", MetaValue::U32(2))]);
    let e = refused(&file);
    assert!(e.contains("blk.1"), "{e}");
}

#[test]
fn every_layer_is_checked_before_any_runs() {
    let two = llama(&[N_FF, N_FF], &[]);
    for build in [eager, lazy] {
        let model = build(&two).unwrap();
        let mut cache = model.new_cache(2).unwrap();
        assert_eq!(
            model.forward(&mut cache, &[1, 2], true).unwrap().len(),
            2 * N_VOCAB as usize
        );
    }
    // One feed-forward width for all layers (the GPU pass sizes its
    // scratch by it); a lazy model is held to it before its first layer.
    let uneven = llama(&[N_FF, 2 * N_FF], &[]);
    for build in [eager, lazy] {
        let e = build(&uneven)
            .expect_err("an uneven feed-forward width")
            .to_string();
        assert!(
            e.contains("blk.1.ffn_gate.weight") && e.contains("[8, 32]"),
            "{e}"
        );
    }
    // A KV width no tensor has: refused before a cache is sized by it.
    let wide = tiny_llama(&[("llama.attention.key_length", MetaValue::U32(1 << 30))]);
    for build in [eager, lazy] {
        let e = build(&wide)
            .expect_err("a key length the tensors do not have")
            .to_string();
        assert!(e.contains("blk.0.attn_q.weight"), "{e}");
    }
}

#[test]
fn hyper_parameters_that_do_not_fit_the_tensors_are_refused() {
    let cases: [(&str, MetaValue, &str); 11] = [
        ("llama.block_count", MetaValue::U32(0), "must not be 0"),
        (
            "llama.attention.head_count",
            MetaValue::U32(0),
            "must not be 0",
        ),
        (
            "llama.attention.head_count_kv",
            MetaValue::U32(0),
            "must not be 0",
        ),
        (
            "llama.attention.head_count_kv",
            MetaValue::U32(3),
            "does not divide",
        ),
        (
            "llama.attention.head_count",
            MetaValue::U32(3),
            "do not divide",
        ),
        (
            "llama.attention.head_count",
            MetaValue::U32(u32::MAX),
            "do not divide",
        ),
        (
            "llama.embedding_length",
            MetaValue::U32(1 << 30),
            "token_embd.weight",
        ),
        (
            "llama.attention.key_length",
            MetaValue::U32(1 << 30),
            "attn_q",
        ),
        ("llama.rope.dimension_count", MetaValue::U32(5), "odd"),
        (
            "llama.rope.dimension_count",
            MetaValue::U32(u32::MAX),
            "above the head dimension",
        ),
        (
            "llama.attention.head_count",
            MetaValue::String("two".into()),
            "head_count",
        ),
    ];
    for (key, value, why) in cases {
        let file = tiny_llama(&[(key, value.clone())]);
        let e = refused(&file);
        assert!(e.contains(why), "{key} = {value:?}: {e}");
    }
    let file = tiny_llama(&[("general.architecture", MetaValue::String("mamba".into()))]);
    assert!(refused(&file).contains("architecture 'mamba'"));
}

/// A `gpt2` vocabulary: GPT-2's 256-character byte alphabet, then `extra`.
fn bpe_vocab(extra: &[String]) -> tempfile::NamedTempFile {
    let mut tokens: Vec<MetaValue> = common::gpt2_byte_alphabet()
        .into_iter()
        .map(MetaValue::String)
        .collect();
    tokens.extend(extra.iter().map(|t| MetaValue::String(t.clone())));
    let mut w = GgufWriter::new();
    w.add("tokenizer.ggml.model", MetaValue::String("gpt2".into()));
    w.add("tokenizer.ggml.pre", MetaValue::String("gpt-2".into()));
    w.add(
        "tokenizer.ggml.tokens",
        MetaValue::Array(ValueType::String, tokens),
    );
    w.add(
        "tokenizer.ggml.merges",
        MetaValue::Array(ValueType::String, vec![MetaValue::String("h i".into())]),
    );
    let file = tempfile::Builder::new().suffix(".gguf").tempfile().unwrap();
    std::fs::write(file.path(), w.to_bytes().unwrap()).unwrap();
    file
}

fn tokenizer(file: &tempfile::NamedTempFile) -> Result<Tokenizer, TokenizerError> {
    Tokenizer::from_loader(&MmapGGUFLoader::new(file.path()).unwrap())
}

#[test]
fn a_character_outside_the_byte_alphabet_is_spelled_out_as_llama_cpp_does() {
    let file = bpe_vocab(&["a中b".into()]);
    let tok = tokenizer(&file).unwrap();
    assert_eq!(
        tok.token_to_piece(256, false),
        "a[UNK_BYTE_0xe4b8ada中b]b".as_bytes()
    );
}

#[test]
fn pieces_quadratic_in_a_token_are_refused_without_building_them() {
    // 1 Mi characters outside the byte alphabet in one token (3 MiB):
    // spelled out, its piece would take 1 Mi times 3 MiB.
    let huge = "中".repeat(1 << 20);
    let start = Instant::now();
    let file = bpe_vocab(&[huge]);
    let e = tokenizer(&file).expect_err("a vocabulary whose pieces pass the budget");
    assert!(matches!(e, TokenizerError::Pieces { id: 256 }), "{e}");
    assert!(e.to_string().contains("token 256"), "{e}");
    // Many tokens each under the budget, together over it.
    let each = "中".repeat(2048);
    let many = vec![each; PIECE_SLACK / (2048 * 6144) + 8];
    let e = tokenizer(&bpe_vocab(&many)).expect_err("pieces past the budget in all");
    assert!(matches!(e, TokenizerError::Pieces { .. }), "{e}");
    assert!(start.elapsed() < Duration::from_secs(20));
}

/// A vocabulary, or a merge list, past MAX_VOCAB is refused by its count:
/// 8 M empty token texts (a 64 MB file) once took 1.9 GB of tables, and
/// aborted under a memory limit.
#[test]
fn vocabularies_and_merge_lists_past_the_bound_are_refused() {
    let start = Instant::now();
    let empty = vec![MetaValue::String(String::new()); MAX_VOCAB + 1];
    let mut w = GgufWriter::new();
    w.add("tokenizer.ggml.model", MetaValue::String("llama".into()));
    w.add(
        "tokenizer.ggml.tokens",
        MetaValue::Array(ValueType::String, empty.clone()),
    );
    let file = tempfile::Builder::new().suffix(".gguf").tempfile().unwrap();
    std::fs::write(file.path(), w.to_bytes().unwrap()).unwrap();
    let e = tokenizer(&file).expect_err("a vocabulary past the bound");
    assert!(
        matches!(e, TokenizerError::VocabSize(n) if n == MAX_VOCAB + 1),
        "{e}"
    );
    assert!(e.to_string().contains("expected 1 to 4194304"), "{e}");

    let file = bpe_vocab(&[]);
    let loader = MmapGGUFLoader::new(file.path()).unwrap();
    let mut w = GgufWriter::new();
    for (k, v) in loader.metadata().iter() {
        if k != "tokenizer.ggml.merges" {
            w.add_value(k, *v);
        }
    }
    w.add(
        "tokenizer.ggml.merges",
        MetaValue::Array(ValueType::String, empty),
    );
    let merges = tempfile::Builder::new().suffix(".gguf").tempfile().unwrap();
    std::fs::write(merges.path(), w.to_bytes().unwrap()).unwrap();
    let e = tokenizer(&merges).expect_err("a merge list past the bound");
    assert!(
        matches!(e, TokenizerError::MergeCount(n) if n == MAX_VOCAB + 1),
        "{e}"
    );
    assert!(start.elapsed() < Duration::from_secs(60));
}

#[test]
fn per_token_arrays_shorter_than_the_vocabulary_are_refused() {
    for key in ["tokenizer.ggml.scores", "tokenizer.ggml.token_type"] {
        let mut w = GgufWriter::new();
        w.add("tokenizer.ggml.model", MetaValue::String("llama".into()));
        let tokens = ["<unk>", "<s>", "</s>", "a"].map(|t| MetaValue::String(t.into()));
        w.add(
            "tokenizer.ggml.tokens",
            MetaValue::Array(ValueType::String, tokens.to_vec()),
        );
        let short = if key.ends_with("scores") {
            MetaValue::Array(ValueType::F32, vec![MetaValue::F32(0.0); 3])
        } else {
            MetaValue::Array(ValueType::I32, vec![MetaValue::I32(1); 3])
        };
        w.add(key, short);
        // Special ids out of the vocabulary fall back as llama.cpp's do.
        w.add("tokenizer.ggml.bos_token_id", MetaValue::U32(u32::MAX));
        let file = tempfile::Builder::new().suffix(".gguf").tempfile().unwrap();
        std::fs::write(file.path(), w.to_bytes().unwrap()).unwrap();
        let e = tokenizer(&file).expect_err(key);
        assert!(
            matches!(
                e,
                TokenizerError::TooShort {
                    found: 3,
                    expected: 4,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains(key), "{e}");
    }
}

/// A vocabulary of many special tokens over a long text: each special was
/// looked for in the whole text in turn (100 000 of them over a 16 MiB
/// chat prompt: over three minutes). Now only those the text holds are,
/// and they still split it as llama.cpp does (longest first).
#[test]
fn many_special_tokens_over_a_long_text_split_it_quickly() {
    let n_special = 100_000;
    let mut tokens = vec!["<unk>".to_string(), "<s>".into(), "</s>".into()];
    let mut types = vec![2, 3, 3];
    for c in ["\u{2581}", "x", "y"] {
        tokens.push(c.into());
        types.push(1);
    }
    for i in 0..n_special {
        tokens.push(format!("<c{i}>"));
        types.push(3);
    }
    // Two specials where the longer wins though the shorter starts first.
    tokens.push("<c1><c2".into());
    types.push(4);
    let mut w = common::vocab_writer("llama", tokens, Some(types));
    w.add("tokenizer.ggml.add_space_prefix", MetaValue::Bool(false));
    let file = common::temp_gguf(&w);
    let tok = tokenizer(&file).unwrap();
    let id = |t: &str| tok.token_id(t).unwrap();

    let start = Instant::now();
    let mut text = "x".repeat(8 << 20);
    text.push_str("<c7>y<c0><c1><c2>");
    let ids = tok.encode(&text, false, true);
    let took = start.elapsed();
    assert_eq!(ids.len(), (8 << 20) + 5);
    // `<c1><c2` (7 bytes) is looked for before `<c1>` (4): the `>` left
    // over has no token.
    assert_eq!(
        ids[8 << 20..],
        [
            id("<c7>"),
            id("y"),
            id("<c0>"),
            id("<c1><c2"),
            tok.unk().unwrap()
        ]
    );
    assert!(took < Duration::from_secs(20), "{took:?}");
    // Without parsing specials, control tokens are text.
    let ids = tok.encode("<c7>", false, false);
    assert!(!ids.contains(&id("<c7>")), "{ids:?}");
}

/// A SentencePiece vocabulary of `<unk>`, `<s>`, `</s>`, `▁`, `x`, `y` and
/// `specials` as user-defined tokens.
fn with_user_defined(specials: impl IntoIterator<Item = String>) -> tempfile::NamedTempFile {
    let mut tokens: Vec<String> = ["<unk>", "<s>", "</s>", "\u{2581}", "x", "y"]
        .map(String::from)
        .into();
    let mut types = vec![2, 3, 3, 1, 1, 1];
    for t in specials {
        tokens.push(t);
        types.push(4);
    }
    let mut w = common::vocab_writer("llama", tokens, Some(types));
    w.add("tokenizer.ggml.add_space_prefix", MetaValue::Bool(false));
    common::temp_gguf(&w)
}

/// Special-token texts that defeat a finder, each once a hang: one 64 KiB
/// special of one repeated byte (the DFA that the `AhoCorasick` type
/// builds for 100 patterns or fewer took 97 s, growing with the square of
/// its length); 200 000 specials each present once in a 2 MB text (each
/// was searched for in the whole text: 200 000 searches); and `a` to
/// `a`×300 over a 4 MB run of `a` beside those 200 000 (300 occurrences
/// a byte: too many to list, so every special was searched for).
#[test]
fn special_texts_that_defeat_a_finder_split_quickly() {
    let start = Instant::now();
    let tok = tokenizer(&with_user_defined(["B".repeat(1 << 16)])).unwrap();
    let long = tok.token_id(&"B".repeat(1 << 16)).unwrap();
    let text = format!("x{}y{}", "B".repeat(1 << 16), "B".repeat(1 << 15));
    let ids = tok.encode(&text, false, true);
    assert_eq!(
        ids[..3],
        [tok.token_id("x").unwrap(), long, tok.token_id("y").unwrap()]
    );
    assert!(!ids[3..].contains(&long));
    let took = start.elapsed();
    assert!(took < Duration::from_secs(20), "one long special: {took:?}");

    let n = 200_000;
    let specials: Vec<String> = (0..n).map(|i| format!("<u{i:07}>")).collect();
    let tok = tokenizer(&with_user_defined(specials.clone())).unwrap();
    let start = Instant::now();
    let text: String = specials.iter().rev().map(|s| format!("{s}x")).collect();
    let ids = tok.encode(&text, false, true);
    let took = start.elapsed();
    assert_eq!(ids.len(), 2 * n);
    assert_eq!(ids[0], tok.token_id(&specials[n - 1]).unwrap());
    assert_eq!(ids[2 * n - 2], tok.token_id(&specials[0]).unwrap());
    assert!(
        took < Duration::from_secs(20),
        "{n} specials present: {took:?}"
    );

    // The nested ones beside the 200 000 (each once): too frequent to
    // list, they are searched for in what the others leave free (all
    // 200 000 were searched for once a text held too many occurrences).
    let nested = (1..=300).map(|k| "a".repeat(k));
    let tok = tokenizer(&with_user_defined(nested.chain(specials.iter().cloned()))).unwrap();
    let start = Instant::now();
    let ids = tok.encode(&format!("{}{text}", "a".repeat(4_000_000 + 7)), false, true);
    let took = start.elapsed();
    // 13 333 of `a`×300, then `a`×107 (longest first), then the others.
    let runs = 4_000_000 / 300 + 1;
    assert_eq!(ids.len(), runs + 2 * n);
    assert_eq!(ids[runs - 1], tok.token_id(&"a".repeat(107)).unwrap());
    assert_eq!(ids[runs], tok.token_id(&specials[n - 1]).unwrap());
    assert!(took < Duration::from_secs(20), "nested specials: {took:?}");
}

/// A Unigram (`t5`) vocabulary of `<pad>`, `</s>`, `<unk>`, `▁` and
/// `tokens` (normal, score -1 each), with `meta` added (no space prefix
/// by default).
fn unigram(tokens: &[String], meta: &[(&str, MetaValue)]) -> tempfile::NamedTempFile {
    let mut all: Vec<String> = ["<pad>", "</s>", "<unk>", "\u{2581}"]
        .map(String::from)
        .into();
    all.extend(tokens.iter().cloned());
    let mut types = vec![3, 3, 2, 1];
    types.resize(all.len(), 1);
    let n = all.len();
    let mut w = common::vocab_writer("t5", all, Some(types));
    w.add(
        "tokenizer.ggml.scores",
        MetaValue::Array(ValueType::F32, vec![MetaValue::F32(-1.0); n]),
    );
    for (k, v) in meta {
        w.add(*k, v.clone());
    }
    common::temp_gguf(&w)
}

fn charsmap(bytes: &[u8]) -> MetaValue {
    MetaValue::Array(
        ValueType::U8,
        bytes.iter().map(|&b| MetaValue::U8(b)).collect(),
    )
}

/// A charsmap a walk could read past (llama.cpp throws there, on some
/// text) is refused when the tokenizer is built, naming the key and the
/// byte; so is one of the wrong type, one past the bound, and a Unigram
/// vocabulary without its unknown token.
#[test]
fn malformed_unigram_charsmaps_are_refused() {
    use gguf_loader_llm::tokenizer::MAX_CHARSMAP;
    let refused = |meta: &[(&str, MetaValue)]| {
        tokenizer(&unigram(&["a".into()], meta))
            .expect_err("refused")
            .to_string()
    };
    let key = "tokenizer.ggml.precompiled_charsmap";
    // Shorter than its length word; a double array past the end; a root
    // whose block of children passes the array (one unit).
    let e = refused(&[(key, charsmap(&[1, 0]))]);
    assert!(e.contains(key) && e.contains("too small"), "{e}");
    let e = refused(&[(key, charsmap(&[8, 0, 0, 0, 0, 0, 0, 0, 0]))]);
    assert!(e.contains("passes its end"), "{e}");
    let e = refused(&[(key, charsmap(&[4, 0, 0, 0, 0, 0, 0, 0, 0]))]);
    assert!(e.contains("children pass") && e.contains("byte 4"), "{e}");
    // A root block of 256 units whose child `a` is a leaf whose value
    // points past the replacements.
    let mut units = vec![0u32; 512];
    units[0] = 256 << 10;
    let a = 256 ^ b'a' as usize;
    units[a] = ((a as u32 ^ 256) << 10) | (1 << 8) | b'a' as u32;
    units[256] = (1 << 31) | 5;
    let mut b = ((units.len() * 4) as u32).to_le_bytes().to_vec();
    b.extend(units.iter().flat_map(|u| u.to_le_bytes()));
    b.extend_from_slice(b"x\0");
    let e = refused(&[(key, charsmap(&b))]);
    assert!(e.contains("replacement string"), "{e}");
    // The same with a replacement in bounds builds and rewrites `a`.
    // (Unit 256: bit 31 and replacement offset 0.)
    b[4 + 256 * 4..4 + 257 * 4].copy_from_slice(&(1u32 << 31).to_le_bytes());
    let tok = tokenizer(&unigram(&["x".into()], &[(key, charsmap(&b))])).unwrap();
    assert_eq!(tok.encode("a", false, false), [tok.token_id("x").unwrap()]);
    // A replacement past 64 bytes (a text's lattice would grow with it).
    let long = [b'y'; 65];
    let mut c = b[..4 + 512 * 4].to_vec();
    c.extend_from_slice(&long);
    c.push(0);
    let e = refused(&[(key, charsmap(&c))]);
    assert!(e.contains("longer than the 64 bytes"), "{e}");
    // Wrong type; past the bound.
    let e = refused(&[(key, MetaValue::U32(7))]);
    assert!(e.contains(key), "{e}");
    let e = refused(&[(key, charsmap(&vec![0; MAX_CHARSMAP + 1]))]);
    assert!(e.contains("4 MiB"), "{e}");
    // No unknown token: the default id 2 is past a two-token vocabulary.
    let mut w = common::vocab_writer("t5", vec!["<pad>".into(), "a".into()], None);
    w.add(
        "tokenizer.ggml.scores",
        MetaValue::Array(ValueType::F32, vec![MetaValue::F32(-1.0); 2]),
    );
    let e = tokenizer(&common::temp_gguf(&w)).expect_err("no unknown token");
    assert!(e.to_string().contains("unknown_token_id"), "{e}");
}

/// The lattice is walked in time linear in the text and its edges, not in
/// the longest token: one token of 1 Mi `a` over a text of as many (a
/// walk from each code point, as llama.cpp's trie, would take 2^39 steps),
/// and `a` to `a`×300 nested over 1 MB (300 edges a byte).
#[test]
fn unigram_lattices_of_long_and_nested_tokens_are_quick() {
    let long = "a".repeat(1 << 20);
    let tok = tokenizer(&unigram(&["a".into(), long.clone()], &[])).unwrap();
    let start = Instant::now();
    let ids = tok.encode(&long, false, false);
    assert_eq!(ids, [tok.token_id(&long).unwrap()]);
    let took = start.elapsed();
    assert!(took < Duration::from_secs(20), "one long token: {took:?}");

    let nested: Vec<String> = (1..=300).map(|k| "a".repeat(k)).collect();
    let tok = tokenizer(&unigram(&nested, &[])).unwrap();
    let start = Instant::now();
    let ids = tok.encode(&"a".repeat(1_000_000), false, false);
    let took = start.elapsed();
    // The fewest tokens (each scores -1): 3 334.
    assert_eq!(ids.len(), 1_000_000usize.div_ceil(300));
    assert!(took < Duration::from_secs(20), "nested tokens: {took:?}");
}

/// A million tokens of one text (llama.cpp refuses duplicate texts; ours
/// keeps the last, as its trie would): one pattern in the lattice's
/// automaton, not a million at each place of the text.
#[test]
fn unigram_duplicate_texts_cost_one_token() {
    let tokens = vec!["a".to_string(); 1 << 20];
    let tok = tokenizer(&unigram(&tokens, &[])).unwrap();
    let start = Instant::now();
    let ids = tok.encode(&"a".repeat(20_000), false, false);
    let took = start.elapsed();
    assert_eq!(ids, vec![4 + (1 << 20) - 1; 20_000]);
    assert!(took < Duration::from_secs(20), "duplicates: {took:?}");
}
