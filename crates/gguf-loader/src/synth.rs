//! Synthetic models: the real tensor shapes and metadata of an architecture,
//! with random weights of any type. The stand-in for real checkpoints in
//! benchmarks and device checks.

use half::{bf16, f16};

use crate::format::blocks::{scale_fields, ScaleEnc};
use crate::format::{GgmlType, GgufWriter, MetaValue};

/// A transformer shape to synthesize (llama architecture): the real tensor
/// shapes and metadata of a model, for [`synthesize`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preset {
    /// The name the CLI's `synth --preset` takes.
    pub name: &'static str,
    /// Transformer blocks.
    pub layers: u64,
    /// Embedding width.
    pub dim: u64,
    /// Feed-forward width.
    pub ff: u64,
    /// Attention heads.
    pub heads: u64,
    /// Key/value heads (grouped-query attention).
    pub kv_heads: u64,
    /// Vocabulary size.
    pub vocab: u64,
    /// Context length written to the metadata.
    pub context: u64,
}

impl Preset {
    /// TinyLlama-1.1B: 22 layers, dim 2048, ff 5632, 32 heads, 4 KV heads, vocab 32000.
    pub const TINYLLAMA_1_1B: Preset = Preset {
        name: "tinyllama-1.1b",
        layers: 22,
        dim: 2048,
        ff: 5632,
        heads: 32,
        kv_heads: 4,
        vocab: 32000,
        context: 2048,
    };

    /// SmolLM2-135M: 30 layers, dim 576, ff 1536, 9 heads, 3 KV heads, vocab 49152.
    pub const SMOLLM2_135M: Preset = Preset {
        name: "smollm2-135m",
        layers: 30,
        dim: 576,
        ff: 1536,
        heads: 9,
        kv_heads: 3,
        vocab: 49152,
        context: 8192,
    };

    /// Llama-2-7B: 32 layers, dim 4096, ff 11008, 32 heads, 32 KV heads,
    /// vocab 32000 (the large GPU benchmarks: about 3.8 GB as Q4_K).
    pub const LLAMA2_7B: Preset = Preset {
        name: "llama2-7b",
        layers: 32,
        dim: 4096,
        ff: 11008,
        heads: 32,
        kv_heads: 32,
        vocab: 32000,
        context: 4096,
    };

    /// A tiny llama for tests: 2 layers, dim 256.
    pub const TINY_TEST: Preset = Preset {
        name: "tiny-test",
        layers: 2,
        dim: 256,
        ff: 512,
        heads: 4,
        kv_heads: 2,
        vocab: 512,
        context: 512,
    };

    /// Every preset.
    pub const ALL: &'static [Preset] = &[
        Self::TINYLLAMA_1_1B,
        Self::SMOLLM2_135M,
        Self::LLAMA2_7B,
        Self::TINY_TEST,
    ];

    /// The preset with this name.
    pub fn by_name(name: &str) -> Option<Preset> {
        Self::ALL.iter().copied().find(|p| p.name == name)
    }
}

/// xorshift64*: fast, deterministic bytes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn fill(&mut self, out: &mut [u8]) {
        let mut chunks = out.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.next().to_le_bytes());
        }
        let tail = chunks.into_remainder();
        let last = self.next().to_le_bytes();
        tail.copy_from_slice(&last[..tail.len()]);
    }

    /// Uniform in [-1, 1).
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

