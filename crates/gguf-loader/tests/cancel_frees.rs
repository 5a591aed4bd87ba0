//! A cancelled load frees what it allocated: a counting allocator sees the
//! live heap return to where it was. (One test in its own binary, so no
//! other test allocates meanwhile.)

use std::sync::atomic::{AtomicU64, Ordering};

mod common;

use common::counting::{live, peak, reset_peak, Counting};

use gguf_loader::{f16, Device, Error, GgmlType, LoadOptions, MmapGGUFLoader};
use gguf_loader::{synthesize, Preset};

#[global_allocator]
static A: Counting = Counting;

#[test]
fn cancel_at_half_frees_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    std::fs::write(
        &path,
        synthesize(&Preset::TINY_TEST, GgmlType::Q4_0, 3)
            .unwrap()
            .to_bytes()
            .unwrap(),
    )
    .unwrap();
    let loader = MmapGGUFLoader::new(&path).unwrap();
    let out_bytes: u64 = loader.tensors().map(|t| t.n_elements * 2).sum();
    // Warm the thread pool so its own allocations are not counted.
    drop(loader.load_f16_model(Device::Cpu).unwrap());

    let before = reset_peak();
    let seen = AtomicU64::new(0);
    let cancel = |p: &gguf_loader::Progress| {
        seen.fetch_max(p.bytes_done, Ordering::Relaxed);
        p.bytes_done * 2 < p.bytes_total
    };
    let r = loader.load_model_with::<f16>(
        Device::Cpu,
        LoadOptions::default().threads(1).progress(&cancel),
    );
    assert!(matches!(r, Err(Error::Cancelled)));
    let peak = peak() - before;
    // The outputs are one allocation of the model's size.
    assert!(
        peak > 0 && (peak as u64) < out_bytes + (1 << 20),
        "peak {peak} of {out_bytes}"
    );
    // It stopped right after the first report past half: no more decoding.
    let total: u64 = loader.tensors().map(|t| t.n_bytes).sum();
    let done = seen.load(Ordering::Relaxed);
    assert!(
        done * 2 >= total && done < total,
        "decoded {done} of {total}"
    );
    // The pool built for `threads(1)` is gone too; allow a little slack for
    // thread-local bookkeeping.
    let after = live();
    assert!(
        after - before < 64 * 1024,
        "leaked {} bytes",
        after - before
    );
}
