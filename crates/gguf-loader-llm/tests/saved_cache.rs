//! A KV cache saved as a GGUF file (`Transformer::cache_to_gguf`) and read
//! back (`Transformer::cache_from_gguf`) goes on exactly as the cache it
//! was saved from: the same logits, bit for bit, after a prompt, after a
//! truncation, through a sliding window's ring (and its `Forgotten`
//! limit), on tiny synthesized models and the real SmolLM2 and Gemma-3
//! where they are cached. The cache keeps its tokens. A file that is not
//! such a cache, one of another model, and every malformed variant of one
//! (each key rewritten, truncated, bytes flipped) is an error, never a
//! panic.

#[path = "../../gguf-loader/tests/common/mod.rs"]
mod common;
mod tiny_gemma3;

use gguf_loader::{
    f16, GgmlType, GgufFile, GgufWriter, MetaValue, MmapGGUFLoader, Preset, ValueType,
};
use gguf_loader_llm::forward::{ForwardError, KvCache, SlidingWindow, Transformer};

fn tiny(dir: &std::path::Path, name: &str, preset: &Preset) -> Transformer<f16> {
    let path = common::write_synth(dir, name, preset, GgmlType::Q8_0, 1);
    Transformer::<f16>::load(&MmapGGUFLoader::new(&path).unwrap()).unwrap()
}

fn saved(model: &Transformer<f16>, cache: &KvCache) -> Vec<u8> {
    model.cache_to_gguf(cache).unwrap().to_bytes().unwrap()
}

fn bits(logits: Vec<f32>) -> Vec<u32> {
    logits.iter().map(|v| v.to_bits()).collect()
}

/// Saved after `prompt` (then truncated to `keep`) and read back into
/// `again` (this model, or the same file loaded anew): its tokens, length
/// and capacity are the cache's, and `more` gives the same logits from
/// both, every position.
fn round_trip(
    model: &Transformer<f16>,
    again: &Transformer<f16>,
    mut cache: KvCache,
    prompt: &[u32],
    keep: usize,
    more: &[u32],
) {
    model.forward(&mut cache, prompt, false).unwrap();
    assert_eq!(cache.tokens(), prompt);
    cache.truncate(keep);
    assert_eq!(cache.tokens(), &prompt[..keep.min(prompt.len())]);
    let bytes = saved(model, &cache);
    let mut back = again.cache_from_gguf(&bytes).unwrap();
    assert_eq!(back.tokens(), cache.tokens());
    assert_eq!(
        (back.len(), back.capacity()),
        (cache.len(), cache.capacity())
    );
    assert_eq!(back.n_bytes(), cache.n_bytes());
    // Saved again, the same bytes.
    assert!(saved(again, &back) == bytes);
    let want = bits(model.forward(&mut cache, more, true).unwrap());
    assert!(bits(again.forward(&mut back, more, true).unwrap()) == want);
    assert_eq!(back.tokens(), cache.tokens());
}

#[test]
fn a_saved_cache_goes_on_as_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny(dir.path(), "tiny.gguf", &Preset::TINY_TEST);
    let prompt = [1u32, 7, 300, 12, 5, 6, 400, 2, 9];
    for keep in [9, 4, 0] {
        let cache = model.new_cache(32).unwrap();
        round_trip(&model, &model, cache, &prompt, keep, &[3, 44, 100]);
    }
    // An empty cache, never run.
    let empty = model.new_cache(8).unwrap();
    let back = model.cache_from_gguf(&saved(&model, &empty)).unwrap();
    assert_eq!((back.len(), back.capacity()), (0, 8));
    // Tokens follow the cache: cleared, cloned.
    let mut cache = model.new_cache(16).unwrap();
    model.forward(&mut cache, &prompt, false).unwrap();
    assert_eq!(cache.clone().tokens(), &prompt);
    assert_eq!(cache.try_clone().unwrap().tokens(), &prompt);
    cache.clear();
    assert!(cache.tokens().is_empty());
}

