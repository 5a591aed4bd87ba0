//! gguf-loader-llm: a consumer of gguf-loader's public API that proves the
//! loaded weights right by running them: the tokenizer stored in the GGUF,
//! llama and gemma3 forward passes on the CPU (and, with `cuda`, on the
//! GPU), and generation. Not part of the loader.

#![deny(missing_docs)]

pub mod chat;
pub mod forward;
pub mod tokenizer;

pub use tokenizer::{StreamDecoder, Tokenizer, TokenizerError, TokenizerKind};
