//! The forward pass against llama.cpp: on the real models (loaded to f16,
//! the same weights as the F16 GGUF llama.cpp ran), the logits of every
//! prompt position match llama.cpp's with NMSE ≤ 1e-4, and greedy decoding
//! gives llama.cpp's first 32 tokens. The golden files come from
//! `scripts/llama_cpp_logits.sh` (tests/golden/logits).

#[path = "../../gguf-loader/tests/common/mod.rs"]
mod common;

use std::io::Read;
use std::path::Path;

use gguf_loader::{f16, MmapGGUFLoader};
use gguf_loader_llm::forward::{argmax, nmse, Transformer};

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

fn check(name: &str, path: &Path) {
    let loader = MmapGGUFLoader::new(path).unwrap();
    let model = Transformer::<f16>::load(&loader).unwrap();
    let n_vocab = model.config().n_vocab;
    for (pi, p) in golden(name).iter().enumerate() {
        let mut cache = model.new_cache(p.ids.len() + p.greedy.len()).unwrap();
        let logits = model.forward(&mut cache, &p.ids, true).unwrap();
        let errors: Vec<f64> = p
            .logits
            .iter()
            .enumerate()
            .map(|(pos, want)| nmse(&logits[pos * n_vocab..(pos + 1) * n_vocab], want))
            .collect();
        let shown: Vec<String> = errors.iter().map(|e| format!("{e:.2e}")).collect();
        eprintln!("{name} prompt {pi}: NMSE per position {}", shown.join(" "));
        for (pos, e) in errors.iter().enumerate() {
            assert!(
                *e <= MAX_NMSE,
                "{name} prompt {pi} position {pos}: NMSE {e:.3e}"
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
            last = model.forward(&mut cache, &[t], false).unwrap();
        }
        assert_eq!(ours, p.greedy, "{name} prompt {pi}: greedy continuation");
    }
}

#[test]
fn smollm2_logits_and_greedy_tokens_match_llama_cpp() {
    let Some(path) = common::model_path() else {
        return;
    };
    check("smollm2", &path);
}

#[test]
fn gemma3_logits_and_greedy_tokens_match_llama_cpp() {
    let Some(path) = common::gemma_path() else {
        return;
    };
    check("gemma3", &path);
}