#[test]
fn a_sliding_windows_ring_keeps_its_positions() {
    let dir = tempfile::tempdir().unwrap();
    let prompt: Vec<u32> = (0..300).map(|i| (17 + 131 * i) % 500).collect();
    let again = [9u32, 250, 77];
    for window in [5u32, 37] {
        let model = tiny_gemma3::write(dir.path(), window);
        let model = Transformer::<f16>::load(&MmapGGUFLoader::new(&model).unwrap()).unwrap();
        for (chunk, keep) in [(7usize, 300), (7, 293), (64, 250)] {
            let cache = model
                .new_cache_with(400, SlidingWindow::Ring { chunk })
                .unwrap();
            round_trip(&model, &model, cache, &prompt, keep, &again);
        }
        let cache = model.new_cache_with(400, SlidingWindow::Full).unwrap();
        round_trip(&model, &model, cache, &prompt, 120, &again);
        // Back further than the ring keeps: refused after the round trip
        // as before it.
        let mut ring = model
            .new_cache_with(400, SlidingWindow::Ring { chunk: 7 })
            .unwrap();
        model.forward(&mut ring, &prompt, false).unwrap();
        ring.truncate(200);
        let mut back = model.cache_from_gguf(&saved(&model, &ring)).unwrap();
        assert!(matches!(
            model.forward(&mut back, &again, false),
            Err(ForwardError::Forgotten { start: 200, .. })
        ));
    }
}

#[test]
fn a_saved_cache_of_a_real_model_goes_on_in_a_model_loaded_anew() {
    for path in [common::model_path(), common::gemma_path()]
        .into_iter()
        .flatten()
    {
        let load = || Transformer::<f16>::load(&MmapGGUFLoader::new(&path).unwrap()).unwrap();
        let (model, again) = (load(), load());
        let lazy =
            Transformer::<f16>::load_lazy(std::sync::Arc::new(MmapGGUFLoader::new(&path).unwrap()))
                .unwrap();
        let prompt: Vec<u32> = (0..600).map(|i| (100 + 37 * i) % 32000).collect();
        let cache = model.new_cache(700).unwrap();
        round_trip(&model, &again, cache, &prompt, 600, &[504, 3458, 282]);
        let cache = model.new_cache(700).unwrap();
        round_trip(&model, &lazy, cache, &prompt[..40], 40, &[504]);
    }
}

/// `bytes` (a saved cache) with `key` set to `value`, or removed.
fn rewritten(bytes: &[u8], key: &str, value: Option<MetaValue>) -> Vec<u8> {
    let file = GgufFile::parse(bytes).unwrap();
    let mut w = GgufWriter::new();
    for (k, v) in file.metadata.iter() {
        if k != key {
            w.add(k, MetaValue::from_value(v));
        }
    }
    if let Some(v) = value {
        w.add(key, v);
    }
    for t in file.tensors() {
        let data = file.tensor_data(t).unwrap();
        w.add_tensor(t.name, t.ne(), t.ty, data).unwrap();
    }
    w.to_bytes().unwrap()
}

