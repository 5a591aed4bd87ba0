//! The KV cache's and generation's API. A clone or a truncation of a cache
//! continues exactly as the cache it came from would (a common prefix
//! computed once), a cache made for a model of other widths is refused
//! with its own error, a cache too large to count or allocate names the
//! whole cache's bytes; the model carries its context length.
//! `Transformer::generate` gives the tokens a hand-written loop of
//! `forward` and `Sampler::sample` gives, ending at `max_new`, after a stop
//! token (yielded), or when the cache is full; the last token is never run.
//! On the real SmolLM2 where it is cached, and on tiny synthesized llamas.

#[path = "../../gguf-loader/tests/common/mod.rs"]
mod common;
mod tiny_gemma3;

use gguf_loader::{f16, GgmlType, MmapGGUFLoader, Preset};
use gguf_loader_llm::forward::{ForwardError, Sampler, Transformer};

fn tiny(dir: &std::path::Path, name: &str, preset: &Preset) -> Transformer<f16> {
    let path = common::write_synth(dir, name, preset, GgmlType::Q8_0, 1);
    Transformer::<f16>::load(&MmapGGUFLoader::new(&path).unwrap()).unwrap()
}

/// The real SmolLM2, where it is cached.
fn smollm2() -> Option<Transformer<f16>> {
    let path = common::model_path()?;
    Some(Transformer::<f16>::load(&MmapGGUFLoader::new(&path).unwrap()).unwrap())
}

/// The prefix once, then two continuations: from a clone, and from the
/// cache truncated back to the prefix; each gives the logits a fresh
/// cache gives for the whole sequence.
fn prefix_reuse(model: &Transformer<f16>, prefix: &[u32], a: &[u32], b: &[u32]) {
    let whole = |rest: &[u32]| {
        let mut c = model.new_cache(64).unwrap();
        let seq: Vec<u32> = prefix.iter().chain(rest).copied().collect();
        model.forward(&mut c, &seq, false).unwrap()
    };
    let mut cache = model.new_cache(64).unwrap();
    model.forward(&mut cache, prefix, false).unwrap();
    let mut fork = cache.clone();
    assert_eq!(fork.len(), prefix.len());
    assert_eq!(model.forward(&mut fork, a, false).unwrap(), whole(a));
    let mut fork = cache.try_clone().unwrap();
    assert_eq!(model.forward(&mut fork, b, false).unwrap(), whole(b));
    assert_eq!(model.forward(&mut cache, b, false).unwrap(), whole(b));
    cache.truncate(prefix.len());
    assert_eq!(cache.len(), prefix.len());
    assert_eq!(model.forward(&mut cache, a, false).unwrap(), whole(a));
    // Truncating past the end keeps every position.
    cache.truncate(1000);
    assert_eq!(cache.len(), prefix.len() + a.len());
}

#[test]
fn a_cloned_or_truncated_cache_continues_as_a_fresh_one() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny(dir.path(), "tiny.gguf", &Preset::TINY_TEST);
    prefix_reuse(&model, &[1, 7, 300, 12], &[5, 6], &[400, 2, 9]);
    if let Some(model) = smollm2() {
        // "The capital of France is" / " Paris" / " a".
        prefix_reuse(&model, &[504, 3458, 282, 4649, 314], &[7042], &[253, 1345]);
    }
}

#[test]
fn a_cache_of_other_widths_is_refused_by_its_own_error() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny(dir.path(), "tiny.gguf", &Preset::TINY_TEST);
    let wider = Preset {
        name: "tiny-wider",
        layers: 3,
        ..Preset::TINY_TEST
    };
    let other = tiny(dir.path(), "wider.gguf", &wider);
    let mut foreign = other.new_cache(8).unwrap();
    let e = model.forward(&mut foreign, &[1, 2], false).unwrap_err();
    assert!(
        matches!(
            e,
            ForwardError::CacheMismatch {
                expected: (128, 2),
                found: (128, 3)
            }
        ),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "the KV cache was made for another model (3 layers of 128 KV values, this one has 2 of 128)"
    );
    assert_eq!(foreign.len(), 0, "left as it was");
}

#[test]
fn a_cache_too_large_names_its_whole_size() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny(dir.path(), "tiny.gguf", &Preset::TINY_TEST);
    // 2 layers × K and V × 128 values × 2 bytes a position.
    let per_position = 2 * 2 * 128 * 2;
    let e = model.new_cache(usize::MAX / 2).unwrap_err();
    assert!(matches!(e, ForwardError::Alloc(usize::MAX)), "{e:?}");
    assert!(e.to_string().contains("the size overflows"), "{e}");
    let positions = 1usize << 44;
    let e = model.new_cache(positions).unwrap_err();
    assert!(
        matches!(e, ForwardError::Alloc(n) if n == positions * per_position),
        "{e:?}"
    );
    let cache = model.new_cache(3).unwrap();
    assert_eq!(cache.n_bytes(), 3 * per_position);
    let shown = format!("{cache:?}");
    assert_eq!(
        shown,
        "KvCache { len: 0, capacity: 3, layers: 2, kv_dim: 128 }"
    );
    let shown = format!("{model:?}");
    assert!(
        shown.starts_with("Transformer { config: Config { arch: Llama, n_layer: 2,")
            && shown.contains("device: Cpu, lazy: false, .. }"),
        "{shown}"
    );
    assert_eq!(model.config().context_length, Some(512));
}

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
    check(
        &tiny(dir.path(), "tiny.gguf", &Preset::TINY_TEST),
        &[1, 7, 300, 12],
    );
    if let Some(model) = smollm2() {
        // "The capital of France is".
        check(&model, &[504, 3458, 282, 4649, 314]);
    }
}

