//! A lazy model's layer loop run on rayon's own threads. The prefetch thread
//! decoded a large tensor on rayon's global pool; a layer loop that waited
//! for it with a plain `join` on every thread of that pool left none free
//! for the decode, and hung (two models' loops under `rayon::join` with two
//! threads). Waiting while running the pool's jobs, a thread could then
//! take up the job waiting for the very decode it was running (the forward
//! pass of a lazy model, run on the pool, hung one run in three): the
//! prefetch decodes on a pool of its own now. Its own binary: the global
//! pool is built here, with two threads whatever the machine.

mod common;

use std::time::Duration;

use gguf_loader::{write_synthetic, GgmlType, LazyModel, Prefetch, Preset};
use half::f16;

/// Two layers whose feed-forward tensors (1024 × 2048) are over the million
/// elements from which a decode goes parallel.
const WIDE: Preset = Preset {
    name: "wide-test",
    layers: 3,
    dim: 1024,
    ff: 2048,
    heads: 8,
    kv_heads: 8,
    vocab: 64,
    context: 64,
};

/// Runs `f`, failing the test rather than hanging it if it is not done in
/// a minute.
fn within_a_minute(what: &str, f: impl FnOnce() + Send + 'static) {
    common::within(Duration::from_secs(60), what, f)
}

#[test]
fn layer_loops_on_every_pool_thread_finish() {
    rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build_global()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wide.gguf");
    let file = std::fs::File::create(&path).unwrap();
    write_synthetic(&WIDE, GgmlType::Q8_0, 7, std::io::BufWriter::new(file)).unwrap();

    // Both pool threads in a layer loop with the next layer prefetched.
    let p = path.clone();
    within_a_minute("two layer loops under rayon::join", move || {
        let a = LazyModel::<f16>::open(&p).unwrap();
        let b = LazyModel::<f16>::open(&p).unwrap();
        let (na, nb) = rayon::join(
            || {
                a.layers(Prefetch::NextLayer)
                    .map(|l| l.unwrap().index)
                    .collect::<Vec<_>>()
            },
            || {
                b.layers(Prefetch::NextLayer)
                    .map(|l| l.unwrap().index)
                    .collect::<Vec<_>>()
            },
        );
        assert_eq!((na, nb), (vec![0, 1, 2], vec![0, 1, 2]));
    });

    // A loop left after its first layer, the model dropped with the next
    // one being decoded: the drop waits for that decode.
    let p = path.clone();
    within_a_minute("models dropped mid-prefetch under rayon::join", move || {
        let stop_early = || {
            let m = LazyModel::<f16>::open(&p).unwrap();
            let first = m.layers(Prefetch::NextLayer).next().unwrap().unwrap();
            assert_eq!(first.index, 0);
        };
        rayon::join(stop_early, stop_early);
    });

    // A layer asked for by a job handed to the pool while the prefetch
    // decodes that layer there: a thread of the pool waiting on its share
    // of the decode may take the job up, and the job then waits for a
    // decode that can only end below it on that thread's own stack.
    let p = path.clone();
    within_a_minute(
        "a job of the pool waiting for the layer it prefetches",
        move || {
            let m = LazyModel::<f16>::open(&p).unwrap();
            for i in 0..200 {
                m.prefetch_layer(0);
                // The job handed over at moments through the decode.
                std::thread::sleep(Duration::from_micros(37 * (i % 50)));
                let n = rayon::scope(|_| m.layer(0).unwrap().tensors().len());
                assert!(n > 0);
            }
        },
    );

    // One model shared by both threads' loops, each prefetch stopping the
    // other's.
    within_a_minute("one model's layers from both pool threads", move || {
        let m = LazyModel::<f16>::open(&path).unwrap();
        let loop_ = || {
            m.layers(Prefetch::NextLayer)
                .map(|l| l.unwrap().tensors().len())
                .sum::<usize>()
        };
        let (x, y) = rayon::join(loop_, loop_);
        assert_eq!(x, y);
        assert!(x > 0);
    });
}
