//! Model loading: every path (parallel, single-threaded, lazy, mmap, read)
//! gives the same bytes; config and layers; progress; cancel.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use gguf_loader::Preset;
use gguf_loader::{
    f16, Device, Element, Error, GgmlType, LazyModel, LoadMode, LoadOptions, MmapGGUFLoader, Model,
};

fn write_synth(dir: &Path, ty: GgmlType) -> std::path::PathBuf {
    let name = format!("tiny-{}.gguf", ty.name());
    common::write_synth(dir, &name, &Preset::TINY_TEST, ty, 7)
}

fn bytes_of<T: Element>(m: &Model<T>) -> Vec<(String, Vec<u8>)> {
    m.tensors()
        .map(|(n, t)| (n.to_string(), T::to_le_bytes_vec(t.data())))
        .collect()
}

/// Walks `lazy`'s layers three times, with and without prefetch (from the
/// second walk on, the outputs are written over the mappings of the layers
/// dropped before: other values, every one overwritten), each tensor's
/// bytes against `reference`'s; `tensors` of them in all, each walk.
fn lazy_walks_equal(
    lazy: &LazyModel<f16>,
    reference: &[(String, Vec<u8>)],
    tensors: usize,
    what: &str,
) {
    for (walk, prefetch) in [
        gguf_loader::Prefetch::NextLayer,
        gguf_loader::Prefetch::Off,
        gguf_loader::Prefetch::NextLayer,
    ]
    .into_iter()
    .enumerate()
    {
        let mut seen = 0;
        for layer in lazy.layers(prefetch) {
            let layer = layer.unwrap();
            for (suffix, t) in layer.tensors() {
                let name = format!("blk.{}.{suffix}", layer.index);
                let want = &reference.iter().find(|(n, _)| *n == name).unwrap().1;
                assert!(
                    &f16::to_le_bytes_vec(t.data()) == want,
                    "{what}: lazy {name}, walk {walk}"
                );
                seen += 1;
            }
        }
        assert_eq!(seen, tensors, "{what}");
    }
}

#[test]
fn every_load_path_gives_identical_bytes() {
    let dir = tempfile::tempdir().unwrap();
    for ty in [
        GgmlType::Q4_0,
        GgmlType::Q6_K,
        GgmlType::IQ4_XS,
        GgmlType::BF16,
    ] {
        let path = write_synth(dir.path(), ty);
        let mapped = MmapGGUFLoader::new(&path).unwrap();
        let read = MmapGGUFLoader::open(&path, LoadMode::Read).unwrap();
        assert_eq!(read.mode(), LoadMode::Read);
        let reference = bytes_of(&mapped.load_f16_model(Device::Cpu).unwrap());
        // Every value is finite: the synthetic scales are sane.
        for (n, b) in &reference {
            assert!(
                b.chunks_exact(2)
                    .all(|c| f16::from_le_bytes([c[0], c[1]]).is_finite()),
                "{ty}: {n}"
            );
        }
        let one = mapped
            .load_model_with::<f16>(Device::Cpu, LoadOptions::default().threads(1))
            .unwrap();
        assert_eq!(bytes_of(&one), reference, "{ty}: single-threaded");
        let via_read = read.load_f16_model(Device::Cpu).unwrap();
        assert_eq!(bytes_of(&via_read), reference, "{ty}: read mode");
        for (n, b) in &reference {
            let t = mapped.load_tensor_f16(n, Device::Cpu).unwrap();
            assert_eq!(&f16::to_le_bytes_vec(t.data()), b, "{ty}: {n} alone");
        }

        let lazy = LazyModel::<f16>::new(Arc::new(MmapGGUFLoader::new(&path).unwrap()));
        lazy_walks_equal(
            &lazy,
            &reference,
            Preset::TINY_TEST.layers as usize * 9,
            &ty.to_string(),
        );
        let emb = lazy.tensor("token_embd.weight").unwrap();
        assert_eq!(
            &f16::to_le_bytes_vec(emb.data()),
            &reference
                .iter()
                .find(|(n, _)| n == "token_embd.weight")
                .unwrap()
                .1
        );
        assert_eq!(lazy.cached(), vec!["token_embd.weight".to_string()]);
        lazy.evict("token_embd.weight");
        assert!(lazy.cached().is_empty());
        // A prefetch that is not taken is harmless; one that is gives the layer.
        lazy.prefetch_layer(1);
        lazy.prefetch_layer(0);
        assert_eq!(lazy.layer(0).unwrap().index, 0);
    }
}