/// Random blocks of `ty` whose scales are finite and small, so that every
/// decoded value is finite; `OutOfMemory` when they cannot be allocated.
fn random_blocks(ty: GgmlType, n_elements: u64, seed: u64) -> std::io::Result<Vec<u8>> {
    let mut rng = Rng(seed | 1);
    let size = ty
        .byte_size(n_elements)
        .and_then(|b| usize::try_from(b).ok())
        .ok_or_else(|| invalid(format!("{n_elements} elements of {ty}")))?;
    let mut bytes: Vec<u8> = Vec::new();
    bytes.try_reserve_exact(size).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::OutOfMemory,
            format!("cannot allocate {size} bytes for a tensor"),
        )
    })?;
    let n = n_elements as usize;
    match ty {
        GgmlType::F32 => bytes.extend((0..n).flat_map(|_| (rng.unit() * 0.1).to_le_bytes())),
        GgmlType::F16 => {
            bytes.extend((0..n).flat_map(|_| f16::from_f32(rng.unit() * 0.1).to_le_bytes()))
        }
        GgmlType::BF16 => {
            bytes.extend((0..n).flat_map(|_| bf16::from_f32(rng.unit() * 0.1).to_le_bytes()))
        }
        GgmlType::F64 => bytes.extend((0..n).flat_map(|_| f64::from(rng.unit()).to_le_bytes())),
        _ => {
            bytes.resize(size, 0);
            rng.fill(&mut bytes);
        }
    }
    let ts = ty.type_size() as usize;
    for block in bytes.chunks_exact_mut(ts) {
        for f in scale_fields(ty) {
            set_scale(f.enc, f.bytes_mut(block));
        }
    }
    Ok(bytes)
}

fn invalid(msg: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, msg)
}

/// Why preset `p` cannot make a model, if it cannot: a count of 0 where
/// one is needed, heads that do not divide the width or the KV heads, or a
/// value the metadata's uint32 cannot hold.
/// The most layers a preset may have: far beyond any model (the largest
/// have about 128), and a tensor table of tens of megabytes.
const MAX_LAYERS: u64 = 1 << 16;

fn check(p: &Preset) -> std::io::Result<()> {
    let fields = [
        ("layers", p.layers),
        ("dim", p.dim),
        ("ff", p.ff),
        ("heads", p.heads),
        ("kv_heads", p.kv_heads),
        ("vocab", p.vocab),
        ("context", p.context),
    ];
    for (name, v) in fields {
        if v == 0 || v > u64::from(u32::MAX) {
            return Err(invalid(format!(
                "preset '{}': {name} is {v} (1 to {} for a model)",
                p.name,
                u32::MAX
            )));
        }
    }
    // Every layer is nine entries of the tensor table, which is held in
    // memory (a header precedes the data): four billion layers once
    // aborted on an allocation of the table, before any tensor.
    if p.layers > MAX_LAYERS {
        return Err(invalid(format!(
            "preset '{}': layers is {} (1 to {MAX_LAYERS} for a model)",
            p.name, p.layers
        )));
    }
    if !p.dim.is_multiple_of(p.heads) || !p.heads.is_multiple_of(p.kv_heads) {
        return Err(invalid(format!(
            "preset '{}': {} heads do not divide the width {} or are not a multiple of the {} KV heads",
            p.name, p.heads, p.dim, p.kv_heads
        )));
    }
    Ok(())
}

/// Writes a small finite scale into the bytes of a scale field stored as `enc`.
fn set_scale(enc: ScaleEnc, field: &mut [u8]) {
    match enc {
        ScaleEnc::F16 => field.copy_from_slice(&f16::from_f32(0.0123).to_le_bytes()),
        ScaleEnc::F32 => field.copy_from_slice(&0.0123f32.to_le_bytes()),
        // 2^(e - 127): 120 gives 2^-7.
        ScaleEnc::E8M0 => field.fill(120),
        // One UE4M3 byte per sub-block.
        ScaleEnc::UE4M3 => field.fill(0x30),
        // The f16 scale is the top nibbles of the four u16 words (word 0
        // holds bits 0..4): 0x2c00 (0.0625), the block scales kept.
        ScaleEnc::Iq1mScale => {
            let bits = f16::from_f32(0.0625).to_bits();
            for (k, word) in field.chunks_exact_mut(2).enumerate() {
                let nibble = ((bits >> (4 * k)) & 0xf) as u8;
                word[1] = (word[1] & 0x0f) | (nibble << 4);
            }
        }
    }
}

/// The type a weight of row length `ne0` can take: `ty` when `ne0` is a
/// multiple of its block size, else Q8_0 or F16 (as llama-quantize falls back).
fn weight_type(ty: GgmlType, ne0: u64) -> GgmlType {
    [ty, GgmlType::Q8_0, GgmlType::F16]
        .into_iter()
        .find(|t| ne0.is_multiple_of(t.block_size()))
        .unwrap_or(GgmlType::F32)
}

