//! The lazy forward pass (`Transformer::load_lazy`: every layer taken from
//! a `LazyModel` when the pass reaches it, the next one prefetched) computes
//! exactly what the eager one does: the same logits bit for bit, on the
//! real SmolLM2 and Gemma-3, for a prompt and a few generated tokens.

#[path = "../../gguf-loader/tests/common/mod.rs"]
mod common;

use std::sync::Arc;

use gguf_loader::{f16, MmapGGUFLoader};
use gguf_loader_llm::forward::{argmax, Transformer};

#[test]
fn lazy_logits_are_the_eager_ones() {
    // Gemma-3 too: its feed-forward tensors (640 × 2048) decode in
    // parallel, on the prefetch's pool, while the step runs on the global
    // one. (A step on a thread of the pool that prefetched there could
    // take up its own wait inside that decode and hang: `generate --lazy`
    // did, one run in three; tests/lazy_in_rayon.rs holds the loader to
    // it, a watchdog here.)
    for path in [common::model_path(), common::gemma_path()]
        .into_iter()
        .flatten()
    {
        let what = format!("lazy steps of {}", path.display());
        common::within(std::time::Duration::from_secs(300), &what, move || {
            same_logits(&path)
        });
    }
}

fn same_logits(path: &std::path::Path) {
    let loader = MmapGGUFLoader::new(path).unwrap();
    let eager = Transformer::<f16>::load(&loader).unwrap();
    let lazy = Transformer::<f16>::load_lazy(Arc::new(MmapGGUFLoader::new(path).unwrap())).unwrap();
    assert!(lazy.is_lazy() && !eager.is_lazy());
    assert_eq!(eager.config(), lazy.config());
    let prompt = [1u32, 504, 3458, 282, 4649, 314];
    let (mut ce, mut cl) = (eager.new_cache(16).unwrap(), lazy.new_cache(16).unwrap());
    let mut a = eager.forward(&mut ce, &prompt, true).unwrap();
    let mut b = lazy.forward(&mut cl, &prompt, true).unwrap();
    for step in 0..8 {
        assert!(
            a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
            "step {step}: lazy logits differ"
        );
        let t = argmax(&a[a.len() - eager.config().n_vocab..]).unwrap();
        a = eager.forward(&mut ce, &[t], false).unwrap();
        b = lazy.forward(&mut cl, &[t], false).unwrap();
    }
}