/// A lazy model's layers written over the memory of layers dropped before
/// (see `every_load_path_gives_identical_bytes`), with feed-forward
/// outputs past the 8 MiB from which reused memory is written with
/// streaming stores: every value of three walks equals the eager load's.
#[test]
fn lazy_layers_streamed_over_reused_memory_equal_the_eager_load() {
    let dir = tempfile::tempdir().unwrap();
    let preset = Preset {
        name: "streamed-test",
        layers: 2,
        dim: 1024,
        ff: 4608, // 4.7 M values: 9.4 MB of f16
        heads: 8,
        kv_heads: 4,
        vocab: 512,
        context: 512,
    };
    let path = common::write_synth(dir.path(), "streamed.gguf", &preset, GgmlType::Q4_0, 3);
    let eager = MmapGGUFLoader::new(&path)
        .unwrap()
        .load_f16_model(Device::Cpu)
        .unwrap();
    let lazy = LazyModel::<f16>::open(&path).unwrap();
    lazy_walks_equal(&lazy, &bytes_of(&eager), 2 * 9, "streamed");
}

#[test]
fn config_and_layers() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_synth(dir.path(), GgmlType::Q8_0);
    let m = gguf_loader::load_model_f16(&path).unwrap();
    let c = &m.config;
    assert_eq!(c.architecture, "llama");
    assert!(c.known_architecture);
    assert_eq!(c.block_count, Some(2));
    assert_eq!(c.embedding_length, Some(256));
    assert_eq!(c.feed_forward_length, Some(512));
    assert_eq!((c.head_count, c.head_count_kv), (Some(4), Some(2)));
    assert_eq!(c.head_dim, Some(64));
    assert_eq!(c.rope_dimension_count, Some(64));
    assert_eq!(c.rms_norm_eps, Some(1e-5));
    assert_eq!(c.vocab_size, Some(512));
    assert_eq!(m.layer_count(), 2);
    let l1 = m.layer(1).unwrap();
    assert_eq!(l1.len(), 9);
    let q = l1.get("attn_q.weight").unwrap();
    assert_eq!(q.ne(), &[256, 256]);
    assert_eq!(l1.get("attn_k.weight").unwrap().shape(), vec![128, 256]);
    let globals: Vec<&str> = m.globals().map(|(n, _)| n).collect();
    assert_eq!(
        globals,
        vec!["token_embd.weight", "output_norm.weight", "output.weight"]
    );
    assert_eq!(
        m.n_bytes(),
        m.tensors().map(|(_, t)| t.len() * 2).sum::<usize>()
    );
}

#[test]
fn progress_reaches_the_totals_and_cancel_stops() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_synth(dir.path(), GgmlType::Q4_K);
    let loader = MmapGGUFLoader::new(&path).unwrap();
    let total: u64 = loader.tensors().map(|t| t.n_bytes).sum();

    // One call at a time (a second inside the first would find the lock
    // held), the counts never going back, the last at the totals.
    for threads in [1, 2, 4] {
        let calls = AtomicUsize::new(0);
        let last = std::sync::Mutex::new(None::<gguf_loader::Progress>);
        let cb = |p: &gguf_loader::Progress| {
            calls.fetch_add(1, Ordering::Relaxed);
            assert!(p.bytes_done <= p.bytes_total && p.tensors_done <= p.tensors_total);
            let mut l = last.try_lock().expect("two progress calls at once");
            if let Some(before) = *l {
                assert!(
                    p.bytes_done >= before.bytes_done && p.tensors_done >= before.tensors_done,
                    "{threads} threads: {before:?} then {p:?}"
                );
            }
            *l = Some(*p);
            true
        };
        loader
            .load_model_with::<f16>(
                Device::Cpu,
                LoadOptions::default().threads(threads).progress(&cb),
            )
            .unwrap();
        let p = last.lock().unwrap().unwrap();
        assert_eq!((p.bytes_done, p.bytes_total), (total, total));
        assert_eq!(p.tensors_done, loader.tensor_count());
        // Reports that find the counts where the last left them are not
        // made; one a tensor at most.
        let calls = calls.load(Ordering::Relaxed);
        assert!(calls >= 1 && calls <= 2 * loader.tensor_count(), "{calls}");
    }

    // Cancelled at half: not called again once it said so.
    let said_stop = AtomicUsize::new(0);
    let cancel_at_half = |p: &gguf_loader::Progress| {
        assert_eq!(said_stop.load(Ordering::Relaxed), 0, "called after a false");
        let go_on = p.bytes_done * 2 < p.bytes_total;
        if !go_on {
            said_stop.fetch_add(1, Ordering::Relaxed);
        }
        go_on
    };
    let r = loader.load_model_with::<f16>(
        Device::Cpu,
        LoadOptions::default().threads(4).progress(&cancel_at_half),
    );
    assert!(matches!(r, Err(Error::Cancelled)));
    assert_eq!(said_stop.load(Ordering::Relaxed), 1);
}

