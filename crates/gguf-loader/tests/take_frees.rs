//! Holding one tensor of a model keeps nothing else of it: `model.take(name)`
//! then `drop(model)` frees everything but that tensor. (It kept the whole
//! model's one shared output buffer: 353 MB of SmolLM2 for 576 values.) A
//! small tensor is copied out of the arena it shared with the model's other
//! small tensors onto the heap, seen by the counting allocator; a large one
//! moves out with its huge pages, seen in `RssAnon`; `take_shared` copies
//! none. One test in its own
//! binary, so that no other test allocates meanwhile.

mod common;

use std::path::Path;

use common::counting::{live, Counting};
use gguf_loader::{synthesize, Device, GgmlType, GgufWriter, MmapGGUFLoader, Preset};

#[global_allocator]
static A: Counting = Counting;

/// Anonymous resident memory of this process, in bytes.
fn rss_anon() -> i64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("RssAnon:"))
        .expect("RssAnon in /proc/self/status");
    let kb: i64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb * 1024
}

/// Loads `path` to f16, takes `name`, drops the model: returns the heap
/// bytes and the anonymous resident bytes still held (over what was held
/// before the load), the tensor's bytes and the model's.
fn take_then_drop(path: &Path, name: &str) -> (i64, i64, usize, usize) {
    let loader = MmapGGUFLoader::new(path).unwrap();
    // Warm the thread pool and the allocator outside the measurement.
    drop(loader.load_f16_model(Device::Cpu).unwrap());
    let (heap, rss) = (live(), rss_anon());
    let mut model = loader.load_f16_model(Device::Cpu).unwrap();
    let total = model.n_bytes();
    let t = model.take(name).expect("tensor");
    drop(model);
    let held = (live() - heap) as i64;
    let held_rss = rss_anon() - rss;
    let kept = std::hint::black_box(t).len() * 2;
    (held, held_rss, kept, total)
}

#[test]
fn a_taken_tensor_keeps_nothing_else_alive() {
    let dir = tempfile::tempdir().unwrap();

    // Small tensors (under a huge page each): one shared arena in the model.
    let small = dir.path().join("tiny.gguf");
    let tiny = synthesize(&Preset::TINY_TEST, GgmlType::Q4_0, 5).unwrap();
    std::fs::write(&small, tiny.to_bytes().unwrap()).unwrap();
    let (held, _, kept, total) = take_then_drop(&small, "output_norm.weight");
    println!("tiny: {held} heap bytes held for a {kept}-byte tensor of a {total}-byte model");
    assert!(total > 1 << 20);
    assert!(
        held <= kept as i64 + 16 * 1024,
        "{held} bytes held for a {kept}-byte tensor"
    );

    // Large tensors: pages of their own, freed when the model is dropped.
    let large = dir.path().join("large.gguf");
    let mut w = GgufWriter::new();
    w.add(
        "general.architecture",
        gguf_loader::MetaValue::String("llama".into()),
    );
    for i in 0..8 {
        w.add_tensor(
            format!("blk.{i}.ffn_up.weight"),
            &[1024, 2048],
            GgmlType::F16,
            vec![0x3cu8; 1024 * 2048 * 2],
        )
        .unwrap();
    }
    w.add_tensor(
        "output_norm.weight",
        &[576],
        GgmlType::F32,
        vec![0u8; 576 * 4],
    )
    .unwrap();
    std::fs::write(&large, w.to_bytes().unwrap()).unwrap();
    let (held, held_rss, kept, total) = take_then_drop(&large, "output_norm.weight");
    println!("large: {held} heap, {held_rss} anon bytes held for {kept} of {total}");
    assert!(total >= 32 << 20);
    assert!(held <= kept as i64 + 16 * 1024, "{held} heap bytes held");
    assert!(held_rss < 8 << 20, "{held_rss} anonymous bytes held");

    // `take_shared`: every tensor taken without a copy (the heap grows by
    // the list of tensors, not by their values), the values `take`'s.
    let loader = MmapGGUFLoader::new(&small).unwrap();
    let want: Vec<Vec<gguf_loader::f16>> = {
        let m = loader.load_f16_model(Device::Cpu).unwrap();
        m.tensors().map(|(_, t)| t.data().to_vec()).collect()
    };
    let small_bytes: usize = want.iter().map(|w| w.len() * 2).sum();
    let mut model = loader.load_f16_model(Device::Cpu).unwrap();
    let names: Vec<String> = model.names().map(str::to_string).collect();
    let mut taken = Vec::with_capacity(names.len());
    let before = live() as i64;
    for n in &names {
        taken.push(model.take_shared(n).unwrap());
    }
    let grew = live() as i64 - before;
    drop(model);
    println!("take_shared: the heap grew {grew} bytes for {small_bytes} bytes of tensors");
    assert!(small_bytes > 1 << 20);
    assert!(grew < 16 * 1024, "{grew} bytes copied");
    for (t, w) in taken.iter().zip(&want) {
        assert_eq!(t.data(), &w[..]);
    }

    // The case on the real model.
    if let Some(path) = common::model_path() {
        let (held, held_rss, kept, total) = take_then_drop(&path, "output_norm.weight");
        println!("SmolLM2: {held} heap, {held_rss} anon bytes held for {kept} of {total}");
        assert!(total > 250 << 20);
        assert!(held <= kept as i64 + 16 * 1024, "{held} heap bytes held");
        assert!(held_rss < 16 << 20, "{held_rss} anonymous bytes held");
    }
}
