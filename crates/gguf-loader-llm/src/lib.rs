//! gguf-loader-llm: a consumer of gguf-loader's public API that proves the
//! loaded weights right by running them: the tokenizer stored in the GGUF,
//! llama and gemma3 forward passes on the CPU (and, with `cuda`, on the
//! GPU), and generation. Not part of the loader.
//!
//! A chat turn, generated greedily and printed as it comes (what
//! `gguf-loader generate --chat` does, less its checks and timings):
//!
//! ```no_run
//! use std::io::Write;
//!
//! use gguf_loader::{f16, MmapGGUFLoader};
//! use gguf_loader_llm::chat::{self, Message};
//! use gguf_loader_llm::forward::{Sampler, Transformer};
//! use gguf_loader_llm::Tokenizer;
//!
//! let loader = MmapGGUFLoader::new("model.gguf")?;
//! let tok = Tokenizer::from_loader(&loader)?;
//! let model = Transformer::<f16>::load(&loader)?;
//!
//! let prompt = chat::render(&tok, &[Message::new("user", "Why is the sky blue?")], true)?;
//! let ids = tok.encode(&prompt, chat::add_special(&tok, &prompt), true);
//!
//! // Room for the prompt and 100 tokens; the model's own context is
//! // `model.config().context_length`.
//! let mut cache = model.new_cache(ids.len() + 100)?;
//! let mut logits = model.forward(&mut cache, &ids, false)?; // the last position's
//! let mut sampler = Sampler::greedy(); // or Sampler::new(0.8, 0.95, seed)
//! let mut text = tok.stream_decoder(false).continuing();
//! for _ in 0..100 {
//!     let Some(next) = sampler.sample(&logits) else { break };
//!     if tok.is_eog(next) {
//!         break;
//!     }
//!     print!("{}", text.push(next));
//!     std::io::stdout().flush()?;
//!     if cache.len() == cache.capacity() {
//!         break;
//!     }
//!     logits = model.forward(&mut cache, &[next], false)?;
//! }
//! println!("{}", text.finish());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! [`forward::Transformer::generate`] is that loop as an iterator of ids
//! (max tokens, stop tokens, a full cache), for a caller that needs no
//! per-token work. [`perplexity::evaluate`] scores a text as llama.cpp's
//! `llama-perplexity` does (`gguf-loader perplexity`).
//!
//! [`Tokenizer`], [`forward::Transformer`] and [`forward::KvCache`] are
//! `Send + Sync`: one model serves many threads, each with a cache of its
//! own (`forward` takes the model by `&self`, the cache by `&mut`). A
//! cache holds positions, and can be cloned or truncated to reuse a
//! common prefix ([`forward::KvCache::truncate`]); a sliding-window
//! layer's keeps only its window and a chunk more, unless made with
//! [`forward::SlidingWindow::Full`]. A tokenizer travels without its
//! model's file as [`Tokenizer::metadata_gguf`]'s small GGUF of the keys it
//! is built from, which [`Tokenizer::from_gguf_bytes`] makes into the same
//! tokenizer (the Python package pickles one so).

#![deny(missing_docs)]

pub mod chat;
pub mod forward;
pub mod perplexity;
pub mod tokenizer;

pub use tokenizer::{StreamDecoder, Tokenizer, TokenizerError, TokenizerKind};

/// The types the crate documents as shared between threads are.
#[allow(dead_code)]
fn _send_sync() {
    fn both<T: Send + Sync>() {}
    both::<Tokenizer>();
    both::<forward::Transformer<gguf_loader::f16>>();
    both::<forward::Transformer<f32>>();
    both::<forward::KvCache>();
    both::<forward::Sampler>();
}
