//! GPU loads (feature `cuda`): every type to f32, f16 and bf16 decoded on
//! the GPU equals the CPU path bit for bit (NaN payloads included), on
//! random blocks of every type and on every tensor of the real models, in
//! every staging mode, through a ring small enough to split tensors, in
//! read mode, lazily, with progress and cancel.
//!
//! Without a GPU (no driver, no device) every test checks that a GPU load
//! is one clear error, and says it skipped the rest; with
//! `GGUF_LOADER_REQUIRE_GPU=1` (scripts/gpu-check.sh) a missing GPU fails.
#![cfg(feature = "cuda")]

mod common;

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::Lcg;
use gguf_loader::{
    bf16, cuda_memory, cuda_setup, f16, Device, Element, ElementKind, Endianness, Error, GgmlType,
    GgufWriter, GpuStaging, LazyModel, LoadMode, LoadOptions, MmapGGUFLoader, Model, Prefetch,
    Progress, Tensor,
};

const GPU: Device = Device::Cuda(0);

/// Whether GPU 0 can be used; otherwise checks that the refusal is one
/// line naming the device, and says the test is skipped.
fn gpu() -> bool {
    match cuda_setup(0) {
        Ok(s) => {
            eprintln!(
                "GPU: {} (sm_{}{}), context {:.0} ms, kernels {:.0} ms (cached: {})",
                s.name,
                s.compute_capability.0,
                s.compute_capability.1,
                s.context_ms,
                s.compile_ms,
                s.kernels_cached
            );
            true
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(
                matches!(e, Error::CudaUnavailable { .. }),
                "a missing GPU must be CudaUnavailable, got {e:?}"
            );
            assert!(msg.starts_with("cuda:0: "), "{msg}");
            assert!(!msg.contains('\n'), "one line: {msg}");
            assert!(
                std::env::var_os("GGUF_LOADER_REQUIRE_GPU").is_none(),
                "GGUF_LOADER_REQUIRE_GPU is set but: {msg}"
            );
            eprintln!("skipped: {msg}");
            false
        }
    }
}

/// A GGUF with, for every type, a tensor of random bytes of a few rows of
/// a few blocks, one of 1000+ blocks (split pieces with a small ring), one
/// of a single block, and one of no values.
fn every_type_file(dir: &Path) -> std::path::PathBuf {
    let mut rng = Lcg(0x5eed_cafe);
    let mut w = GgufWriter::new();
    for ty in GgmlType::ALL {
        let bs = ty.block_size();
        let ts = ty.type_size() as usize;
        for (suffix, dims) in [
            ("rows", vec![bs * 3, 7]),
            ("long", vec![bs * 1031, 1]),
            ("one", vec![bs]),
            ("empty", vec![bs, 0]),
        ] {
            let blocks = dims.iter().product::<u64>() / bs;
            let data = rng.bytes(blocks as usize * ts);
            w.add_tensor(format!("{}.{suffix}", ty.name()), &dims, ty, data)
                .unwrap();
        }
    }
    let path = dir.join("every-type.gguf");
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(&w.to_bytes().unwrap()).unwrap();
    path
}

/// Whether the value of `kind` in `bytes` (little-endian) is a NaN.
fn is_nan(kind: ElementKind, bytes: &[u8]) -> bool {
    match kind {
        ElementKind::F32 => f32::from_le_bytes(bytes.try_into().unwrap()).is_nan(),
        ElementKind::F16 => f16::from_le_bytes(bytes.try_into().unwrap()).is_nan(),
        ElementKind::BF16 => bf16::from_le_bytes(bytes.try_into().unwrap()).is_nan(),
    }
}