/// A prompt's logits at every position: at once, in two batches, and one
/// token at a time, bit for bit the same (the batched matrix and attention
/// kernels sum in the single-token order).
fn batched_is_one_at_a_time(model: &Transformer<f16>, prompt: &[u32]) {
    let n_vocab = model.config().n_vocab;
    let mut cache = model.new_cache(prompt.len()).unwrap();
    let whole = model.forward(&mut cache, prompt, true).unwrap();
    let mut cache = model.new_cache(prompt.len()).unwrap();
    let (a, b) = prompt.split_at(prompt.len() / 2 + 3);
    let mut halves = model.forward(&mut cache, a, true).unwrap();
    halves.extend(model.forward(&mut cache, b, true).unwrap());
    let mut cache = model.new_cache(prompt.len()).unwrap();
    let mut single = Vec::new();
    for &t in prompt {
        single.extend(model.forward(&mut cache, &[t], true).unwrap());
    }
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    for (what, got) in [("at once", &whole), ("in two batches", &halves)] {
        for (i, (g, s)) in got.chunks(n_vocab).zip(single.chunks(n_vocab)).enumerate() {
            assert!(
                bits(g) == bits(s),
                "position {i}: {what} is not one at a time"
            );
        }
    }
}

/// [`tiny_gemma3::write`]'s model, on the CPU.
fn tiny_gemma3(dir: &std::path::Path, window: u32) -> Transformer<f16> {
    let path = tiny_gemma3::write(dir, window);
    Transformer::<f16>::load(&MmapGGUFLoader::new(&path).unwrap()).unwrap()
}

#[test]
fn batched_logits_are_one_token_at_a_time_bit_for_bit() {
    // 300 positions: past a chunk of the batch kernels' weighted values
    // (128 positions), and past the span from which a single token's
    // attention is shared out by positions and dimensions (256).
    let prompt: Vec<u32> = (0..300).map(|i| (17 + 131 * i) % 500).collect();
    let dir = tempfile::tempdir().unwrap();
    let model = tiny(dir.path(), "tiny.gguf", &Preset::TINY_TEST);
    batched_is_one_at_a_time(&model, &prompt);
    if let Some(model) = smollm2() {
        batched_is_one_at_a_time(&model, &prompt);
    }
    if let Some(path) = common::gemma_path() {
        let model = Transformer::<f16>::load(&MmapGGUFLoader::new(&path).unwrap()).unwrap();
        batched_is_one_at_a_time(&model, &prompt);
    }
    // A sliding window shorter than the prompt: the rows a task of the
    // batch's attention takes together see different first positions (and
    // a single token's spans of 270 positions start past the first).
    for window in [5, 37, 270] {
        batched_is_one_at_a_time(&tiny_gemma3(dir.path(), window), &prompt);
    }
}

/// A cache's kept buffers (`KvCache` holds the last step's, for the next)
/// hold old values: none of them may reach a later step. After a longer
/// prompt and a few single tokens, the cache cleared, a shorter prompt
/// (a batch, by the lane kernel) and single tokens give a fresh cache's
/// logits, bit for bit, also where an old step's logits were handed back
/// ([`KvCache::recycle`]) for a later step's; on a llama and on a gemma3 whose sliding window
/// lets the layers see spans of other lengths.
#[test]
fn a_caches_kept_buffers_never_reach_a_later_step() {
    let dir = tempfile::tempdir().unwrap();
    let llama = tiny(dir.path(), "tiny.gguf", &Preset::TINY_TEST);
    let gemma = tiny_gemma3(dir.path(), 5);
    let long: Vec<u32> = (0..120).map(|i| (29 + 97 * i) % 500).collect();
    let short: Vec<u32> = (0..40).map(|i| (3 + 53 * i) % 500).collect();
    let tail = [7u32, 301, 44];
    for model in [&llama, &gemma] {
        let run = |cache: &mut gguf_loader_llm::forward::KvCache| {
            let mut logits = model.forward(cache, &short, true).unwrap();
            for &t in &tail {
                logits.extend(model.forward(cache, &[t], true).unwrap());
            }
            logits
        };
        let mut fresh = model.new_cache(200).unwrap();
        let want = run(&mut fresh);
        let mut used = model.new_cache(200).unwrap();
        let old = model.forward(&mut used, &long, true).unwrap();
        for &t in &tail {
            model.forward(&mut used, &[t], false).unwrap();
        }
        used.clear();
        // The long step's logits handed back: the next step writes its own
        // into them, over the old values.
        used.recycle(old);
        let got = run(&mut used);
        assert!(
            want.iter()
                .zip(&got)
                .all(|(a, b)| a.to_bits() == b.to_bits())
                && want.len() == got.len(),
            "{model:?}"
        );
    }
}

