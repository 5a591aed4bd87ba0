//! Tensors the file already holds as the asked float (f16 of an F16 file,
//! f32 of F32, bf16 of BF16) are views of the mapping, not copies: the same
//! bits as a copy, in every load path (one tensor, a whole model, lazy
//! layers), never in read mode, a big-endian file or with `own_memory`;
//! alive after the loader; progress and cancel as a decode.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use gguf_loader::{
    bf16, f16, Device, Element, Endianness, Error, GgmlType, GgufWriter, LazyModel, LoadMode,
    LoadOptions, MetaValue, MmapGGUFLoader, Model, Prefetch, Preset, Progress, Tensor,
};

fn synth(dir: &Path, ty: GgmlType) -> PathBuf {
    let name = format!("views-{}.gguf", ty.name());
    common::write_synth(dir, &name, &Preset::TINY_TEST, ty, 11)
}

/// Name, type in the file, whether mapped, and the values' bytes.
fn summary<T: Element>(
    loader: &MmapGGUFLoader,
    m: &Model<T>,
) -> Vec<(String, GgmlType, bool, Vec<u8>)> {
    m.tensors()
        .map(|(n, t)| {
            (
                n.to_string(),
                loader.tensor_info(n).unwrap().ty,
                t.is_mapped(),
                T::to_le_bytes_vec(t.data()),
            )
        })
        .collect()
}

/// Loads `path` as `T` whole, by tensor and lazily, mapped and read, with
/// and without `own_memory`: the same bytes everywhere; views exactly
/// where the file's type is `T`'s and they are allowed.
fn views_where_the_file_holds<T: Element>(path: &Path) {
    let what = format!("{} as {}", path.display(), T::KIND.name());
    let mapped = MmapGGUFLoader::new(path).unwrap();
    let own = LoadOptions::default().own_memory(true);
    let copied = summary(
        &mapped,
        &mapped.load_model_with::<T>(Device::Cpu, own).unwrap(),
    );
    assert!(copied.iter().all(|(_, _, m, _)| !m), "{what}: own_memory");
    let viewed = summary(&mapped, &mapped.load_model::<T>(Device::Cpu).unwrap());
    let mut views = 0;
    for ((n, ty, is_view, bytes), (_, _, _, want)) in viewed.iter().zip(&copied) {
        assert_eq!(bytes, want, "{what}: {n}");
        assert_eq!(*is_view, *ty == T::KIND.ggml_type(), "{what}: {n} ({ty})");
        views += usize::from(*is_view);
        let one = mapped.load_tensor::<T>(n, Device::Cpu).unwrap();
        assert_eq!(one.is_mapped(), *is_view, "{what}: load_tensor {n}");
        assert_eq!(&T::to_le_bytes_vec(one.data()), want, "{what}: {n}");
    }
    assert!(views > 0, "{what}: no tensor of the file's type");

    // The same tensors by name, in another order: views where the whole
    // model's are, the same bits, in the order asked.
    let names: Vec<&str> = viewed.iter().rev().map(|c| c.0.as_str()).collect();
    for own_memory in [false, true] {
        let opts = LoadOptions::default().own_memory(own_memory);
        let some = mapped
            .load_tensors_with::<T, _>(&names, Device::Cpu, opts)
            .unwrap();
        assert_eq!(some.len(), names.len(), "{what}");
        for ((n, t), (want_name, _, is_view, want)) in some.iter().zip(viewed.iter().rev()) {
            assert_eq!(n, want_name, "{what}: load_tensors_with's order");
            assert_eq!(&T::to_le_bytes_vec(t.data()), want, "{what}: {n}");
            assert_eq!(t.is_mapped(), *is_view && !own_memory, "{what}: {n}");
        }
    }

    let read = MmapGGUFLoader::open(path, LoadMode::Read).unwrap();
    let by_read = summary(&read, &read.load_model::<T>(Device::Cpu).unwrap());
    for ((n, _, is_view, bytes), (_, _, _, want)) in by_read.iter().zip(&copied) {
        assert!(!is_view, "{what}: read mode viewed {n}");
        assert_eq!(bytes, want, "{what}: read {n}");
    }

    for own_memory in [false, true] {
        let opts = LoadOptions::default().own_memory(own_memory);
        let lazy = LazyModel::<T>::with_options(Arc::new(MmapGGUFLoader::new(path).unwrap()), opts)
            .unwrap();
        let mut seen = 0;
        for prefetch in [Prefetch::NextLayer, Prefetch::Off] {
            for layer in lazy.layers(prefetch) {
                let layer = layer.unwrap();
                for (suffix, t) in layer.tensors() {
                    let name = format!("blk.{}.{suffix}", layer.index);
                    let (_, ty, _, want) = copied.iter().find(|c| c.0 == name).unwrap();
                    assert_eq!(&T::to_le_bytes_vec(t.data()), want, "{what}: lazy {name}");
                    let view = !own_memory && *ty == T::KIND.ggml_type();
                    assert_eq!(t.is_mapped(), view, "{what}: lazy {name}, own {own_memory}");
                    seen += 1;
                }
            }
        }
        for name in lazy.global_names() {
            let t = lazy.tensor(name).unwrap();
            let (_, ty, _, want) = copied.iter().find(|c| c.0 == name).unwrap();
            assert_eq!(&T::to_le_bytes_vec(t.data()), want, "{what}: lazy {name}");
            assert_eq!(t.is_mapped(), !own_memory && *ty == T::KIND.ggml_type());
        }
        assert!(seen > 0, "{what}");
    }
}

