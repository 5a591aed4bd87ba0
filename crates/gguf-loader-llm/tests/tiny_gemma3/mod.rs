//! A small gemma3 with a sliding window, written as a GGUF: the CPU's
//! tests (generation.rs) and the GPU's (forward_cuda.rs) run it.

use std::path::{Path, PathBuf};

use gguf_loader::{f16, GgmlType, GgufWriter, MetaValue};

/// A small gemma3 (two blocks, the first with a sliding window of
/// `window` positions; heads of 64 values, two query heads a KV head, the
/// batch kernels' widths) of F16 weights.
pub fn write(dir: &Path, window: u32) -> PathBuf {
    let (embd, head, n_head, n_kv, ff, vocab) = (128u64, 64u64, 4u64, 2u64, 256u64, 512u64);
    let mut w = GgufWriter::new();
    let k = |s: &str| format!("gemma3.{s}");
    w.add("general.architecture", MetaValue::String("gemma3".into()))
        .add(k("block_count"), MetaValue::U32(2))
        .add(k("embedding_length"), MetaValue::U32(embd as u32))
        .add(k("feed_forward_length"), MetaValue::U32(ff as u32))
        .add(k("attention.head_count"), MetaValue::U32(n_head as u32))
        .add(k("attention.head_count_kv"), MetaValue::U32(n_kv as u32))
        .add(k("attention.key_length"), MetaValue::U32(head as u32))
        .add(k("attention.layer_norm_rms_epsilon"), MetaValue::F32(1e-6))
        .add(k("attention.sliding_window"), MetaValue::U32(window))
        .add(k("attention.sliding_window_pattern"), MetaValue::U32(2))
        .add(k("rope.freq_base"), MetaValue::F32(1e6))
        .add(k("rope.freq_base_swa"), MetaValue::F32(10_000.0));
    let mut tensors: Vec<(String, Vec<u64>)> = vec![
        ("token_embd.weight".into(), vec![embd, vocab]),
        ("output_norm.weight".into(), vec![embd]),
    ];
    for il in 0..2 {
        let p = |s: &str| format!("blk.{il}.{s}.weight");
        tensors.extend([
            (p("attn_q"), vec![embd, n_head * head]),
            (p("attn_k"), vec![embd, n_kv * head]),
            (p("attn_v"), vec![embd, n_kv * head]),
            (p("attn_output"), vec![n_head * head, embd]),
            (p("ffn_gate"), vec![embd, ff]),
            (p("ffn_up"), vec![embd, ff]),
            (p("ffn_down"), vec![ff, embd]),
            (p("attn_norm"), vec![embd]),
            (p("ffn_norm"), vec![embd]),
            (p("attn_q_norm"), vec![head]),
            (p("attn_k_norm"), vec![head]),
            (p("post_attention_norm"), vec![embd]),
            (p("post_ffw_norm"), vec![embd]),
        ]);
    }
    for (i, (name, ne)) in tensors.iter().enumerate() {
        let n: u64 = ne.iter().product();
        let data: Vec<u8> = if ne.len() == 1 {
            (0..n).flat_map(|_| 1f32.to_le_bytes()).collect()
        } else {
            // In -2..2: attention scores spread over many positions.
            (0..n as u32)
                .flat_map(|j| {
                    let h = j.wrapping_mul(2_654_435_761) ^ (i as u32).wrapping_mul(40_503);
                    f16::from_f32((h % 4001) as f32 / 1000.0 - 2.0).to_le_bytes()
                })
                .collect()
        };
        let ty = if ne.len() == 1 {
            GgmlType::F32
        } else {
            GgmlType::F16
        };
        w.add_tensor(name.as_str(), ne, ty, data).unwrap();
    }
    let path = dir.join(format!("gemma3-window-{window}.gguf"));
    std::fs::write(&path, w.to_bytes().unwrap()).unwrap();
    path
}