/// The GPU model's tensors equal the CPU's bit for bit (same names, shapes,
/// value bits). With `nan_any`, a NaN may have another payload where both
/// are NaN: a NaN made by arithmetic on a NaN scale is the canonical NaN on
/// a GPU and carries an operand's payload on x86 (the CPU's own SIMD and
/// scalar paths differ there too); copied NaNs keep their bits everywhere.
fn same_bits<T: Element>(cpu: &Model<T>, gpu: &Model<T>, what: &str, nan_any: bool) {
    assert_eq!(cpu.len(), gpu.len(), "{what}: tensor count");
    let size = T::KIND.size();
    for (name, c) in cpu.tensors() {
        let g = gpu
            .tensor(name)
            .unwrap_or_else(|| panic!("{what}: {name} missing"));
        assert_eq!(g.device(), GPU);
        assert_eq!(c.ne(), g.ne(), "{what}: {name} shape");
        let h = g.to_host().unwrap();
        assert_eq!(h.device(), Device::Cpu);
        let (a, b) = (c.as_bytes(), h.as_bytes());
        assert_eq!(a.len(), b.len(), "{what}: {name} length");
        let bad = a
            .chunks_exact(size)
            .zip(b.chunks_exact(size))
            .position(|(x, y)| x != y && !(nan_any && is_nan(T::KIND, x) && is_nan(T::KIND, y)));
        if let Some(i) = bad {
            panic!(
                "{what}: {name} {:?} differs at value {i}: cpu {:02x?}, gpu {:02x?}",
                c.shape(),
                &a[i * size..(i + 1) * size],
                &b[i * size..(i + 1) * size]
            );
        }
    }
}

fn both<T: Element>(path: &Path, opts: LoadOptions<'_>, what: &str, nan_any: bool) {
    let loader = MmapGGUFLoader::new(path).unwrap();
    let cpu = loader.load_model::<T>(Device::Cpu).unwrap();
    let gpu = loader.load_model_with::<T>(GPU, opts).unwrap();
    same_bits(&cpu, &gpu, &format!("{what} {}", T::KIND.name()), nan_any);
}