#[test]
fn f16_bf16_and_f32_tensors_are_views_of_their_file() {
    let dir = tempfile::tempdir().unwrap();
    // The synthetic models keep their norms in F32.
    let f16_file = synth(dir.path(), GgmlType::F16);
    views_where_the_file_holds::<f16>(&f16_file);
    views_where_the_file_holds::<f32>(&f16_file);
    views_where_the_file_holds::<bf16>(&synth(dir.path(), GgmlType::BF16));
    views_where_the_file_holds::<f32>(&synth(dir.path(), GgmlType::F32));
}

#[test]
fn a_view_outlives_its_loader_and_model() {
    let dir = tempfile::tempdir().unwrap();
    let path = synth(dir.path(), GgmlType::F16);
    let loader = MmapGGUFLoader::new(&path).unwrap();
    let name = loader
        .tensors()
        .find(|t| t.ty == GgmlType::F16)
        .unwrap()
        .name
        .to_string();
    let want =
        loader.load_tensor_with::<f16>(&name, Device::Cpu, LoadOptions::default().own_memory(true));
    let want = want.unwrap();
    let mut model = loader.load_f16_model(Device::Cpu).unwrap();
    let taken: Tensor<f16> = model.take(&name).unwrap();
    let single = loader.load_tensor_f16(&name, Device::Cpu).unwrap();
    drop((model, loader));
    assert!(taken.is_mapped() && single.is_mapped());
    assert_eq!(taken, want);
    assert_eq!(single, want);
    // A clone is a copy of its own; `into_vec` too.
    let clone = taken.clone();
    assert!(!clone.is_mapped());
    assert_eq!(clone, want);
    assert_eq!(taken.into_vec(), want.data());
}

#[test]
fn progress_and_cancel_count_views_as_decodes() {
    let dir = tempfile::tempdir().unwrap();
    let path = synth(dir.path(), GgmlType::F16);
    let loader = MmapGGUFLoader::new(&path).unwrap();
    let total: u64 = loader.tensors().map(|t| t.n_bytes).sum();
    let last = std::sync::Mutex::new(None::<Progress>);
    let report = |p: &Progress| {
        *last.lock().unwrap() = Some(*p);
        true
    };
    let model = loader
        .load_model_with::<f16>(Device::Cpu, LoadOptions::default().progress(&report))
        .unwrap();
    let p = last.lock().unwrap().unwrap();
    assert_eq!((p.bytes_done, p.bytes_total), (total, total));
    assert_eq!(
        (p.tensors_done, p.tensors_total),
        (model.len(), model.len())
    );

    let calls = AtomicUsize::new(0);
    let stop = |_: &Progress| calls.fetch_add(1, Ordering::Relaxed) > 0;
    let r = loader.load_model_with::<f16>(Device::Cpu, LoadOptions::default().progress(&stop));
    assert!(matches!(r, Err(Error::Cancelled)), "{r:?}");
}

