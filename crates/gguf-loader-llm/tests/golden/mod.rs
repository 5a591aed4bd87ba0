//! llama.cpp's logits for a few prompts of each real model
//! (tests/golden/logits, from `scripts/llama_cpp_logits.sh`), and the check
//! that a forward pass matches them: NMSE ≤ 1e-4 at every prompt position,
//! and llama.cpp's greedy continuation. Shared by the CPU (tests/forward.rs)
//! and GPU (tests/forward_cuda.rs) passes.

use std::io::Read;

use gguf_loader_llm::forward::{argmax, nmse};

use super::common;

const MAX_NMSE: f64 = 1e-4;

struct GoldenPrompt {
    ids: Vec<u32>,
    /// One row of n_vocab logits per prompt position.
    logits: Vec<Vec<f32>>,
    greedy: Vec<u32>,
}

fn golden(name: &str) -> Vec<GoldenPrompt> {
    let dir = common::repo_root().join("tests/golden/logits");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(format!("{name}.json"))).unwrap()).unwrap();
    let mut blob = Vec::new();
    flate2::read::GzDecoder::new(
        std::fs::File::open(dir.join(format!("{name}.logits.gz"))).unwrap(),
    )
    .read_to_end(&mut blob)
    .unwrap();
    let n_vocab = json["n_vocab"].as_u64().unwrap() as usize;
    let ids = |v: &serde_json::Value| -> Vec<u32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect()
    };
    let mut at = 0;
    let mut out = Vec::new();
    for p in json["prompts"].as_array().unwrap() {
        let mut logits = Vec::new();
        for (mean, step) in p["mean"]
            .as_array()
            .unwrap()
            .iter()
            .zip(p["step"].as_array().unwrap())
        {
            let (mean, step) = (mean.as_f64().unwrap(), step.as_f64().unwrap());
            let (hi, lo) = blob[at..at + 2 * n_vocab].split_at(n_vocab);
            logits.push(
                hi.iter()
                    .zip(lo)
                    .map(|(&h, &l)| (mean + i16::from_le_bytes([l, h]) as f64 * step) as f32)
                    .collect(),
            );
            at += 2 * n_vocab;
        }
        out.push(GoldenPrompt {
            ids: ids(&p["ids"]),
            logits,
            greedy: ids(&p["greedy"]),
        });
    }
    assert_eq!(at, blob.len(), "{name}: golden blob length");
    out
}

/// The `general.name` of the models the golden files were made from.
const MODEL_NAMES: [(&str, &str); 2] = [
    ("smollm2", "Smollm2 135M 8k Lc100K Mix1 Ep2"),
    ("gemma3", "Gemma 3 270m"),
];

/// Whether the file `loader` opened is the model of golden files `name`;
/// when not (a synthesized stand-in, as scripts/gpu-check.sh gives where
/// the real models cannot be fetched), says so and the check is skipped.
pub fn applies(name: &str, loader: &gguf_loader::MmapGGUFLoader) -> bool {
    let want = MODEL_NAMES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, m)| *m);
    let got = loader.metadata().get_str("general.name").ok();
    if want.is_some() && got == want {
        return true;
    }
    eprintln!("{name}: skipped, the file is {got:?}, not the model llama.cpp's logits came from");
    false
}

/// Checks a forward pass against llama.cpp's logits of `name` ("smollm2",
/// "gemma3"): `open(capacity)` starts a sequence (an empty KV cache), and
/// the closure it gives runs tokens at its next positions, returning the
/// logits (every position with `all`, else the last). `what` names the
/// pass in messages.
pub fn check<F>(name: &str, what: &str, n_vocab: usize, open: impl FnMut(usize) -> F)
where
    F: FnMut(&[u32], bool) -> Vec<f32>,
{
    check_within(name, what, n_vocab, MAX_NMSE, true, open)
}

/// [`check`] with a bound of `max_nmse`, and the greedy continuation
/// compared only with `greedy` (else reported).
pub fn check_within<F>(
    name: &str,
    what: &str,
    n_vocab: usize,
    max_nmse: f64,
    greedy: bool,
    mut open: impl FnMut(usize) -> F,
) where
    F: FnMut(&[u32], bool) -> Vec<f32>,
{
    for (pi, p) in golden(name).iter().enumerate() {
        let mut run = open(p.ids.len() + p.greedy.len());
        let logits = run(&p.ids, true);
        let errors: Vec<f64> = p
            .logits
            .iter()
            .enumerate()
            .map(|(pos, want)| nmse(&logits[pos * n_vocab..(pos + 1) * n_vocab], want))
            .collect();
        let shown: Vec<String> = errors.iter().map(|e| format!("{e:.2e}")).collect();
        eprintln!(
            "{name} ({what}) prompt {pi}: NMSE per position {}",
            shown.join(" ")
        );
        for (pos, e) in errors.iter().enumerate() {
            assert!(
                *e <= max_nmse,
                "{name} ({what}) prompt {pi} position {pos}: NMSE {e:.3e}"
            );
        }
        let mut last = logits[(p.ids.len() - 1) * n_vocab..].to_vec();
        let mut ours = Vec::new();
        for _ in 0..p.greedy.len() {
            let t = argmax(&last).unwrap();
            ours.push(t);
            if ours.len() == p.greedy.len() {
                break;
            }
            last = run(&[t], false);
        }
        if greedy {
            assert_eq!(
                ours, p.greedy,
                "{name} ({what}) prompt {pi}: greedy continuation"
            );
        } else {
            let same = ours
                .iter()
                .zip(&p.greedy)
                .take_while(|(a, b)| a == b)
                .count();
            eprintln!(
                "{name} ({what}) prompt {pi}: {same} of llama.cpp's {} greedy tokens before the first difference",
                p.greedy.len()
            );
        }
    }
}
