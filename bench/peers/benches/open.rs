//! Opening a model: mmap + parse + validate, against ggus and candle-core.
//! `cargo bench --manifest-path bench/peers/Cargo.toml --bench open`

use std::fs::File;
use std::io::BufReader;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use gguf_loader_peers::model_path;

fn open(c: &mut Criterion) {
    let path = model_path();
    assert!(
        path.exists(),
        "{} missing: run scripts/fetch-model.sh",
        path.display()
    );
    let mut g = c.benchmark_group("open");

    g.bench_function("gguf-loader", |b| {
        b.iter(|| {
            let l = gguf_loader::MmapGGUFLoader::new(&path).unwrap();
            black_box(l.tensor_count())
        })
    });

    g.bench_function("ggus 0.5", |b| {
        b.iter(|| {
            let file = File::open(&path).unwrap();
            // SAFETY: read-only map of a file nobody modifies during the bench.
            let map = unsafe { memmap2::Mmap::map(&file) }.unwrap();
            let g = ggus::GGuf::new(&map).unwrap();
            black_box(g.tensors.len())
        })
    });

    g.sample_size(10);
    g.bench_function("candle-core 0.9 gguf_file::Content::read", |b| {
        b.iter(|| {
            let mut r = BufReader::new(File::open(&path).unwrap());
            let c = candle_core::quantized::gguf_file::Content::read(&mut r).unwrap();
            black_box(c.tensor_infos.len())
        })
    });
    g.finish();
}

criterion_group!(benches, open);
criterion_main!(benches);