#[test]
fn a_file_that_is_not_this_models_cache_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny(dir.path(), "tiny.gguf", &Preset::TINY_TEST);
    let gemma = tiny_gemma3::write(dir.path(), 5);
    let gemma = Transformer::<f16>::load(&MmapGGUFLoader::new(&gemma).unwrap()).unwrap();
    let mut cache = model.new_cache(32).unwrap();
    model.forward(&mut cache, &[1, 7, 300, 12], false).unwrap();
    let bytes = saved(&model, &cache);
    let mut ring = gemma
        .new_cache_with(64, SlidingWindow::Ring { chunk: 3 })
        .unwrap();
    gemma
        .forward(&mut ring, &[1, 2, 3, 4, 5, 6], false)
        .unwrap();
    let ringed = saved(&gemma, &ring);

    let message = |r: Result<KvCache, ForwardError>| match r {
        Err(e) => e.to_string(),
        Ok(_) => panic!("taken"),
    };
    // Another model's cache; a model file; no GGUF at all.
    let e = message(gemma.cache_from_gguf(&bytes));
    assert!(
        e.contains("another model") || e.contains("\"llama\" model"),
        "{e}"
    );
    // Nor is a cache of a model of the same widths but another window
    // taken by a step (a step read its ring as a whole cache, and
    // panicked on an index).
    assert!(message(model.cache_to_gguf(&ring).map(|_| unreachable!())).contains("rings"));
    let mut other = ring.try_clone().unwrap();
    let e = model.forward(&mut other, &(1..40).collect::<Vec<u32>>(), false);
    assert!(matches!(e, Err(ForwardError::BadCache(_))), "{e:?}");
    let tiny_file = std::fs::read(dir.path().join("tiny.gguf")).unwrap();
    assert!(message(model.cache_from_gguf(&tiny_file)).contains("not a KV cache file"));
    assert!(message(model.cache_from_gguf(b"hello")).contains("not a KV cache"));

    // Each key rewritten to what no cache of this model holds, or removed.
    let u64_of = MetaValue::U64;
    let cases: Vec<(&[u8], &str, Option<MetaValue>, &str)> = vec![
        (
            &bytes,
            "general.type",
            Some(MetaValue::String("model".into())),
            "general.type",
        ),
        (
            &bytes,
            "kv_cache.version",
            Some(MetaValue::U32(2)),
            "version 1",
        ),
        (
            &bytes,
            "kv_cache.length",
            Some(u64_of(5)),
            "5 positions filled, 4 written",
        ),
        (
            &bytes,
            "kv_cache.length",
            Some(u64_of(3)),
            "not an array of 3",
        ),
        (
            &bytes,
            "kv_cache.length",
            Some(u64_of(40)),
            "capacity of 32",
        ),
        (&bytes, "kv_cache.written", Some(u64_of(2)), "2 written"),
        (
            &bytes,
            "kv_cache.capacity",
            Some(u64_of(u64::MAX)),
            "cannot allocate",
        ),
        (
            &bytes,
            "kv_cache.capacity",
            Some(MetaValue::I32(-1)),
            "not a count",
        ),
        (&bytes, "kv_cache.n_vocab", Some(u64_of(7)), "tokens"),
        (
            &bytes,
            "kv_cache.architecture",
            Some(MetaValue::String("gemma3".into())),
            "gemma3",
        ),
        (&bytes, "kv_cache.length", None, "missing"),
        (
            &bytes,
            "kv_cache.rings",
            Some(MetaValue::String("x".into())),
            "not an array",
        ),
        (
            &bytes,
            "kv_cache.tokens",
            Some(MetaValue::Array(
                ValueType::U32,
                vec![MetaValue::U32(1 << 30); 4],
            )),
            "not a token id",
        ),
        (
            &bytes,
            "kv_cache.tokens",
            Some(MetaValue::Array(ValueType::I32, vec![MetaValue::I32(1); 4])),
            "uint32",
        ),
        (&ringed, "kv_cache.chunk", Some(u64_of(4)), "rings"),
        (&ringed, "kv_cache.chunk", Some(u64_of(0)), "rings"),
        (
            &ringed,
            "kv_cache.capacity",
            Some(u64_of(1 << 40)),
            "cannot allocate",
        ),
        (&ringed, "kv_cache.capacity", Some(u64_of(16)), "rings"),
        (
            &ringed,
            "kv_cache.rings",
            Some(MetaValue::Array(
                ValueType::U64,
                vec![u64_of(1 << 50), u64_of(0)],
            )),
            "rings",
        ),
    ];
    for (file, key, value, says) in cases {
        let m = if std::ptr::eq(file, &bytes[..]) {
            &model
        } else {
            &gemma
        };
        let e = message(m.cache_from_gguf(&rewritten(file, key, value)));
        assert!(e.contains(says), "{key}: {e}");
    }
    // Truncated anywhere, or a byte flipped anywhere: an error or (a flip
    // in a value) a cache, never a panic.
    for n in (0..bytes.len()).step_by(7) {
        assert!(model.cache_from_gguf(&bytes[..n]).is_err(), "{n} bytes");
    }
    for file in [&bytes, &ringed] {
        let m = if std::ptr::eq(file, &bytes) {
            &model
        } else {
            &gemma
        };
        for at in (0..file.len()).step_by(3) {
            let mut b = file.clone();
            b[at] ^= 0x5a;
            let _ = m.cache_from_gguf(&b);
        }
    }
}
