//! The lazy forward pass (`Transformer::load_lazy`: every layer taken from
//! a `LazyModel` when the pass reaches it, the next one prefetched) computes
//! exactly what the eager one does: the same logits bit for bit, on the
//! real SmolLM2, for a prompt and a few generated tokens.

#[path = "../../gguf-loader/tests/common/mod.rs"]
mod common;

use std::sync::Arc;

use gguf_loader::{f16, MmapGGUFLoader};
use gguf_loader_llm::forward::{argmax, Transformer};

#[test]
fn lazy_logits_are_the_eager_ones() {
    let Some(path) = common::model_path() else {
        return;
    };
    let loader = MmapGGUFLoader::new(&path).unwrap();
    let eager = Transformer::<f16>::load(&loader).unwrap();
    let lazy =
        Transformer::<f16>::load_lazy(Arc::new(MmapGGUFLoader::new(&path).unwrap())).unwrap();
    assert!(lazy.is_lazy() && !eager.is_lazy());
    assert_eq!(eager.config(), lazy.config());
    let prompt = [1u32, 504, 3458, 282, 4649, 314];
    let (mut ce, mut cl) = (eager.new_cache(16).unwrap(), lazy.new_cache(16).unwrap());
    let mut a = eager.forward(&mut ce, &prompt, true).unwrap();
    let mut b = lazy.forward(&mut cl, &prompt, true).unwrap();
    for step in 0..4 {
        assert!(
            a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
            "step {step}: lazy logits differ"
        );
        let t = argmax(&a[a.len() - eager.config().n_vocab..]).unwrap();
        a = eager.forward(&mut ce, &[t], false).unwrap();
        b = lazy.forward(&mut cl, &[t], false).unwrap();
    }
}