/// The logits of `prompt` (at once, every position) and of `more` tokens
/// after it (one at a time), through `cache`.
fn run_through(
    model: &Transformer<f16>,
    cache: &mut gguf_loader_llm::forward::KvCache,
    prompt: &[u32],
    more: &[u32],
) -> Vec<u32> {
    let mut logits = model.forward(cache, prompt, true).unwrap();
    for &t in more {
        logits.extend(model.forward(cache, &[t], true).unwrap());
    }
    logits.iter().map(|v| v.to_bits()).collect()
}

/// A sliding-window layer's ring (the last `window + chunk` positions,
/// each written at two rows) gives the logits of a cache that keeps every
/// position, bit for bit: a prompt longer than the chunk (run a chunk at
/// a time), single tokens after it, and a truncation back by the chunk.
/// Truncated further back, the next step is `Forgotten`, and the cache is
/// left as it was.
#[test]
fn a_sliding_windows_ring_gives_the_full_caches_logits() {
    use gguf_loader_llm::forward::SlidingWindow;
    let dir = tempfile::tempdir().unwrap();
    let prompt: Vec<u32> = (0..300).map(|i| (17 + 131 * i) % 500).collect();
    let more: Vec<u32> = (0..20).map(|i| (5 + 71 * i) % 500).collect();
    let again = [9u32, 250, 77];
    for window in [5u32, 37, 270] {
        let model = tiny_gemma3(dir.path(), window);
        let mut full = model.new_cache_with(400, SlidingWindow::Full).unwrap();
        let want = run_through(&model, &mut full, &prompt, &more);
        for chunk in [1usize, 7, 64] {
            let what = format!("window {window}, chunk {chunk}");
            let mut ring = model
                .new_cache_with(400, SlidingWindow::Ring { chunk })
                .unwrap();
            let ringed = 2 * (window as usize + chunk) < 400;
            assert_eq!(ring.n_bytes() < full.n_bytes(), ringed, "{what}");
            assert!(
                run_through(&model, &mut ring, &prompt, &more) == want,
                "{what}"
            );

            // Back by the chunk, and by one more: the same continuation
            // as the full cache's.
            let end = prompt.len() + more.len();
            let bits = |m: &Transformer<f16>, c: &mut _| {
                let l: Vec<f32> = m.forward(c, &again, true).unwrap();
                l.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            };
            for back in [chunk, chunk + 1] {
                let mut full_back = full.try_clone().unwrap();
                full_back.truncate(end - back);
                let mut ring_back = ring.try_clone().unwrap();
                ring_back.truncate(end - back);
                assert!(
                    bits(&model, &mut ring_back) == bits(&model, &mut full_back),
                    "{what}, back {back}"
                );
            }
            // Further back than the window and chunk allow: refused where
            // the layer has a ring, and nothing changes.
            let back = end - chunk - 2;
            ring.truncate(back);
            match model.forward(&mut ring, &again, true) {
                Err(ForwardError::Forgotten { start, .. }) if ringed => assert_eq!(start, back),
                Ok(_) if !ringed => {}
                other => panic!("{what}: {:?}", other.map(|l| l.len())),
            }
            if ringed {
                assert_eq!(ring.len(), back, "{what}");
                let e = model
                    .forward(&mut ring, &again, true)
                    .unwrap_err()
                    .to_string();
                assert!(e.contains("SlidingWindow::Full"), "{e}");
            }
        }
    }
    // The real Gemma-3 (a window of 512): a prompt past two rings' worth.
    if let Some(path) = common::gemma_path() {
        let model = Transformer::<f16>::load(&MmapGGUFLoader::new(&path).unwrap()).unwrap();
        let long: Vec<u32> = (0..1090).map(|i| (100 + 37 * i) % 32000).collect();
        let last = |sliding| {
            let mut c = model.new_cache_with(1100, sliding).unwrap();
            let mut l = model.forward(&mut c, &long, false).unwrap();
            for &t in &again {
                l = model.forward(&mut c, &[t], false).unwrap();
            }
            (
                l.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                c.n_bytes(),
            )
        };
        let (want, full_bytes) = last(SlidingWindow::Full);
        let (got, ring_bytes) = last(SlidingWindow::Ring { chunk: 16 });
        assert!(got == want, "Gemma-3: ring against full");
        assert!(ring_bytes < full_bytes);
    }
}
