//! A split model in read mode keeps each shard's header, not each shard's
//! first read: 2,000 shards kept up to 1 MiB each (2.1 GB). A counting
//! allocator measures the heap held after opening (one test in its own
//! binary, so that no other test allocates meanwhile).

mod common;

use common::counting::{live, peak, reset_peak, Counting};
use gguf_loader::{Device, GgmlType, GgufWriter, LoadMode, MetaValue, MmapGGUFLoader};

#[global_allocator]
static A: Counting = Counting;

#[test]
fn read_mode_shards_keep_only_their_headers() {
    let dir = tempfile::tempdir().unwrap();
    let n = 200u16;
    let p = |i: u16| dir.path().join(format!("m-{i:05}-of-{n:05}.gguf"));
    for i in 0..n {
        let mut w = GgufWriter::new();
        w.add("split.no", MetaValue::U16(i))
            .add("split.count", MetaValue::U16(n));
        w.add_tensor(format!("t{i}"), &[4], GgmlType::F32, vec![i as u8; 16])
            .unwrap();
        std::fs::write(p(i + 1), w.to_bytes().unwrap()).unwrap();
        // Each shard longer than the first read (sparse: no disk used).
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(p(i + 1))
            .unwrap();
        f.set_len(2 << 20).unwrap();
    }
    // Warm up process state (first open, thread pool) outside the count.
    let warm = MmapGGUFLoader::open(p(1), LoadMode::Read).unwrap();
    drop(warm.load_model::<f32>(Device::Cpu).unwrap());
    drop(warm);

    let before = reset_peak();
    let loader = MmapGGUFLoader::open(p(1), LoadMode::Read).unwrap();
    let held = live() - before;
    let peak = peak() - before;
    println!("{n} shards: {held} bytes held after open, peak {peak}");
    assert!(held < n as isize * 4096, "{held} bytes held for {n} shards");
    // One first read at a time.
    assert!(peak < held + (1 << 20) + (64 << 10), "peak {peak}");
    for i in 0..n {
        let t = loader
            .load_tensor::<f32>(&format!("t{i}"), Device::Cpu)
            .unwrap();
        assert_eq!(t.data(), &[f32::from_le_bytes([i as u8; 4]); 4][..]);
    }
}
