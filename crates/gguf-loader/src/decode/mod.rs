//! Decoding of ggml blocks into numbers: one scalar reference routine per type,
//! grouped by family as in ggml's `ggml-quants.c`.
//!
//! Every `dequantize_row_*` routine takes whole blocks: `src.len()` is a
//! multiple of the type's block byte size and `dst.len()` is
//! `src.len() / type_size * block_size`. The routines never panic on any
//! bytes; they walk `chunks_exact` pairs, so a mismatched tail is ignored.

pub mod float;
pub mod fp4;
pub mod iquants;
pub mod kquants;
pub mod legacy;
pub mod ternary;