#[test]
fn unsupported_device_and_missing_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_synth(dir.path(), GgmlType::Q8_0);
    let l = MmapGGUFLoader::new(&path).unwrap();
    assert!(matches!(
        l.load_f16_model(Device::Cuda(0)),
        Err(Error::UnsupportedDevice(Device::Cuda(0)))
    ));
    assert!(matches!(
        l.load_tensor_f16("nope", Device::Cpu),
        Err(Error::TensorNotFound(_))
    ));
    let r = MmapGGUFLoader::open(&path, LoadMode::Read).unwrap();
    assert!(matches!(
        r.get_tensor_data("output.weight"),
        Err(Error::NotMapped(_))
    ));
    // A lazy model that cannot move to a GPU is kept, decoding where it
    // did (without the `cuda` feature; with it and no GPU, the error is
    // CudaUnavailable).
    let mut lazy = LazyModel::<f16>::open(&path).unwrap();
    let e = lazy.set_device(Device::Cuda(0)).unwrap_err();
    assert!(
        matches!(
            e,
            Error::UnsupportedDevice(Device::Cuda(0)) | Error::CudaUnavailable { .. }
        ),
        "{e:?}"
    );
    assert_eq!(lazy.device(), Device::Cpu);
    assert!(lazy.tensor("output.weight").is_ok());
}

