//! Writes arbitrary bytes to a file and runs gguf-loader-llm over it, as
//! `gguf-loader tokenize` and `generate --chat` would: builds the GGUF's
//! tokenizer (and again from its keys' own GGUF, as a pickle holds them),
//! encodes fixed texts and the vocabulary's own tokens (with and without
//! special tokens), decodes them whole and streamed, renders the chat
//! template, then builds the forward pass, eager and lazy, and runs a
//! few tokens through it and a perplexity of two chunks. Everything a file
//! sizes (layers, widths, the vocabulary, its pieces) is hostile here: the
//! only allowed outcomes are values or typed errors, in bounded time and
//! memory.
#![no_main]

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use gguf_loader::{LoadMode, MmapGGUFLoader};
use gguf_loader_llm::chat::{self, Message};
use gguf_loader_llm::forward::{check_logits, ForwardError, Sampler, Transformer};
use gguf_loader_llm::perplexity;
use gguf_loader_llm::tokenizer::Tokenizer;
use libfuzzer_sys::fuzz_target;

/// Decoded values at most (f32), as the `lazy` target.
const MAX_VALUES: u64 = 1 << 22;

const TEXTS: &[&str] = &[
    "",
    " ",
    "Hello world",
    " hello  World!\n\n\tthe capital of France is Paris. 3.14159 1234567",
    "<|im_start|>user\nhi<|im_end|><s></s><start_of_turn>",
    "ñ 中文 😀 \u{2581}x \u{0120}y \u{200b}",
    "don't I'LL we've   ",
];

fn scratch() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        std::env::temp_dir().join(format!("gguf-loader-fuzz-llm-{}.gguf", std::process::id()))
    })
}

fn tokenizer(tok: &Tokenizer) {
    let n = tok.vocab_size();
    assert!(n > 0);
    let own: Vec<String> = (0..n.min(64) as u32)
        .filter_map(|i| tok.token_text(i).map(str::to_owned))
        .collect();
    for text in TEXTS.iter().copied().chain(own.iter().map(String::as_str)) {
        for (add, parse) in [(false, false), (true, true)] {
            let ids = tok.encode(text, add, parse);
            assert!(
                ids.iter().all(|&id| (id as usize) < n),
                "ids in the vocabulary"
            );
            let _ = tok.decode_bytes(&ids, false, parse);
            let _ = tok.decode(&ids, true, parse);
            let mut stream = tok.stream_decoder(parse);
            for &id in &ids {
                let _ = stream.push(id);
            }
            let _ = stream.finish();
        }
    }
    for id in [0, 1, n as u32 - 1, n as u32, u32::MAX] {
        let _ = tok.token_to_piece(id, true);
        let _ = tok.token_text(id);
        let _ = tok.is_eog(id);
    }
    let chat = [
        Message::new("system", "Be brief."),
        Message::new("user", "hi"),
        Message::new("assistant", "Hello."),
        Message::new("user", "What is 2+2?"),
    ];
    if let Ok(prompt) = chat::render(tok, &chat, true) {
        let add = chat::add_special(tok, &prompt);
        let _ = tok.encode(&prompt, add, true);
    }
}

fn run(model: Result<Transformer<f32>, ForwardError>) {
    let Ok(model) = model else { return };
    let n = model.config().n_vocab;
    assert!(n > 0);
    let Ok(mut cache) = model.new_cache(4) else {
        return;
    };
    let tokens: Vec<u32> = [0, 1, 2].iter().map(|&t| t % n as u32).collect();
    match model.forward(&mut cache, &tokens, true) {
        Ok(logits) => {
            assert_eq!(logits.len(), tokens.len() * n);
            // The weights may hold NaN or Inf: logits with NaN (or nothing
            // finite) are an error of `forward`, so what it returns can be
            // sampled, and every sampler answers.
            let last = &logits[logits.len() - n..];
            assert!(check_logits(&logits, n, 0).is_ok());
            for mut s in [Sampler::greedy(), Sampler::new(0.8, 0.9, 7)] {
                let id = s.sample(last).expect("checked logits give a token");
                assert!((id as usize) < n);
            }
        }
        Err(_) => return,
    }
    // Perplexity over two chunks of 4, BOS first: each row scored, or a
    // typed error; never NaN (every token's negative log likelihood is at
    // least 0, or infinite).
    if let Ok(mut pc) = model.new_cache(4) {
        let text: Vec<u32> = (0..8u32).map(|t| t % n as u32).collect();
        let plan = perplexity::chunks(text.len(), 4, None).expect("two chunks of 4");
        let step = |ids: &[u32], fresh: bool, all: bool| {
            if fresh {
                pc.clear();
            }
            model.forward(&mut pc, ids, all)
        };
        if let Ok(p) = perplexity::evaluate(&text, &plan, Some(0), 2, step, |_, _, _| Ok(())) {
            assert_eq!(p.count(), 2);
            assert!(p.value() >= 1.0, "{p:?}");
        }
    }
    // One more, then past the cache and past the vocabulary: errors.
    let _ = model.forward(&mut cache, &tokens[..1], false);
    assert!(model.forward(&mut cache, &tokens, false).is_err());
    let mut fresh = match model.new_cache(1) {
        Ok(c) => c,
        Err(_) => return,
    };
    assert!(model.forward(&mut fresh, &[n as u32], false).is_err());
}

fn walk(path: &PathBuf, mode: LoadMode) {
    let Ok(loader) = MmapGGUFLoader::open(path, mode) else {
        return;
    };
    match Tokenizer::from_loader(&loader) {
        Ok(tok) => {
            tokenizer(&tok);
            // Its keys' own GGUF (what the Python package pickles) makes
            // the same tokenizer.
            let gguf = Tokenizer::metadata_gguf(loader.metadata()).expect("its keys' GGUF");
            let again = Tokenizer::from_gguf_bytes(&gguf).expect("the same tokenizer");
            for text in TEXTS {
                assert_eq!(again.encode(text, true, true), tok.encode(text, true, true));
            }
        }
        Err(e) => drop(e.to_string()),
    }
    if loader.tensors().map(|t| t.n_elements).sum::<u64>() > MAX_VALUES {
        return;
    }
    run(Transformer::<f32>::load(&loader));
    run(Transformer::<f32>::load_lazy(Arc::new(loader)));
}

fuzz_target!(|data: &[u8]| {
    let path = scratch();
    if std::fs::write(path, data).is_err() {
        return;
    }
    walk(path, LoadMode::Mmap);
    if data.len() % 7 == 0 {
        walk(path, LoadMode::Read);
    }
});