#[test]
fn some_tensors_by_name_count_their_own_progress() {
    let dir = tempfile::tempdir().unwrap();
    let path = synth(dir.path(), GgmlType::F16);
    let loader = MmapGGUFLoader::new(&path).unwrap();
    // Three tensors, one a view, one given twice.
    let infos: Vec<_> = loader.tensors().collect();
    let f16_one = infos.iter().find(|t| t.ty == GgmlType::F16).unwrap();
    let f32_one = infos.iter().find(|t| t.ty == GgmlType::F32).unwrap();
    let names = [f16_one.name, f32_one.name, f16_one.name];
    let total = 2 * f16_one.n_bytes + f32_one.n_bytes;
    let last = std::sync::Mutex::new(None::<Progress>);
    let report = |p: &Progress| {
        *last.lock().unwrap() = Some(*p);
        true
    };
    let opts = LoadOptions::default().progress(&report).threads(2);
    let got = loader
        .load_tensors_with::<f16, _>(&names, Device::Cpu, opts)
        .unwrap();
    let p = last.lock().unwrap().unwrap();
    assert_eq!((p.tensors_done, p.tensors_total), (3, 3));
    assert_eq!((p.bytes_done, p.bytes_total), (total, total));
    let mapped: Vec<bool> = got.iter().map(|(_, t)| t.is_mapped()).collect();
    assert_eq!(mapped, [true, false, true]);
    assert_eq!(got[0].1, got[2].1);
    assert_eq!(
        got[1].1,
        loader.load_tensor_f16(f32_one.name, Device::Cpu).unwrap()
    );

    // An unknown name errs before any work; no name loads nothing.
    let calls = AtomicUsize::new(0);
    let count = |_: &Progress| {
        calls.fetch_add(1, Ordering::Relaxed);
        true
    };
    let r = loader.load_tensors_with::<f16, _>(
        &[f16_one.name, "no.such.tensor"],
        Device::Cpu,
        LoadOptions::default().progress(&count),
    );
    assert!(
        matches!(&r, Err(Error::TensorNotFound(n)) if n == "no.such.tensor"),
        "{r:?}"
    );
    assert_eq!(calls.load(Ordering::Relaxed), 0);
    let none = loader.load_tensors_with::<f16, &str>(&[], Device::Cpu, LoadOptions::default());
    assert!(none.unwrap().is_empty());

    let stop = |_: &Progress| false;
    let r = loader.load_tensors_with::<f16, _>(
        &names,
        Device::Cpu,
        LoadOptions::default().progress(&stop),
    );
    assert!(matches!(r, Err(Error::Cancelled)), "{r:?}");
}

#[test]
fn a_big_endian_file_is_decoded_not_viewed() {
    let values: Vec<f16> = (0..64)
        .map(|i| f16::from_f32(i as f32 * 0.25 - 3.0))
        .collect();
    let be: Vec<u8> = values.iter().flat_map(|v| v.to_be_bytes()).collect();
    let le: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let dir = tempfile::tempdir().unwrap();
    for (endianness, data) in [(Endianness::Big, be), (Endianness::Little, le)] {
        let mut w = GgufWriter::new().endianness(endianness);
        w.add("general.architecture", MetaValue::String("llama".into()));
        w.add_tensor("x", &[64], GgmlType::F16, data).unwrap();
        let path = dir.path().join(format!("{endianness:?}.gguf"));
        std::fs::write(&path, w.to_bytes().unwrap()).unwrap();
        let loader = MmapGGUFLoader::new(&path).unwrap();
        let t = loader.load_tensor_f16("x", Device::Cpu).unwrap();
        assert_eq!(t.data(), values, "{endianness:?}");
        assert_eq!(t.is_mapped(), endianness == Endianness::Little);
    }
}

/// The real models: their F32 norms are views when loaded as f32, in
/// every path, with the same bits as copies.
#[test]
fn real_models_f32_tensors_are_views() {
    for path in common::real_models() {
        views_where_the_file_holds::<f32>(&path);
    }
}

/// A real model written again in F16 (as `convert --dtype f16` does): every
/// matrix a view, each equal to the copy of the original's decode.
#[test]
fn a_real_model_in_f16_is_all_views() {
    let Some(path) = common::model_path() else {
        return;
    };
    let src = MmapGGUFLoader::new(&path).unwrap();
    let decoded = src.load_f16_model(Device::Cpu).unwrap();
    let mut w = GgufWriter::new();
    for (k, v) in src.metadata().iter() {
        if k != gguf_loader::ALIGNMENT_KEY {
            w.add_value(k, *v);
        }
    }
    let mut n_f16 = 0;
    for info in src.tensors() {
        let dims: Vec<u64> = info.ne().to_vec();
        if info.ty == GgmlType::F32 {
            w.add_tensor(
                info.name,
                &dims,
                GgmlType::F32,
                src.get_tensor_data(info.name).unwrap(),
            )
            .unwrap();
        } else {
            let t = decoded.tensor(info.name).unwrap();
            w.add_tensor(
                info.name,
                &dims,
                GgmlType::F16,
                f16::to_le_bytes_vec(t.data()),
            )
            .unwrap();
            n_f16 += 1;
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("f16.gguf");
    std::fs::write(&out, w.to_bytes().unwrap()).unwrap();
    let loader = MmapGGUFLoader::new(&out).unwrap();
    let model = loader.load_f16_model(Device::Cpu).unwrap();
    let mut views = 0;
    for (n, t) in model.tensors() {
        let want = decoded.tensor(n).unwrap();
        assert_eq!(t, want, "{n}");
        views += usize::from(t.is_mapped());
    }
    assert_eq!(views, n_f16);
    views_where_the_file_holds::<f16>(&out);
}
