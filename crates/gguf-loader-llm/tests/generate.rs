//! `Transformer::generate`: the tokens a hand-written loop of `forward`
//! and `Sampler::sample` gives, ending at `max_new`, after a stop token
//! (yielded), or when the cache is full; the last token is never run. On a
//! tiny synthesized llama and, where cached, the real SmolLM2.

#[path = "../../gguf-loader/tests/common/mod.rs"]
mod common;

use gguf_loader::{f16, GgmlType, MmapGGUFLoader, Preset};
use gguf_loader_llm::forward::{Sampler, Transformer};

/// The loop `generate` replaces: `n` tokens at most, ending after a stop
/// token or when the cache is full.
fn by_hand(
    model: &Transformer<f16>,
    prompt: &[u32],
    n: usize,
    stop: &[u32],
    cap: usize,
) -> Vec<u32> {
    let mut cache = model.new_cache(cap).unwrap();
    let mut sampler = Sampler::new(0.9, 0.9, 7);
    let mut logits = model.forward(&mut cache, prompt, false).unwrap();
    let mut out = Vec::new();
    while out.len() < n {
        let t = sampler.sample(&logits).unwrap();
        out.push(t);
        if stop.contains(&t) || cache.len() == cache.capacity() {
            break;
        }
        logits = model.forward(&mut cache, &[t], false).unwrap();
    }
    out
}

fn check(model: &Transformer<f16>, prompt: &[u32]) {
    let run = |n: usize, stop: &[u32], cap: usize| {
        let mut cache = model.new_cache(cap).unwrap();
        let ids: Vec<u32> = model
            .generate(&mut cache, prompt, Sampler::new(0.9, 0.9, 7), n, stop)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        // Every token yielded but the last has been run.
        assert_eq!(cache.len(), prompt.len() + ids.len().saturating_sub(1));
        ids
    };
    let p = prompt.len();
    let all = run(12, &[], p + 12);
    assert_eq!(all.len(), 12);
    assert_eq!(all, by_hand(model, prompt, 12, &[], p + 12));
    // A stop token ends it, yielded.
    let stop = [all[4]];
    let first = all.iter().position(|t| *t == all[4]).unwrap();
    assert_eq!(run(12, &stop, p + 12), all[..=first]);
    // A full cache ends it: the token sampled from its last position comes
    // out, and nothing after.
    assert_eq!(run(12, &[], p + 3), all[..4]);
    assert_eq!(run(12, &[], p + 3), by_hand(model, prompt, 12, &[], p + 3));
    assert!(run(0, &[], p + 3).is_empty());
    let mut cache = model.new_cache(4).unwrap();
    let mut g = model
        .generate(&mut cache, &[], Sampler::greedy(), 5, &[])
        .unwrap();
    assert!(g.next().is_none(), "an empty prompt yields nothing");
    // The prompt's own errors come from `generate`, a step's from the
    // iterator.
    let mut small = model.new_cache(p - 1).unwrap();
    assert!(model
        .generate(&mut small, prompt, Sampler::greedy(), 5, &[])
        .is_err());
}

#[test]
fn generate_yields_what_a_loop_of_forward_and_sample_gives() {
    let dir = tempfile::tempdir().unwrap();
    let path = common::write_synth(
        dir.path(),
        "tiny.gguf",
        &Preset::TINY_TEST,
        GgmlType::Q8_0,
        1,
    );
    let model = Transformer::<f16>::load(&MmapGGUFLoader::new(&path).unwrap()).unwrap();
    check(&model, &[1, 7, 300, 12]);
    if let Some(path) = common::model_path() {
        let model = Transformer::<f16>::load(&MmapGGUFLoader::new(&path).unwrap()).unwrap();
        // "The capital of France is".
        check(&model, &[504, 3458, 282, 4649, 314]);
    }
}