/// `(name, ne, type)` of every tensor, in llama.cpp's order.
fn tensor_plan(p: &Preset, ty: GgmlType) -> Vec<(String, Vec<u64>, GgmlType)> {
    let kv = p.dim / p.heads * p.kv_heads;
    let w = |name: String, ne0: u64, ne1: u64| (name, vec![ne0, ne1], weight_type(ty, ne0));
    let mut out = vec![w("token_embd.weight".into(), p.dim, p.vocab)];
    for i in 0..p.layers {
        let b = |s: &str| format!("blk.{i}.{s}");
        out.push((b("attn_norm.weight"), vec![p.dim], GgmlType::F32));
        out.push(w(b("attn_q.weight"), p.dim, p.dim));
        out.push(w(b("attn_k.weight"), p.dim, kv));
        out.push(w(b("attn_v.weight"), p.dim, kv));
        out.push(w(b("attn_output.weight"), p.dim, p.dim));
        out.push((b("ffn_norm.weight"), vec![p.dim], GgmlType::F32));
        out.push(w(b("ffn_gate.weight"), p.dim, p.ff));
        out.push(w(b("ffn_up.weight"), p.dim, p.ff));
        out.push(w(b("ffn_down.weight"), p.ff, p.dim));
    }
    out.push(("output_norm.weight".into(), vec![p.dim], GgmlType::F32));
    out.push(w("output.weight".into(), p.dim, p.vocab));
    out
}

/// A whole synthetic GGUF file of preset `p`, its weights of type `ty`
/// (or the nearest type their row length allows, as llama-quantize falls
/// back) and its norms f32, with random finite values from `seed`, held in
/// memory. Write it with [`GgufWriter::write_to`]; [`write_synthetic`]
/// writes the same bytes holding one tensor at a time.
///
/// Errs (`InvalidInput`) on a preset no model has (a count of 0 or above
/// `u32::MAX`, more than 65 536 layers, heads that do not divide the width or the KV heads) or a
/// type that cannot hold one of the shapes, and (`OutOfMemory`) when a
/// tensor cannot be allocated.
pub fn synthesize(p: &Preset, ty: GgmlType, seed: u64) -> std::io::Result<GgufWriter<'static>> {
    check(p)?;
    let mut w = metadata(p, ty);
    for (i, (name, dims, t)) in tensor_plan(p, ty).into_iter().enumerate() {
        let data = tensor_data(t, &dims, seed, i)?;
        w.add_tensor(name, &dims, t, data)?;
    }
    Ok(w)
}

/// Writes what [`synthesize`] makes to `out`, byte for byte, generating one
/// tensor at a time: the memory it takes is the largest tensor's, not the
/// model's (a 7B model in f32 is 27 GB). Returns the bytes written; errs
/// as [`synthesize`] does, and with `out`'s error.
pub fn write_synthetic(
    p: &Preset,
    ty: GgmlType,
    seed: u64,
    out: impl std::io::Write,
) -> std::io::Result<u64> {
    check(p)?;
    let mut w = metadata(p, ty);
    let plan = tensor_plan(p, ty);
    for (name, dims, t) in &plan {
        w.add_tensor_info(name.clone(), dims, *t)?;
    }
    let mut counted = Counted { out, bytes: 0 };
    let mut data = w.write_header(&mut counted)?;
    for (i, (_, dims, t)) in plan.into_iter().enumerate() {
        data.write_data(&tensor_data(t, &dims, seed, i)?)?;
    }
    data.finish()?;
    Ok(counted.bytes)
}

/// A writer that counts what goes through it.
struct Counted<W> {
    out: W,
    bytes: u64,
}

