//! Both real models' tokenizers against llama.cpp's tokenization of fixed
//! prompts (tests/golden/llama_cpp_tokens.json, written by
//! scripts/llama_cpp_tokens.sh): every add_special/parse_special
//! combination gives the same ids, decoding gives the same text, and the
//! special tokens agree. Skipped when a model is absent, as tests/common.

#[path = "../../gguf-loader/tests/common/mod.rs"]
mod common;

use std::path::Path;

use gguf_loader::MmapGGUFLoader;
use gguf_loader_llm::Tokenizer;
use serde_json::Value;

fn golden() -> Value {
    let p = common::repo_root().join("tests/golden/llama_cpp_tokens.json");
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
    let g = golden();
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