#[test]
fn every_type_every_output_bit_for_bit() {
    let _serial = common::serial();
    if !gpu() {
        let dir = tempfile::tempdir().unwrap();
        let path = every_type_file(dir.path());
        let loader = MmapGGUFLoader::new(&path).unwrap();
        let e = loader.load_model::<f16>(GPU).unwrap_err();
        assert!(matches!(e, Error::CudaUnavailable { .. }), "{e:?}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = every_type_file(dir.path());
    for staging in [
        GpuStaging::Auto,
        GpuStaging::Pread,
        GpuStaging::Mapping,
        GpuStaging::Register,
    ] {
        let opts = LoadOptions::default().gpu_staging(staging);
        let what = format!("every type, {staging:?}");
        both::<f32>(&path, opts, &what, true);
        both::<f16>(&path, opts, &what, true);
        both::<bf16>(&path, opts, &what, true);
    }
    // A ring of four 1 MiB slots: long tensors are split into pieces.
    let small = LoadOptions::default().gpu_ring_bytes(4 << 20);
    both::<f16>(&path, small, "every type, small ring", true);
    // One tensor at a time, and read mode.
    let loader = MmapGGUFLoader::open(&path, LoadMode::Read).unwrap();
    for name in loader.tensor_names() {
        let c = loader.load_tensor::<f32>(name, Device::Cpu).unwrap();
        let g = loader.load_tensor::<f32>(name, GPU).unwrap();
        let h = g.to_host().unwrap();
        assert_eq!((c.ne(), c.len()), (h.ne(), g.len()), "{name} (read mode)");
        for (x, y) in c.data().iter().zip(h.data()) {
            assert!(
                x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()),
                "{name} (read mode)"
            );
        }
    }
}

/// A big-endian file (the fixture whose quantized blocks are in
/// gguf_convert_endian.py's byte order): each tensor loads on the GPU as on
/// the CPU (swapped and decoded there, then uploaded), and Q4_1, which has
/// no big-endian order, is refused on both alike.
#[test]
fn big_endian_files_load_as_on_the_cpu() {
    let _serial = common::serial();
    if !gpu() {
        return;
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/all_types_be.gguf");
    let loader = MmapGGUFLoader::new(&path).unwrap();
    let mut uploaded = 0;
    for t in loader.tensors() {
        let cpu = loader.load_tensor::<f32>(t.name, Device::Cpu);
        let gpu = loader.load_tensor::<f32>(t.name, GPU);
        match (cpu, gpu) {
            (Ok(c), Ok(g)) => {
                assert_eq!(g.device(), GPU);
                assert_eq!(c.as_bytes(), g.to_host().unwrap().as_bytes(), "{}", t.name);
                uploaded += 1;
            }
            (Err(Error::BigEndianData { ty: a, .. }), Err(Error::BigEndianData { ty: b, .. })) => {
                assert_eq!((a, b), (GgmlType::Q4_1, GgmlType::Q4_1));
            }
            (c, g) => panic!("{}: cpu {:?}, gpu {:?}", t.name, c.err(), g.err()),
        }
    }
    assert_eq!(uploaded, loader.tensor_count() - 1);
    let e = loader.load_model::<f16>(GPU).unwrap_err();
    assert!(
        matches!(
            e,
            Error::BigEndianData {
                ty: GgmlType::Q4_1,
                ..
            }
        ),
        "{e}"
    );
}

/// Big-endian data that is its own little-endian form (I8, MXFP4, NVFP4:
/// bytes only) is decoded on the GPU, not on the CPU: equal to the same
/// bytes in a little-endian file.
#[test]
fn big_endian_byte_types_decode_on_the_gpu() {
    let _serial = common::serial();
    if !gpu() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for e in [Endianness::Little, Endianness::Big] {
        let mut rng = Lcg(0xb16e);
        let mut w = GgufWriter::new().endianness(e);
        for ty in [GgmlType::I8, GgmlType::MXFP4, GgmlType::NVFP4] {
            let dims = [ty.block_size() * 1031, 3];
            let data = rng.bytes(1031 * 3 * ty.type_size() as usize);
            w.add_tensor(ty.name(), &dims, ty, data).unwrap();
        }
        let path = dir.path().join(format!("{e:?}.gguf"));
        std::fs::write(&path, w.to_bytes().unwrap()).unwrap();
        files.push(path);
    }
    let le = MmapGGUFLoader::new(&files[0]).unwrap();
    let be = MmapGGUFLoader::new(&files[1]).unwrap();
    assert_eq!(be.endianness(), Endianness::Big);
    let small = LoadOptions::default().gpu_ring_bytes(4 << 20);
    let cpu = le.load_model::<f16>(Device::Cpu).unwrap();
    let gpu = be.load_model_with::<f16>(GPU, small).unwrap();
    same_bits(&cpu, &gpu, "big-endian byte types", true);
}

#[test]
fn real_models_bit_for_bit() {
    let _serial = common::serial();
    if !gpu() {
        return;
    }
    for path in common::real_models() {
        let what = path.file_name().unwrap().to_string_lossy().to_string();
        // Real weights have no NaN: every bit must agree.
        both::<f16>(&path, LoadOptions::default(), &what, false);
        both::<bf16>(&path, LoadOptions::default(), &what, false);
        both::<f32>(
            &path,
            LoadOptions::default().gpu_ring_bytes(8 << 20),
            &what,
            false,
        );
    }
}

#[test]
fn lazy_layers_on_the_gpu() {
    let _serial = common::serial();
    if !gpu() {
        let Some(path) = common::model_path() else {
            return;
        };
        let lazy = LazyModel::<f16>::open(&path).unwrap();
        assert!(matches!(
            lazy.on_device(GPU),
            Err(Error::CudaUnavailable { .. })
        ));
        return;
    }
    let Some(path) = common::model_path() else {
        return;
    };
    let cpu = MmapGGUFLoader::new(&path)
        .unwrap()
        .load_f16_model(Device::Cpu)
        .unwrap();
    let lazy = LazyModel::<f16>::open(&path)
        .unwrap()
        .on_device(GPU)
        .unwrap();
    assert_eq!(lazy.device(), GPU);
    let mut seen = 0;
    for layer in lazy.layers(Prefetch::NextLayer) {
        let layer = layer.unwrap();
        for (suffix, t) in layer.tensors() {
            let name = format!("blk.{}.{suffix}", layer.index);
            assert_eq!(t.device(), GPU);
            assert_eq!(
                cpu.tensor(&name).unwrap().as_bytes(),
                t.to_host().unwrap().as_bytes(),
                "{name}"
            );
            seen += 1;
        }
    }
    assert!(seen > 0);
    let emb = lazy.tensor("token_embd.weight").unwrap();
    assert_eq!(
        emb.to_host().unwrap(),
        *cpu.tensor("token_embd.weight").unwrap()
    );
}

#[test]
fn progress_cancel_and_tensor_handles() {
    let _serial = common::serial();
    if !gpu() {
        return;
    }
    let Some(path) = common::model_path() else {
        return;
    };
    let loader = MmapGGUFLoader::new(&path).unwrap();
    let calls = AtomicUsize::new(0);
    let last = std::sync::Mutex::new(None::<Progress>);
    let f = |p: &Progress| {
        calls.fetch_add(1, Ordering::Relaxed);
        *last.lock().unwrap() = Some(*p);
        true
    };
    let model = loader
        .load_model_with::<f16>(GPU, LoadOptions::default().progress(&f))
        .unwrap();
    let p = last.lock().unwrap().unwrap();
    assert_eq!(p.tensors_done, p.tensors_total);
    assert_eq!(p.bytes_done, p.bytes_total);
    assert!(calls.load(Ordering::Relaxed) > 0);

    let stop = |_: &Progress| false;
    let e = loader
        .load_model_with::<f16>(GPU, LoadOptions::default().progress(&stop))
        .unwrap_err();
    assert!(matches!(e, Error::Cancelled), "{e:?}");

    // Some tensors by name: their own progress total, in the order asked,
    // the same bits as the CPU's.
    let names = [
        "output_norm.weight",
        "blk.0.attn_q.weight",
        "token_embd.weight",
    ];
    let some = loader
        .load_tensors_with::<f16, _>(&names, GPU, LoadOptions::default().progress(&f))
        .unwrap();
    let p = last.lock().unwrap().unwrap();
    assert_eq!((p.tensors_done, p.tensors_total), (3, 3));
    let want: u64 = names
        .iter()
        .map(|n| loader.tensor_info(n).unwrap().n_bytes)
        .sum();
    assert_eq!((p.bytes_done, p.bytes_total), (want, want));
    for ((n, t), name) in some.iter().zip(names) {
        assert_eq!(n, name);
        assert_eq!(t.device(), GPU);
        let cpu = loader.load_tensor_f16(name, Device::Cpu).unwrap();
        assert_eq!(t.to_host().unwrap().as_bytes(), cpu.as_bytes(), "{name}");
    }

    // A GPU tensor: no host view, a cudarc slice of its length, a deep
    // clone, equality through the host.
    let t: &Tensor<f16> = model.tensor("token_embd.weight").unwrap();
    assert!(t.data().is_empty() && t.as_bytes().is_empty());
    let s = t.cuda_slice().unwrap();
    assert_eq!(s.len(), t.len());
    let c = t.clone();
    assert_eq!(&c, t);
    assert_eq!(c.device(), GPU);
    let host = c.into_vec();
    assert_eq!(host.len(), t.len());

    // VRAM: a dropped model's memory counts as free again (its frees are
    // stream-ordered; `cuda_memory` waits for them).
    let bytes: usize = model.tensors().map(|(_, t)| t.len() * 2).sum();
    drop(model);
    let (free_a, total) = cuda_memory(0).unwrap();
    let model = loader.load_model::<f16>(GPU).unwrap();
    let (free_b, _) = cuda_memory(0).unwrap();
    drop(model);
    let (free_c, _) = cuda_memory(0).unwrap();
    assert!(free_a - free_b >= bytes, "{free_a} - {free_b} < {bytes}");
    assert!(
        free_c + total / 100 >= free_a,
        "{free_c} after the drop, {free_a} before the load"
    );
    // The pooled staging ring (four 16 MiB slots) goes on request, and a
    // load after makes it again.
    gguf_loader::cuda_release_staging(0);
    let (free_d, _) = cuda_memory(0).unwrap();
    assert!(
        free_d >= free_c + (64 << 20),
        "{free_d} after the release, {free_c} before"
    );
    drop(loader.load_model::<f16>(GPU).unwrap());
}