impl<W: std::io::Write> std::io::Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.out.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// The random bytes of the `i`-th tensor of a plan.
fn tensor_data(t: GgmlType, dims: &[u64], seed: u64, i: usize) -> std::io::Result<Vec<u8>> {
    let n = dims
        .iter()
        .try_fold(1u64, |a, d| a.checked_mul(*d))
        .ok_or_else(|| invalid(format!("{dims:?}: element count overflows")))?;
    random_blocks(t, n, seed.wrapping_add(i as u64 * 0x9e37_79b9))
}

/// The metadata of a synthetic model: llama's keys for preset `p`.
fn metadata(p: &Preset, ty: GgmlType) -> GgufWriter<'static> {
    let mut w = GgufWriter::new();
    let s = |v: &str| MetaValue::String(v.into());
    let u = MetaValue::U32;
    let arch = "llama";
    w.add("general.architecture", s(arch))
        .add(
            "general.name",
            s(&format!("synthetic {} {}", p.name, ty.name())),
        )
        .add(format!("{arch}.block_count"), u(p.layers as u32))
        .add(format!("{arch}.context_length"), u(p.context as u32))
        .add(format!("{arch}.embedding_length"), u(p.dim as u32))
        .add(format!("{arch}.feed_forward_length"), u(p.ff as u32))
        .add(format!("{arch}.attention.head_count"), u(p.heads as u32))
        .add(
            format!("{arch}.attention.head_count_kv"),
            u(p.kv_heads as u32),
        )
        .add(format!("{arch}.rope.freq_base"), MetaValue::F32(10_000.0))
        .add(
            format!("{arch}.rope.dimension_count"),
            u((p.dim / p.heads) as u32),
        )
        .add(
            format!("{arch}.attention.layer_norm_rms_epsilon"),
            MetaValue::F32(1e-5),
        )
        .add(format!("{arch}.vocab_size"), u(p.vocab as u32))
        .add("general.quantization_version", u(2));
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streamed_file_is_the_one_held_in_memory() {
        for ty in [
            GgmlType::Q4_0,
            GgmlType::F32,
            GgmlType::Q6_K,
            GgmlType::IQ2_XXS,
        ] {
            let held = synthesize(&Preset::TINY_TEST, ty, 9)
                .unwrap()
                .to_bytes()
                .unwrap();
            let mut streamed = Vec::new();
            let n = write_synthetic(&Preset::TINY_TEST, ty, 9, &mut streamed).unwrap();
            assert_eq!(n, streamed.len() as u64, "{ty}");
            assert!(held == streamed, "{ty}");
        }
    }

    /// `Preset`'s fields are public: a shape no model has is an error, not a
    /// division by zero, a truncated uint32 or an aborting allocation.
    #[test]
    fn presets_no_model_has_are_errors() {
        use std::io::ErrorKind;
        let t = Preset::TINY_TEST;
        for (p, says) in [
            (Preset { heads: 0, ..t }, "heads is 0"),
            (Preset { layers: 0, ..t }, "layers is 0"),
            (
                Preset {
                    layers: u64::from(u32::MAX),
                    ..t
                },
                "layers is 4294967295 (1 to 65536",
            ),
            (
                Preset {
                    context: (1 << 32) + 5,
                    ..t
                },
                "context is 4294967301",
            ),
            (
                Preset {
                    vocab: 1 << 33,
                    ..t
                },
                "vocab is 8589934592",
            ),
            (
                Preset { heads: 3, ..t },
                "3 heads do not divide the width 256",
            ),
            (
                Preset { kv_heads: 3, ..t },
                "not a multiple of the 3 KV heads",
            ),
        ] {
            let e = synthesize(&p, GgmlType::Q4_0, 1).err().unwrap();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{p:?}");
            assert!(e.to_string().contains(says), "{e}");
            let e = write_synthetic(&p, GgmlType::Q4_0, 1, std::io::sink()).unwrap_err();
            assert!(e.to_string().contains(says), "{e}");
        }
        // A petabyte of embeddings: refused by the allocator, not an abort.
        let huge = Preset {
            vocab: u64::from(u32::MAX),
            dim: 1 << 16,
            heads: 1 << 8,
            ..t
        };
        let e = write_synthetic(&huge, GgmlType::F32, 1, std::io::sink()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::OutOfMemory, "{e}");
    }
}
