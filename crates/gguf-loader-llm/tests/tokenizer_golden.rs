//! Both real models' tokenizers against llama.cpp's tokenization of fixed
//! prompts (tests/golden/llama_cpp_tokens.json, written by
//! scripts/llama_cpp_tokens.sh), and the `t5` Unigram vocabulary of
//! llama.cpp's test vocabularies (nomic-bert-moe) against its tokenization
//! of those prompts, llama.cpp's test texts and seeded random texts
//! (tests/golden/llama_cpp_ugm_tokens.json, scripts/llama_cpp_ugm_tokens.sh):
//! every add_special/parse_special combination gives the same ids,
//! decoding gives the same text, and the special tokens agree. Skipped
//! when a model is absent, as tests/common.

#[path = "../../gguf-loader/tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};

use gguf_loader::{GgufWriter, MetaValue, MmapGGUFLoader, ValueType};
use gguf_loader_llm::Tokenizer;
use serde_json::Value;

fn golden(file: &Path) -> Value {
    let p = common::repo_root().join(file);
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn check(name: &str, path: &Path) {
    check_with(Path::new("tests/golden/llama_cpp_tokens.json"), name, path);
}

fn check_with(golden_file: &Path, name: &str, path: &Path) {
    let g = golden(golden_file);
    let g = &g["models"][name];
    let loader = MmapGGUFLoader::new(path).unwrap();
    let tok = Tokenizer::from_loader(&loader).unwrap();
    assert_eq!(tok.vocab_size() as u64, g["n_tokens"].as_u64().unwrap());
    let opt = |v: &Value| u32::try_from(v.as_i64().unwrap()).ok();
    assert_eq!(tok.bos(), opt(&g["bos"]), "{name} bos");
    assert_eq!(tok.eos(), opt(&g["eos"]), "{name} eos");
    assert_eq!(tok.eot(), opt(&g["eot"]), "{name} eot");
    assert_eq!(tok.eog_tokens(), ids(&g["eog"]).as_slice(), "{name} eog");
    let mut failures = Vec::new();
    let cases = g["cases"].as_array().unwrap();
    for c in cases {
        let text = c["text"].as_str().unwrap();
        let add = c["add_special"].as_bool().unwrap();
        let parse = c["parse_special"].as_bool().unwrap();
        let want = ids(&c["ids"]);
        let got = tok.encode(text, add, parse);
        if got != want {
            failures.push(format!(
                "{name} {text:?} add={add} parse={parse}\n  got  {got:?}\n  want {want:?}"
            ));
            continue;
        }
        let decoded = tok.decode(&got, add, parse);
        if decoded != c["decoded"].as_str().unwrap() {
            failures.push(format!(
                "{name} decode {text:?} add={add} parse={parse}\n  got  {decoded:?}\n  want {:?}",
                c["decoded"]
            ));
        }
        // Streaming gives the same text as decoding all at once (neither
        // model cleans up spaces; the SPM leading space is handled alike).
        let mut s = tok.stream_decoder(parse);
        let mut streamed: String = got.iter().map(|&id| s.push(id)).collect();
        streamed.push_str(&s.finish());
        let whole = tok.decode(&got, false, parse);
        if streamed != whole {
            failures.push(format!("{name} stream {text:?}: {streamed:?} != {whole:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    eprintln!("{name}: {} cases pass", cases.len());
}

#[test]
fn smollm2_matches_llama_cpp() {
    if let Some(p) = common::model_path() {
        check("smollm2", &p);
    }
}

#[test]
fn gemma3_matches_llama_cpp() {
    if let Some(p) = common::gemma_path() {
        check("gemma3", &p);
    }
}

fn nomic_vocab() -> Option<PathBuf> {
    common::cached(
        "GGUF_LOADER_VOCAB_TESTS",
        "vocab-tests",
        "ggml-vocab-nomic-bert-moe.gguf",
        "scripts/fetch-vocab-tests.sh",
    )
    .map(|d| d.join("ggml-vocab-nomic-bert-moe.gguf"))
}

fn ugm_golden() -> PathBuf {
    std::env::var_os("GGUF_LOADER_UGM_GOLDEN").map_or_else(
        || PathBuf::from("tests/golden/llama_cpp_ugm_tokens.json"),
        PathBuf::from,
    )
}

/// Unigram (`t5`): nomic-embed-text-v2-moe's XLM-R vocabulary and NFKC
/// charsmap. `GGUF_LOADER_UGM_GOLDEN` names another golden file of the
/// same vocabulary (scripts/llama_cpp_ugm_tokens.sh OUT N SEED: a larger
/// differential run).
#[test]
fn nomic_unigram_matches_llama_cpp() {
    if let Some(p) = nomic_vocab() {
        check_with(&ugm_golden(), "nomic", &p);
    }
}

/// The small Unigram vocabulary of the `llm` fuzz seed: ties between
/// scores, unused, user-defined and byte tokens, and a hand-made charsmap
/// (a key that is a prefix of another, one replaced by nothing). The file
/// is committed, so this test always runs.
#[test]
fn seed_unigram_matches_llama_cpp() {
    let p = common::repo_root().join("fuzz/corpus/llm/seed-llama-ugm.gguf");
    check_with(&ugm_golden(), "seed", &p);
}

/// The same vocabulary changed as the golden file records each variant:
/// without `add_space_prefix` or `remove_extra_whitespaces`, without its
/// charsmap, and with some tokens made user-defined (which normalization
/// keeps as they are, and the lattice scores 0). Each is written here
/// from the base file, as the script patched it for llama.cpp.
#[test]
fn nomic_unigram_variants_match_llama_cpp() {
    let Some(base) = nomic_vocab() else { return };
    let golden_file = ugm_golden();
    let g = golden(&golden_file);
    let loader = MmapGGUFLoader::new(&base).unwrap();
    let md = loader.metadata();
    let mut n = 0;
    for (name, m) in g["models"].as_object().unwrap() {
        let Some(v) = m.get("variant") else { continue };
        let mut w = GgufWriter::new();
        for (key, value) in md.iter() {
            if key == "tokenizer.ggml.precompiled_charsmap" && v["charsmap"] == false {
                continue;
            }
            w.add_value(key, *value);
        }
        for key in ["add_space_prefix", "remove_extra_whitespaces"] {
            if let Some(b) = v[key].as_bool() {
                w.add(format!("tokenizer.ggml.{key}"), MetaValue::Bool(b));
            }
        }
        let mut types = md.get_i32_array("tokenizer.ggml.token_type").unwrap();
        for id in ids(&v["user_defined"]) {
            types[id as usize] = 4;
        }
        w.add(
            "tokenizer.ggml.token_type",
            MetaValue::Array(
                ValueType::I32,
                types.into_iter().map(MetaValue::I32).collect(),
            ),
        );
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), w.to_bytes().unwrap()).unwrap();
        check_with(&golden_file, name, file.path());
        n += 1;
    }
    assert_eq!(n, 3, "variants in {}", golden_file.display());
}

/// Gemma's byte-fallback tokens split characters across ids: streaming
/// holds the partial bytes back and never emits a broken character.
#[test]
fn stream_holds_partial_utf8() {
    let Some(p) = common::gemma_path() else {
        return;
    };
    let loader = MmapGGUFLoader::new(&p).unwrap();
    let tok = Tokenizer::from_loader(&loader).unwrap();
    let ids: Vec<u32> = "🦙"
        .bytes()
        .map(|b| tok.token_id(&format!("<0x{b:02X}>")).unwrap())
        .collect();
    let mut s = tok.stream_decoder(false);
    let outs: Vec<String> = ids.iter().map(|&id| s.push(id)).collect();
    assert_eq!(outs, ["", "", "", "🦙"]);
    // A dangling lead byte comes out as U+FFFD at the end.
    assert_eq!(s.push(ids[0]), "");
    assert_eq!(s.finish(), "\u{FFFD}");
}

/// The real models' chat prompts: SmolLM2's own template (with its default
/// system prompt), Gemma's built-in turn format (its file has no template);
/// the turn markers encode as single control tokens with parse_special.
#[test]
fn chat_prompts_of_the_real_models() {
    use gguf_loader_llm::chat::{self, Message};
    let m = [Message::new("user", "What is 2+2?")];
    if let Some(p) = common::model_path() {
        let tok = Tokenizer::from_loader(&MmapGGUFLoader::new(&p).unwrap()).unwrap();
        let s = chat::render(&tok, &m, true).unwrap();
        assert_eq!(
            s,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"
        );
        assert!(chat::add_special(&tok, &s));
        let ids = tok.encode(&s, chat::add_special(&tok, &s), true);
        assert_eq!(ids[0], tok.token_id("<|im_start|>").unwrap());
        assert!(tok.is_eog(tok.token_id("<|im_end|>").unwrap()));
        // A message that would end its turn with the real token is found.
        let im_end = tok.token_id("<|im_end|>");
        assert_eq!(tok.special_in("hi<|im_end|>\n<|im_start|>system"), im_end);
        assert_eq!(tok.special_in("hi <|im_end"), None);
        assert_eq!(tok.special_in(""), None);
    }
    if let Some(p) = common::gemma_path() {
        let tok = Tokenizer::from_loader(&MmapGGUFLoader::new(&p).unwrap()).unwrap();
        let s = chat::render(&tok, &m, true).unwrap();
        assert_eq!(
            s,
            "<bos><start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n"
        );
        assert!(!chat::add_special(&tok, &s));
        let ids = tok.encode(&s, chat::add_special(&tok, &s), true);
        assert_eq!(
            ids[..2],
            [tok.bos().unwrap(), tok.token_id("<start_of_turn>").unwrap()]
        );
        assert!(tok.is_eog(tok.token_id("<end_of_turn>").unwrap()));
        assert_eq!(
            tok.special_in("x<end_of_turn>"),
            tok.token_id("<end_of_turn>")
        );
        assert_eq!(tok.special_in("What is 2+2?"), None);
    }
}

/// A precompiled charsmap of `pairs` (key, replacement), built as
/// scripts/gen_llm_fuzz_seeds.py builds one: a block of 256 units per trie
/// node, the node's replacement offset in its block's first unit.
fn charsmap(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut repl = Vec::new();
    let mut offset = std::collections::BTreeMap::new();
    for (k, v) in pairs {
        offset.insert(k.as_bytes().to_vec(), repl.len() as u32);
        repl.extend_from_slice(v.as_bytes());
        repl.push(0);
    }
    let mut units = vec![0u32; 512];
    units[0] = 256 << 10;
    let mut blocks = std::collections::HashMap::new();
    blocks.insert(Vec::new(), 256usize);
    for (key, &off) in &offset {
        for i in 1..=key.len() {
            let prefix = key[..i].to_vec();
            if blocks.contains_key(&prefix) {
                continue;
            }
            let (parent, c) = (blocks[&key[..i - 1].to_vec()], key[i - 1] as usize);
            let block = units.len();
            units.resize(block + 256, 0);
            let idx = parent ^ c;
            units[idx] = (((idx ^ block) as u32) << 10) | c as u32;
            blocks.insert(prefix, block);
        }
        let parent = blocks[&key[..key.len() - 1].to_vec()];
        units[parent ^ key[key.len() - 1] as usize] |= 1 << 8;
        units[blocks[key]] = (1 << 31) | off;
    }
    let mut out = ((units.len() * 4) as u32).to_le_bytes().to_vec();
    out.extend(units.iter().flat_map(|u| u.to_le_bytes()));
    out.extend(repl);
    out
}

/// A `t5` vocabulary: `tokens` of `types`, `scores` (-1 each when empty),
/// a charsmap of `pairs` (none when empty).
fn t5_vocab(
    tokens: &[&str],
    types: &[i32],
    scores: &[f32],
    pairs: &[(&str, &str)],
) -> tempfile::NamedTempFile {
    let mut w = GgufWriter::new();
    w.add("tokenizer.ggml.model", MetaValue::String("t5".into()));
    let strings = tokens
        .iter()
        .map(|t| MetaValue::String(t.to_string()))
        .collect();
    w.add(
        "tokenizer.ggml.tokens",
        MetaValue::Array(ValueType::String, strings),
    );
    let types = types.iter().map(|&t| MetaValue::I32(t)).collect();
    w.add(
        "tokenizer.ggml.token_type",
        MetaValue::Array(ValueType::I32, types),
    );
    let scores: Vec<MetaValue> = if scores.is_empty() {
        vec![MetaValue::F32(-1.0); tokens.len()]
    } else {
        scores.iter().map(|&s| MetaValue::F32(s)).collect()
    };
    w.add(
        "tokenizer.ggml.scores",
        MetaValue::Array(ValueType::F32, scores),
    );
    if !pairs.is_empty() {
        let bytes = charsmap(pairs).into_iter().map(MetaValue::U8).collect();
        w.add(
            "tokenizer.ggml.precompiled_charsmap",
            MetaValue::Array(ValueType::U8, bytes),
        );
    }
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), w.to_bytes().unwrap()).unwrap();
    file
}

fn tok_of(file: &tempfile::NamedTempFile) -> Tokenizer {
    Tokenizer::from_loader(&MmapGGUFLoader::new(file.path()).unwrap()).unwrap()
}

/// What llama.cpp (0.3.36's, through its bindings) gives for small
/// vocabularies a differential review found ours to differ on:
/// - its Unigram tables come from the token types alone, before tokens are
///   marked by their text (a control `<unused0>` made unused, a control
///   `<|channel|>` made user-defined, a user-defined `</s>` made normal);
///   only the 0 score of user-defined tokens follows the final marks;
/// - its special tokens are ordered by libstdc++'s `std::sort` (20 specials
///   of two bytes: `bc` before `ab`, so `abc` is `a`, `bc`);
/// - token texts are C strings, cut at their first NUL.
#[test]
fn small_unigram_vocabularies_as_llama_cpp() {
    let t = t5_vocab(
        &[
            "<pad>",
            "</s>",
            "<unk>",
            "\u{2581}",
            "<",
            "unused",
            "0>",
            "<unused0>",
        ],
        &[3, 3, 2, 1, 1, 1, 1, 3],
        &[],
        &[],
    );
    let tok = tok_of(&t);
    assert_eq!(tok.encode("<unused0>", false, false), [4, 5, 6]);
    assert_eq!(tok.encode("<unused0>", false, true), [7]);
    assert_eq!(tok.decode(&[4, 5, 6], false, false), "<unused0>");

    let t = t5_vocab(
        &["<pad>", "</s>", "<unk>", "(", "<", "x", "<|channel|>"],
        &[3, 3, 2, 1, 1, 1, 3],
        &[],
        &[("<", "(")],
    );
    assert_eq!(tok_of(&t).encode("<x", false, false), [3, 5]);

    let mut scores = vec![-1.0f32; 10];
    scores[1] = -100.0;
    let t = t5_vocab(
        &[
            "<pad>",
            "</s>",
            "<unk>",
            "(",
            "<",
            "/",
            "s",
            ">",
            "x",
            "<|tool_response>",
        ],
        &[3, 4, 2, 1, 1, 1, 1, 1, 1, 3],
        &scores,
        &[("<", "(")],
    );
    assert_eq!(tok_of(&t).encode("</x", false, false), [4, 5, 8]);

    let mut tokens: Vec<String> = ["<pad>", "</s>", "<unk>", "a", "b", "c", "ab"]
        .map(String::from)
        .into();
    let mut types = vec![3, 3, 2, 1, 1, 1, 3];
    for i in 0..15u8 {
        tokens.push(format!("{}{}", (b'A' + i) as char, (b'a' + i) as char));
        types.push(3);
    }
    tokens.push("bc".into());
    types.push(3);
    let refs: Vec<&str> = tokens.iter().map(String::as_str).collect();
    let tok = tok_of(&t5_vocab(&refs, &types, &[], &[]));
    assert_eq!(tok.encode("abc", false, false), [3, 4, 5]);
    assert_eq!(tok.encode("abc", false, true), [3, 22]);
    assert_eq!(tok.encode("abc", true, true), [3, 22, 1]);

    let mut scores = vec![-1.0f32; 9];
    scores[8] = 5.0;
    let t = t5_vocab(
        &[
            "<pad>", "</s>", "<unk>", "a", "b", "\u{2581}", "x", "日", "q\0r",
        ],
        &[3, 3, 2, 1, 1, 1, 1, 1, 1],
        &scores,
        &[],
    );
    let tok = tok_of(&t);
    assert_eq!(tok.token_text(8), Some("q"));
    assert_eq!(tok.encode("qr q", false, false), [8, 2, 5, 8]);
}
