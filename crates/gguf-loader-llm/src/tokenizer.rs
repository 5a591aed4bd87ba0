//! The tokenizer stored in a GGUF: `gpt2` byte-level BPE and `llama` SentencePiece.
