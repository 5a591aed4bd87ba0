//! The tiny model the hostile-metadata tests build: its sizes and its
//! weights' bytes.

pub const N_EMBD: u64 = 8;
pub const N_HEAD: u32 = 2;
pub const N_KV: u32 = 1;
pub const HEAD: u64 = 4;
pub const N_FF: u64 = 16;
pub const N_VOCAB: u64 = 16;

/// `n` small f32 values (in -0.1..0.1), as little-endian bytes, different
/// for each `seed`.
pub fn f32_bytes(n: u64, seed: u32) -> Vec<u8> {
    (0..n as u32)
        .flat_map(|i| {
            (((i.wrapping_mul(2_654_435_761) ^ seed) % 1000) as f32 / 5000.0 - 0.1).to_le_bytes()
        })
        .collect()
}
