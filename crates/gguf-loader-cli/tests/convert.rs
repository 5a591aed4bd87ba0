//! `gguf-loader convert`: safetensors and f16/bf16/f32 GGUF outputs hold
//! exactly what the library decodes.

use std::path::{Path, PathBuf};
use std::process::Command;

use gguf_loader::{bf16, f16, Device, Element, GgmlType, MmapGGUFLoader};

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/all_types_le.gguf")
}

fn convert(args: &[&str], input: &Path, output: &Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_gguf-loader"))
        .arg("convert")
        .arg(input)
        .arg("-o")
        .arg(output)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn decoded<T: Element>(loader: &MmapGGUFLoader, name: &str) -> Vec<u8> {
    T::to_le_bytes_vec(loader.load_tensor::<T>(name, Device::Cpu).unwrap().data())
}

#[test]
fn safetensors_output() {
    let dir = tempfile::tempdir().unwrap();
    let src = MmapGGUFLoader::new(fixture()).unwrap();
    for (dtype, st_dtype) in [
        ("f16", safetensors::Dtype::F16),
        ("bf16", safetensors::Dtype::BF16),
        ("f32", safetensors::Dtype::F32),
    ] {
        let out = dir.path().join(format!("x-{dtype}.safetensors"));
        convert(&["--dtype", dtype], &fixture(), &out);
        let bytes = std::fs::read(&out).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(st.len(), src.tensor_count());
        for name in src.tensor_names() {
            let t = st.tensor(name).unwrap();
            let info = src.tensor_info(name).unwrap();
            let shape: Vec<usize> = info.shape().iter().map(|d| *d as usize).collect();
            assert_eq!(t.shape(), &shape[..], "{name}: PyTorch order");
            assert_eq!(t.dtype(), st_dtype);
            let want = match dtype {
                "f16" => decoded::<f16>(&src, name),
                "bf16" => decoded::<bf16>(&src, name),
                _ => decoded::<f32>(&src, name),
            };
            assert_eq!(t.data(), &want[..], "{name} as {dtype}");
        }
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        let meta = meta.metadata().clone().unwrap();
        assert_eq!(
            meta["general.architecture"],
            src.metadata().get_str("general.architecture").unwrap()
        );
        assert_eq!(meta["test.u32.max"], u32::MAX.to_string());
        assert!(!meta.contains_key("test.array.u8"), "arrays are left out");
    }
}

#[test]
fn tensor_filter_and_gguf_output() {
    let dir = tempfile::tempdir().unwrap();
    let src = MmapGGUFLoader::new(fixture()).unwrap();
    let out = dir.path().join("x.gguf");
    convert(
        &["--dtype", "f16", "--tensors", r"^tensor\.q"],
        &fixture(),
        &out,
    );
    let l = MmapGGUFLoader::new(&out).unwrap();
    let names = l.tensor_names();
    assert!(!names.is_empty() && names.iter().all(|n| n.starts_with("tensor.q")));
    assert_eq!(l.metadata().get_u32("general.file_type").unwrap(), 1);
    assert_eq!(
        l.metadata().get_str("general.architecture").unwrap(),
        src.metadata().get_str("general.architecture").unwrap()
    );
    // Every key is carried over (floats compared by bits, NaN included).
    for (k, v) in src.metadata().iter() {
        if k != "general.file_type" {
            let got = l.metadata().get(k).unwrap_or_else(|| panic!("{k} dropped"));
            assert_eq!(format!("{got:?}"), format!("{v:?}"), "{k}");
        }
    }
    for name in names {
        assert_eq!(l.tensor_info(name).unwrap().ty, GgmlType::F16);
        assert_eq!(
            l.get_tensor_data(name).unwrap(),
            &decoded::<f16>(&src, name)[..]
        );
        assert_eq!(
            l.tensor_info(name).unwrap().ne(),
            src.tensor_info(name).unwrap().ne()
        );
    }
}

#[test]
fn bad_regex_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gguf-loader"))
        .arg("convert")
        .arg(fixture())
        .arg("-o")
        .arg(dir.path().join("x.safetensors"))
        .args(["--tensors", "("])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn big_endian_quantized_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let be = fixture().with_file_name("all_types_be.gguf");
    for out in ["x.safetensors", "x.gguf"] {
        let o = Command::new(env!("CARGO_BIN_EXE_gguf-loader"))
            .arg("convert")
            .arg(&be)
            .arg("-o")
            .arg(dir.path().join(out))
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{out}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("big-endian") && !err.contains("panicked"),
            "{err}"
        );
    }
    // Its plain float tensors convert.
    convert(
        &["--tensors", r"^tensor\.f(32|16)"],
        &be,
        &dir.path().join("f.safetensors"),
    );
}