#[test]
fn read_mode_reports_a_file_truncated_while_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_synth(dir.path(), GgmlType::Q8_0);
    let r = MmapGGUFLoader::open(&path, LoadMode::Read).unwrap();
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let e = r.load_f16_model(Device::Cpu).unwrap_err();
    assert!(matches!(e, Error::TensorIo { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("tiny-Q8_0.gguf")
            && msg.contains("tensor '")
            && msg.ends_with("the file ends before the tensor's data does (truncated or changed since it was opened)"),
        "{msg}"
    );
}

/// `Model::layers` walks the layers in order, `Model::layer` answers an
/// index with no tensors as `LazyModel::layer` does, and a lazy model
/// opens from a path and walks with and without prefetch.
#[test]
fn layers_of_eager_and_lazy_models_agree() {
    use gguf_loader::Prefetch;
    let dir = tempfile::tempdir().unwrap();
    let path = write_synth(dir.path(), GgmlType::Q8_0);
    let m = gguf_loader::load_model_f16(&path).unwrap();
    let eager: Vec<(usize, Vec<String>)> = m
        .layers()
        .map(|l| {
            let names = l.tensors().iter().map(|(s, _)| s.to_string()).collect();
            (l.index, names)
        })
        .collect();
    assert_eq!(eager.len(), 2);
    assert_eq!(eager[0].0, 0);
    assert_eq!(eager[1].0, 1);
    assert_eq!(eager[0].1.len(), 9);
    assert!(matches!(m.layer(2), Err(Error::LayerNotFound(2))));
    assert!(matches!(
        m.layer(usize::MAX),
        Err(Error::LayerNotFound(usize::MAX))
    ));

    let lazy = LazyModel::<f16>::open(&path).unwrap();
    assert!(matches!(lazy.layer(2), Err(Error::LayerNotFound(2))));
    for prefetch in [Prefetch::NextLayer, Prefetch::Off] {
        let walked: Vec<(usize, Vec<String>)> = lazy
            .layers(prefetch)
            .map(|l| {
                let l = l.unwrap();
                let names = l.tensors().iter().map(|(s, _)| s.clone()).collect();
                (l.index, names)
            })
            .collect();
        assert_eq!(walked, eager, "{prefetch:?}");
    }
    for (i, layer) in m.layers().enumerate() {
        let from_lazy = lazy.layer(layer.index).unwrap();
        for (suffix, t) in layer.tensors() {
            assert_eq!(
                from_lazy.get(suffix).unwrap().data(),
                t.data(),
                "{i} {suffix}"
            );
        }
    }
}

/// `LoadOptions` applies to one tensor, to a lazy model (in either mode)
/// and to the data check as it does to a whole-model load.
#[test]
fn load_options_apply_everywhere() {
    use gguf_loader::{check_model_report, check_model_report_with, Prefetch, Stores};
    let dir = tempfile::tempdir().unwrap();
    let path = write_synth(dir.path(), GgmlType::Q4_K);
    let loader = MmapGGUFLoader::new(&path).unwrap();
    let reference = bytes_of(&loader.load_f16_model(Device::Cpu).unwrap());
    let opts = [
        LoadOptions::default().threads(1),
        LoadOptions::default().threads(3).stores(Stores::Streaming),
        LoadOptions::default().stores(Stores::Cached),
    ];
    for opts in opts {
        for (n, want) in &reference {
            let t = loader
                .load_tensor_with::<f16>(n, Device::Cpu, opts)
                .unwrap();
            assert_eq!(&f16::to_le_bytes_vec(t.data()), want, "{n}");
        }
        for mode in [LoadMode::Mmap, LoadMode::Read] {
            let lazy = LazyModel::<f16>::open_with(&path, mode, opts).unwrap();
            for layer in lazy.layers(Prefetch::NextLayer) {
                let layer = layer.unwrap();
                for (suffix, t) in layer.tensors() {
                    let name = format!("blk.{}.{suffix}", layer.index);
                    let want = &reference.iter().find(|(n, _)| *n == name).unwrap().1;
                    assert_eq!(&f16::to_le_bytes_vec(t.data()), want, "{mode:?} {name}");
                }
            }
        }
        assert_eq!(
            check_model_report_with(&loader, 5, opts).unwrap(),
            check_model_report(&loader, 5)
        );
    }
    // Progress and cancel reach a single-tensor load too.
    let cancel = |_: &gguf_loader::Progress| false;
    let r = loader.load_tensor_with::<f16>(
        "token_embd.weight",
        Device::Cpu,
        LoadOptions::default().progress(&cancel),
    );
    assert!(matches!(r, Err(Error::Cancelled)), "{r:?}");
}

/// Dropping a lazy model stops and waits for a prefetch still running, and
/// a prefetch replaced by another is stopped too: afterwards nothing holds
/// the loader or reads the file, which may be rewritten at once. (The lazy
/// fuzz target rewrites its scratch file for the next input; a fuzz smoke
/// crashed on an empty input, which does nothing but truncate that file:
/// most likely a prefetch thread left running from the input before, reading
/// the truncated mapping, SIGBUS. Without the fix this test sees two such
/// threads still holding the loader.)
#[test]
fn dropping_a_lazy_model_stops_its_prefetch() {
    use gguf_loader::Prefetch;
    let dir = tempfile::tempdir().unwrap();
    let path = write_synth(dir.path(), GgmlType::Q4_K);
    let bytes = std::fs::read(&path).unwrap();
    for mode in [LoadMode::Mmap, LoadMode::Read] {
        for round in 0..20 {
            let loader = Arc::new(MmapGGUFLoader::open(&path, mode).unwrap());
            let lazy = LazyModel::<f32>::new(loader.clone());
            assert!(lazy.layer_count() >= 2);
            if round % 2 == 0 {
                // The walk's first layer starts the prefetch of the second.
                let mut layers = lazy.layers(Prefetch::NextLayer);
                let first = layers.next().unwrap().unwrap();
                assert_eq!(first.index, 0);
            } else {
                // A prefetch replaced by another, then the model dropped.
                lazy.prefetch_layer(1);
                lazy.prefetch_layer(0);
            }
            drop(lazy);
            assert_eq!(
                Arc::strong_count(&loader),
                1,
                "{mode:?}: a prefetch outlived its model"
            );
            drop(loader);
            // Rewritten shorter at once, then restored: nothing reads it now.
            std::fs::write(&path, &bytes[..64]).unwrap();
            std::fs::write(&path, &bytes).unwrap();
        }
    }
}

/// Prefetches asked for by several threads at once (a `LazyModel` is
/// `Sync`) leave one at a time: each caller stops the one before, and the
/// model's drop stops the last. Two callers once each started a thread and
/// one overwrote the other's, which ran on detached after the drop (62 of
/// them, reading the file, in one round of 8 threads on Gemma-3).
#[test]
fn concurrent_prefetches_never_outlive_the_model() {
    let Some(path) = common::gemma_path() else {
        return;
    };
    for round in 0..3 {
        let loader = Arc::new(MmapGGUFLoader::new(&path).unwrap());
        let lazy = Arc::new(LazyModel::<f32>::new(loader.clone()));
        let layers = lazy.layer_count();
        let barrier = Arc::new(std::sync::Barrier::new(8));
        let threads: Vec<_> = (0..8)
            .map(|k| {
                let (lazy, barrier) = (lazy.clone(), barrier.clone());
                std::thread::spawn(move || {
                    for i in 0..10 {
                        barrier.wait();
                        lazy.prefetch_layer((k + i) % layers);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        drop(lazy);
        assert_eq!(
            Arc::strong_count(&loader),
            1,
            "round {round}: a prefetch outlived its model"
        );
    }
}

/// A thread count of 0 or over `max_threads()` (4 per core) is refused by
/// every path that takes `LoadOptions`, before a thread is started (a
/// billion threads, from a caller's input, once spent minutes trying).
#[test]
fn thread_counts_are_bounded_everywhere() {
    use gguf_loader::{check_model_report_with, max_threads, OutputMemory, THREADS_PER_CORE};
    let dir = tempfile::tempdir().unwrap();
    let path = write_synth(dir.path(), GgmlType::Q4_0);
    let loader = MmapGGUFLoader::new(&path).unwrap();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(max_threads(), THREADS_PER_CORE * cores);
    let name = "token_embd.weight";
    let n = loader.tensor_info(name).unwrap().n_elements as usize;
    for bad in [0, max_threads() + 1, 1_000_000_000, usize::MAX] {
        let opts = LoadOptions::default().threads(bad);
        let refused = |r: Result<(), Error>, what: &str| match r {
            Err(Error::Threads { n, max }) => {
                assert_eq!((n, max), (bad, max_threads()), "{what}");
            }
            other => panic!("{what} with {bad} threads: {other:?}"),
        };
        refused(
            loader.load_model_with::<f16>(Device::Cpu, opts).map(drop),
            "model",
        );
        refused(
            loader
                .load_tensor_with::<f16>(name, Device::Cpu, opts)
                .map(drop),
            "tensor",
        );
        let mut out = vec![f16::ZERO; n];
        refused(
            loader.load_tensors_into(vec![(name, &mut out[..])], OutputMemory::Fresh, opts),
            "tensors into",
        );
        refused(
            LazyModel::<f16>::open_with(&path, LoadMode::Mmap, opts).map(drop),
            "lazy",
        );
        refused(check_model_report_with(&loader, 1, opts).map(drop), "check");
    }
    let e = loader
        .load_model_with::<f16>(Device::Cpu, LoadOptions::default().threads(0))
        .unwrap_err();
    assert!(e.to_string().contains("a load takes 1 to"), "{e}");
    // The largest count is allowed.
    let opts = LoadOptions::default().threads(max_threads());
    loader
        .load_tensor_with::<f16>(name, Device::Cpu, opts)
        .unwrap();
}

/// The one place that settles `Stores::Auto`: fresh memory always gets
/// ordinary stores, a reused buffer streams from `STREAMING_MIN_BYTES`;
/// an explicit choice stands.
#[test]
fn stores_are_settled_in_one_place() {
    use gguf_loader::{OutputMemory::*, Stores, STREAMING_MIN_BYTES as MIN};
    for bytes in [0, MIN - 1, MIN, usize::MAX] {
        assert_eq!(Stores::Auto.for_output(bytes, Fresh), Stores::Cached);
        let reused = if bytes >= MIN {
            Stores::Streaming
        } else {
            Stores::Cached
        };
        assert_eq!(Stores::Auto.for_output(bytes, Reused), reused);
        assert_eq!(Stores::Auto.resolve(bytes), reused);
        assert_eq!(Stores::Auto.streams(bytes), reused == Stores::Streaming);
        for s in [Stores::Cached, Stores::Streaming] {
            assert_eq!(s.for_output(bytes, Fresh), s);
            assert_eq!(s.for_output(bytes, Reused), s);
        }
    }
}

/// A file of two tiny tensors, `blk.0.w` and `blk.{n}.w`: layers are the
/// indices that exist, never a range up to the largest. With n = 2^64 - 1
/// the lazy walk panicked, with 10^12 it aborted on a 24 TB allocation,
/// with 10^8 it took gigabytes (and a prefetch thread per empty layer).
#[test]
fn layers_are_the_indices_that_exist() {
    use gguf_loader::{GgufWriter, Prefetch};
    let dir = tempfile::tempdir().unwrap();
    for n in [1u64, 100_000_000, 1_000_000_000_000, u64::MAX] {
        let mut w = GgufWriter::new();
        w.add(
            "general.architecture",
            gguf_loader::MetaValue::String("llama".into()),
        );
        w.add_tensor("blk.0.w", &[4], GgmlType::F32, vec![0u8; 16])
            .unwrap();
        w.add_tensor(format!("blk.{n}.w"), &[4], GgmlType::F32, vec![0u8; 16])
            .unwrap();
        let path = dir.path().join("layers.gguf");
        std::fs::write(&path, w.to_bytes().unwrap()).unwrap();
        let big = usize::try_from(n).unwrap();

        let m = MmapGGUFLoader::new(&path)
            .unwrap()
            .load_model::<f32>(Device::Cpu)
            .unwrap();
        assert_eq!(m.layer_count(), 2, "{n}");
        let idx: Vec<usize> = m.layers().map(|l| l.index).collect();
        assert_eq!(idx, vec![0, big]);
        assert_eq!(m.layer(big).unwrap().len(), 1);
        assert!(matches!(m.layer(big - 1), Err(Error::LayerNotFound(_))) || n == 1);

        let lazy = LazyModel::<f32>::open(&path).unwrap();
        assert_eq!(lazy.layer_count(), 2);
        assert_eq!(lazy.layer_indices().collect::<Vec<_>>(), vec![0, big]);
        for prefetch in [Prefetch::NextLayer, Prefetch::Off] {
            let walked: Vec<usize> = lazy.layers(prefetch).map(|l| l.unwrap().index).collect();
            assert_eq!(walked, vec![0, big], "{n} {prefetch:?}");
        }
        assert_eq!(lazy.layer(big).unwrap().tensors().len(), 1);
    }
}

#[test]
fn load_tensors_into_one_buffer_equals_the_model() {
    use gguf_loader::{OutputMemory, Progress};
    let dir = tempfile::tempdir().unwrap();
    let path = write_synth(dir.path(), GgmlType::Q4_K);
    for mode in [LoadMode::Mmap, LoadMode::Read] {
        let loader = MmapGGUFLoader::open(&path, mode).unwrap();
        let reference = bytes_of(&loader.load_f16_model(Device::Cpu).unwrap());
        let lens: Vec<usize> = loader.tensors().map(|t| t.n_elements as usize).collect();
        let mut all = vec![f16::ZERO; lens.iter().sum()];
        let mut outs = Vec::new();
        let mut rest = &mut all[..];
        for (t, n) in loader.tensors().zip(&lens) {
            let (dst, tail) = rest.split_at_mut(*n);
            outs.push((t.name, dst));
            rest = tail;
        }
        let calls = AtomicUsize::new(0);
        let last = std::sync::Mutex::new(None);
        let progress = |p: &Progress| {
            calls.fetch_add(1, Ordering::Relaxed);
            *last.lock().unwrap() = Some(*p);
            true
        };
        let opts = LoadOptions::default().threads(2).progress(&progress);
        loader
            .load_tensors_into(outs, OutputMemory::Fresh, opts)
            .unwrap();
        let p = last.lock().unwrap().unwrap();
        assert_eq!(p.tensors_done, lens.len());
        assert_eq!(p.bytes_done, p.bytes_total);
        let mut at = 0;
        for ((name, want), n) in reference.iter().zip(&lens) {
            let got = f16::to_le_bytes_vec(&all[at..at + n]);
            assert_eq!(&got, want, "{mode:?}: {name}");
            at += n;
        }

        // A wrong length, a missing tensor and a cancel are errors.
        let name = loader.tensor_names()[0].to_string();
        let mut short = [f16::ZERO; 1];
        let err = loader
            .load_tensors_into(
                vec![(name.as_str(), &mut short[..])],
                OutputMemory::Reused,
                LoadOptions::default(),
            )
            .unwrap_err();
        assert!(matches!(err, Error::Decode { .. }), "{err}");
        let err = loader
            .load_tensors_into::<f16>(
                vec![("nope", &mut [])],
                OutputMemory::Reused,
                LoadOptions::default(),
            )
            .unwrap_err();
        assert!(matches!(err, Error::TensorNotFound(_)), "{err}");
        let mut big = vec![f16::ZERO; lens[0]];
        let cancel = |_: &Progress| false;
        let err = loader
            .load_tensors_into(
                vec![(name.as_str(), &mut big[..])],
                OutputMemory::Reused,
                LoadOptions::default().progress(&cancel),
            )
            .unwrap_err();
        assert!(matches!(err, Error::Cancelled), "{err}");
        assert!(calls.load(Ordering::Relaxed) > 0);
    }
}

/// A progress callback that uses rayon itself: its work may run a chunk of
/// the load on the same thread, whose report found the lock the callback's
/// call held (a thread waiting on itself); and another thread that took a
/// piece of that work may, waiting for its own pieces, run a chunk of the
/// load whose report found the lock held, while the callback waited for
/// that thread (the two waiting on each other: this test hung once in 30
/// runs of CI). No report waits for the lock: the call holding it reports
/// again when the counts moved. Many small pieces of work, so that the
/// other thread takes some.
#[test]
fn a_progress_callback_using_rayon_finishes() {
    use rayon::prelude::*;
    let dir = tempfile::tempdir().unwrap();
    let path = write_synth(dir.path(), GgmlType::Q4_K);
    let loader = MmapGGUFLoader::new(&path).unwrap();
    let total: u64 = loader.tensors().map(|t| t.n_bytes).sum();
    let what = "a load whose callback uses rayon";
    common::within(std::time::Duration::from_secs(60), what, move || {
        for threads in [1, 2, 2, 2, 2, 2, 2, 2, 2, 2] {
            let last = std::sync::Mutex::new(None::<gguf_loader::Progress>);
            let cb = |p: &gguf_loader::Progress| {
                let spin: u64 = (0..256usize)
                    .into_par_iter()
                    .with_max_len(1)
                    .map(|x| (x * x) as u64)
                    .sum();
                assert!(spin > 0);
                // What a wait in rayon does: run the pool's other jobs
                // (chunks of this load) here.
                for _ in 0..4 {
                    rayon::yield_now();
                }
                *last.lock().unwrap() = Some(*p);
                true
            };
            loader
                .load_model_with::<f16>(
                    Device::Cpu,
                    LoadOptions::default().threads(threads).progress(&cb),
                )
                .unwrap();
            let p = last.lock().unwrap().unwrap();
            assert_eq!((p.bytes_done, p.bytes_total), (total, total));
        }
    });
}
