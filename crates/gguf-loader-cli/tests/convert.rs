//! `gguf-loader convert`: safetensors and f16/bf16/f32 GGUF outputs hold
//! exactly what the library decodes, keep every metadata key, are what
//! llama.cpp makes of the same model, stream with about one tensor in
//! memory, and never destroy an input or leave a partial file behind.

#[path = "../../gguf-loader/tests/common/mod.rs"]
mod common;
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use gguf_loader::{bf16, f16, Device, Element, GgmlType, MmapGGUFLoader, Value};
use support::{cli, listing, run, Ran, Tmpfs, Unwritable};

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/all_types_le.gguf")
}

fn convert(args: &[&str], input: &Path, output: &Path) {
    let out = cli()
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
        assert_metadata_kept(&src, &meta);
    }
}

/// Every GGUF key is in safetensors' `__metadata__`: scalars as text,
/// arrays as JSON text of the same items.
fn assert_metadata_kept(src: &MmapGGUFLoader, meta: &std::collections::HashMap<String, String>) {
    fn same(v: &Value<'_>, j: &serde_json::Value, key: &str) {
        use serde_json::Value as J;
        match (v, j) {
            (Value::Array(a), J::Array(items)) => {
                assert_eq!(a.len(), items.len() as u64, "{key}");
                for (x, y) in a.iter().zip(items) {
                    same(&x, y, key);
                }
            }
            (Value::String(s), J::String(t)) => assert_eq!(s.to_string_lossy(), *t, "{key}"),
            (Value::Bool(b), J::Bool(c)) => assert_eq!(b, c, "{key}"),
            (Value::F32(_) | Value::F64(_), _) => {
                let x = v.as_f64().unwrap();
                if x.is_finite() {
                    // Read back bit for bit, -0.0 included.
                    let got = j.as_f64().unwrap_or_else(|| panic!("{key}: {j}"));
                    match v {
                        Value::F32(f) => assert_eq!((got as f32).to_bits(), f.to_bits(), "{key}"),
                        _ => assert_eq!(got.to_bits(), x.to_bits(), "{key}"),
                    }
                } else {
                    let want = match x {
                        x if x.is_nan() => "NaN",
                        x if x > 0.0 => "inf",
                        _ => "-inf",
                    };
                    assert_eq!(j, &J::String(want.into()), "{key}");
                }
            }
            _ => {
                let int = |a: Option<i64>, b: Option<u64>| a.map(i128::from).or(b.map(i128::from));
                let got = int(j.as_i64(), j.as_u64());
                assert!(
                    got.is_some() && got == int(v.as_i64(), v.as_u64()),
                    "{key}: {j} for {v:?}"
                );
            }
        }
    }
    assert_eq!(meta.len(), src.metadata().len(), "every key");
    for (k, v) in src.metadata().iter() {
        let text = meta.get(k).unwrap_or_else(|| panic!("{k} dropped"));
        match v {
            Value::Array(_) => {
                let j: serde_json::Value =
                    serde_json::from_str(text).unwrap_or_else(|e| panic!("{k}: {e}"));
                same(v, &j, k);
            }
            Value::String(s) => assert_eq!(s.to_string_lossy(), *text, "{k}"),
            _ => assert!(!text.is_empty(), "{k}"),
        }
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
        // As llama.cpp's converters: 1-D tensors (ggml_n_dims, trailing 1s
        // not counted) stay f32.
        let ne = src.tensor_info(name).unwrap().ne().to_vec();
        let one_d = ne.iter().skip(1).all(|&d| d == 1);
        let (ty, want) = if one_d {
            (GgmlType::F32, decoded::<f32>(&src, name))
        } else {
            (GgmlType::F16, decoded::<f16>(&src, name))
        };
        assert_eq!(l.tensor_info(name).unwrap().ty, ty, "{name}");
        assert_eq!(l.get_tensor_data(name).unwrap(), &want[..], "{name}");
        assert_eq!(
            l.tensor_info(name).unwrap().ne(),
            src.tensor_info(name).unwrap().ne()
        );
    }
}

#[test]
fn bad_regex_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = cli()
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
        let o = cli()
            .arg("convert")
            .arg(&be)
            .arg("-o")
            .arg(dir.path().join(out))
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{out}");
        let err = String::from_utf8_lossy(&o.stderr);
        // One line naming the file, then the tensor.
        let line = format!("gguf-loader: {}: tensor '", be.display());
        assert!(
            err.contains("big-endian") && !err.contains("panicked") && err.starts_with(&line),
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

/// `bench --json`: one object with a row per tensor type, the same
/// figures as the table.
#[test]
fn bench_json_has_a_row_per_type() {
    let dir = tempfile::tempdir().unwrap();
    let model = support::tiny_model(dir.path());
    let r = run(cli()
        .arg("bench")
        .arg(&model)
        .args(["--threads", "1", "--json"]));
    let j: serde_json::Value = serde_json::from_str(r.ok()).unwrap();
    assert_eq!(j["threads"], 1);
    assert_eq!(j["dtype"], "f16");
    let types: Vec<&str> = j["types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["F32", "Q4_K"]);
    let q4k = &j["types"][1];
    assert_eq!(q4k["tensors"], 16);
    for key in [
        "gb_per_s_1_thread",
        "memcpy_gb_per_s_1_thread",
        "gb_per_s_all",
        "memcpy_gb_per_s_all",
    ] {
        assert!(q4k[key].as_f64().unwrap() > 0.0, "{key}: {q4k}");
    }
}

/// `bench` on a big-endian file times the decoders on its bytes as stored,
/// and says so: a load would swap them, or refuse them.
#[test]
fn bench_says_a_big_endian_file_is_timed_as_stored() {
    use gguf_loader::{Endianness, GgufWriter};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("be.gguf");
    let mut w = GgufWriter::new().endianness(Endianness::Big);
    w.add_tensor("t", &[64], GgmlType::F32, vec![0u8; 256])
        .unwrap();
    std::fs::write(&path, w.to_bytes().unwrap()).unwrap();
    let r = run(cli().arg("bench").arg(&path).args(["--threads", "1"]));
    assert!(r.ok().contains("F32"), "{}", r.stdout);
    assert!(
        r.stderr
            .contains("is big-endian: its bytes are decoded as stored"),
        "{}",
        r.stderr
    );
}

/// `convert INPUT -o OUTPUT ARGS…`, measured.
fn conv(input: &Path, output: &Path, args: &[&str]) -> Ran {
    run(cli()
        .arg("convert")
        .arg(input)
        .arg("-o")
        .arg(output)
        .args(args))
}

/// The fixture copied into `dir` (a file the test may lose).
fn copy_fixture(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::copy(fixture(), &p).unwrap();
    p
}

/// An output that names a directory (`x.gguf/`, `x.gguf/.`) is refused
/// before any work; it once failed at the rename, after the decoding.
#[test]
fn an_output_naming_a_directory_is_refused_up_front() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["x.gguf/", "x.gguf/.", "x.safetensors/"] {
        let out = PathBuf::from(format!("{}/{name}", dir.path().display()));
        let r = conv(&fixture(), &out, &[]);
        let err = r.err();
        assert!(
            err.contains("names a directory, not a file"),
            "{name}: {err}"
        );
    }
    assert!(listing(dir.path()).is_empty());
}

/// `--mode read` (positioned reads, for an input that may change) writes
/// the same file as the memory map, on both real models.
#[test]
fn read_mode_converts_real_models_as_mmap_does() {
    for model in common::real_models() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("mmap.gguf"), dir.path().join("read.gguf"));
        conv(&model, &a, &["--mode", "mmap"]).ok();
        conv(&model, &b, &["--mode", "read"]).ok();
        assert!(
            std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(),
            "{}",
            model.display()
        );
    }
}

#[test]
fn output_name_must_pick_a_format() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["x.bin", "x", "x.gguf.tmp", "x.SAFETENSORS.txt"] {
        let out = dir.path().join(name);
        let r = conv(&fixture(), &out, &[]);
        let err = r.err();
        assert!(
            err.contains(name) && err.contains(".safetensors or .gguf"),
            "{err}"
        );
    }
    assert!(listing(dir.path()).is_empty());
    // The extension's case does not matter.
    for name in ["x.GGUF", "x.SafeTensors"] {
        let out = dir.path().join(name);
        conv(&fixture(), &out, &["--tensors", "^tensor.f32_1d$"]).ok();
        assert!(out.is_file(), "{name}");
    }
    let g = MmapGGUFLoader::new(dir.path().join("x.GGUF")).unwrap();
    assert_eq!(g.tensor_names(), ["tensor.f32_1d"]);
    let st = std::fs::read(dir.path().join("x.SafeTensors")).unwrap();
    safetensors::SafeTensors::deserialize(&st).unwrap();
}

#[test]
fn filter_matching_nothing_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let r = conv(
        &fixture(),
        &dir.path().join("x.gguf"),
        &["--tensors", "^no_such"],
    );
    let err = r.err();
    assert!(
        err.contains("^no_such") && err.contains("matches none of the 16 tensors"),
        "{err}"
    );
    assert!(listing(dir.path()).is_empty());
    // A bad expression is one line too.
    conv(&fixture(), &dir.path().join("x.gguf"), &["--tensors", "("]).err();
}

#[test]
fn unwritable_outputs_are_named() {
    let dir = tempfile::tempdir().unwrap();
    // A missing directory, a file as directory: the system's reason and the path.
    let missing = dir.path().join("no/such/x.gguf");
    let err = conv(&fixture(), &missing, &[]).err().to_string();
    assert!(
        err.contains(&*missing.to_string_lossy()) && err.contains(support::NO_SUCH_FILE),
        "{err}"
    );
    assert!(!err.contains("Os {"), "a Debug-printed error: {err}");
    assert!(!err.contains("at path"), "the temporary file's name: {err}");
    let file = copy_fixture(dir.path(), "in.gguf");
    let under_file = file.join("x.gguf");
    let err = conv(&fixture(), &under_file, &[]).err().to_string();
    assert!(err.contains(&*under_file.to_string_lossy()), "{err}");
    // A directory the process may not write in.
    if let Some(ro) = Unwritable::new() {
        let out = ro.path().join("x.safetensors");
        let err = conv(&fixture(), &out, &[]).err().to_string();
        assert!(
            err.contains(&*out.to_string_lossy()) && err.contains("cannot create"),
            "{err}"
        );
        assert!(listing(&ro.path()).is_empty());
    }
    // An existing directory or FIFO as the output, even with --force.
    let d = dir.path().join("d.gguf");
    std::fs::create_dir(&d).unwrap();
    for force in [&[][..], &["--force"][..]] {
        let err = conv(&fixture(), &d, force).err().to_string();
        assert!(err.contains("is a directory"), "{err}");
    }
    #[cfg(unix)]
    {
        let fifo = dir.path().join("p.gguf");
        support::mkfifo(&fifo);
        let err = conv(&fixture(), &fifo, &["--force"]).err().to_string();
        assert!(err.contains("not a regular file"), "{err}");
        assert_eq!(listing(dir.path()), ["d.gguf", "in.gguf", "p.gguf"]);
    }
}

#[test]
fn a_read_only_input_directory_is_fine() {
    let Some(ro) = Tmpfs::mount("size=1m") else {
        return;
    };
    std::fs::copy(fixture(), ro.path().join("in.gguf")).unwrap();
    let remount = |opt: &str| {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,{opt}")])
            .arg(ro.path())
            .status()
            .unwrap();
        assert!(ok.success());
    };
    remount("ro");
    let dir = tempfile::tempdir().unwrap();
    conv(&ro.path().join("in.gguf"), &dir.path().join("x.gguf"), &[]).ok();
    remount("rw");
}

/// (A dangling link, and the new file's mode: Unix.)
#[test]
fn an_output_is_never_replaced_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.gguf");
    std::fs::write(&out, b"precious").unwrap();
    let err = conv(&fixture(), &out, &[]).err().to_string();
    assert!(err.contains("exists") && err.contains("--force"), "{err}");
    assert_eq!(std::fs::read(&out).unwrap(), b"precious");
    // A dangling link is something too.
    #[cfg(unix)]
    {
        let link = dir.path().join("l.gguf");
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &link).unwrap();
        conv(&fixture(), &link, &[]).err();
    }
    let want: &[&str] = if cfg!(unix) {
        &["l.gguf", "x.gguf"]
    } else {
        &["x.gguf"]
    };

    let r = conv(&fixture(), &out, &["--force"]);
    let summary = r.ok();
    assert_eq!(summary.lines().count(), 1, "{summary}");
    assert!(
        summary.starts_with(&format!(
            "wrote {}: 10 tensors as f16, 6 kept as f32",
            out.display()
        )) && summary.contains("bytes"),
        "{summary}"
    );
    MmapGGUFLoader::new(&out).unwrap();
    assert_eq!(listing(dir.path()), want, "no temporary file left");
    // The new file has ordinary permissions (tempfile's default is 0600).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
        assert_ne!(mode, 0o600);
    }
}

#[cfg(unix)]
#[test]
fn the_input_is_never_the_output() {
    let dir = tempfile::tempdir().unwrap();
    let input = copy_fixture(dir.path(), "in.gguf");
    let before = std::fs::read(&input).unwrap();
    std::os::unix::fs::symlink(&input, dir.path().join("sym.gguf")).unwrap();
    std::fs::hard_link(&input, dir.path().join("hard.gguf")).unwrap();
    std::fs::rename(&input, dir.path().join("in.safetensors")).unwrap();
    std::fs::hard_link(dir.path().join("in.safetensors"), &input).unwrap();
    let same = [
        input.clone(),
        dir.path().join("sym.gguf"),
        dir.path().join("hard.gguf"),
        dir.path().join(".").join("in.gguf"),
        dir.path().join("in.safetensors"),
    ];
    for out in &same {
        for force in [&[][..], &["--force"][..]] {
            let err = conv(&input, out, force).err().to_string();
            assert!(err.contains("is the input"), "{}: {err}", out.display());
        }
        // Whichever name the input is given by.
        conv(out, &input, &["--force"]).err();
    }
    assert_eq!(std::fs::read(&input).unwrap(), before);
    assert_eq!(
        listing(dir.path()),
        ["hard.gguf", "in.gguf", "in.safetensors", "sym.gguf"]
    );
}

#[test]
fn no_shard_of_a_split_input_is_the_output() {
    use gguf_loader::{GgufWriter, MetaValue};
    let dir = tempfile::tempdir().unwrap();
    let p = |i: u16| dir.path().join(format!("m-{i:05}-of-00002.gguf"));
    for i in 0..2u16 {
        let mut w = GgufWriter::new();
        w.add("split.no", MetaValue::U16(i))
            .add("split.count", MetaValue::U16(2))
            .add("split.tensors.count", MetaValue::I32(2))
            .add("general.architecture", MetaValue::String("llama".into()));
        w.add_tensor(format!("t{i}"), &[4], GgmlType::F32, vec![i as u8; 16])
            .unwrap();
        std::fs::write(p(i + 1), w.to_bytes().unwrap()).unwrap();
    }
    let second = std::fs::read(p(2)).unwrap();
    let err = conv(&p(1), &p(2), &["--force"]).err().to_string();
    assert!(
        err.contains("is the input") && err.contains("00002-of-00002"),
        "{err}"
    );
    assert_eq!(std::fs::read(p(2)).unwrap(), second);
    // Both shards' tensors go to another file.
    let out = dir.path().join("whole.gguf");
    conv(&p(1), &out, &["--dtype", "f32"]).ok();
    let whole = MmapGGUFLoader::new(&out).unwrap();
    assert_eq!(whole.tensor_names(), ["t0", "t1"]);
    // One file out: no split keys, in either format.
    assert!(!whole.metadata().keys().any(|k| k.starts_with("split.")));
    let st = dir.path().join("whole.safetensors");
    conv(&p(1), &st, &["--dtype", "f32"]).ok();
    let bytes = std::fs::read(&st).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta = meta.metadata().clone().unwrap();
    assert!(meta.contains_key("general.architecture"), "{meta:?}");
    assert!(!meta.keys().any(|k| k.starts_with("split.")), "{meta:?}");
}

/// A GGUF of one F32 tensor of `n` elements.
fn one_tensor_file(path: &Path, n: u64) {
    let mut w = gguf_loader::GgufWriter::new();
    w.add(
        "general.architecture",
        gguf_loader::MetaValue::String("llama".into()),
    );
    w.add_tensor("big", &[n], GgmlType::F32, vec![0u8; n as usize * 4])
        .unwrap();
    std::fs::write(path, w.to_bytes().unwrap()).unwrap();
}

#[test]
fn a_full_disk_fails_cleanly() {
    let Some(small) = Tmpfs::mount("size=1m") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.gguf");
    one_tensor_file(&input, 1 << 20);
    for name in ["x.gguf", "x.safetensors"] {
        let out = small.path().join(name);
        let err = conv(&input, &out, &["--dtype", "f32"]).err().to_string();
        assert!(
            err.contains(&*out.to_string_lossy()) && err.contains("No space left"),
            "{err}"
        );
        assert!(
            listing(&small.path()).is_empty(),
            "a temporary file was left"
        );
    }
}

// (Unix: under `ulimit -v`.)
#[cfg(unix)]
#[test]
fn a_tensor_too_large_for_memory_is_a_clean_error() {
    use gguf_loader::GgufWriter;
    // A sparse 1 GiB IQ1_S tensor (no disk used): 5.4 G elements, 21.5 GB as
    // f32, under an address-space limit of 6 GiB so that no machine can
    // allocate it.
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("iq1.gguf");
    let rows = 1u64 << 16;
    let cols = 256 * 328;
    let mut w = GgufWriter::new();
    w.add_tensor_info("blk.0.ffn_up.weight", &[cols, rows], GgmlType::IQ1_S)
        .unwrap();
    let mut f = std::fs::File::create(&input).unwrap();
    // The header only; the data is the hole that set_len makes.
    w.write_header(&mut f).unwrap();
    let data = GgmlType::IQ1_S.byte_size(cols * rows).unwrap();
    let len = std::fs::metadata(&input).unwrap().len() + data;
    f.set_len(len).unwrap();
    drop(f);
    for out in ["x.gguf", "x.safetensors"] {
        let out = dir.path().join(out);
        let r = run(Command::new("sh")
            .arg("-c")
            .arg("ulimit -v 6291456 && exec \"$0\" \"$@\"")
            .arg(env!("CARGO_BIN_EXE_gguf-loader"))
            .arg("convert")
            .arg(&input)
            .arg("-o")
            .arg(&out)
            .args(["--dtype", "f32"]));
        let err = r.err();
        let bytes = cols * rows * 4;
        assert!(
            err.contains("blk.0.ffn_up.weight")
                && err.contains(&format!("cannot allocate {bytes} bytes")),
            "{err}"
        );
        assert_eq!(listing(dir.path()), ["iq1.gguf"]);
    }
}

/// Output bytes of the largest tensor decoded as f32.
fn largest_f32_tensor(l: &MmapGGUFLoader) -> u64 {
    l.tensors().map(|t| t.n_elements * 4).max().unwrap()
}

#[test]
fn peak_memory_is_about_one_tensor_on_real_models() {
    for model in common::real_models() {
        let l = MmapGGUFLoader::new(&model).unwrap();
        let input = std::fs::metadata(&model).unwrap().len();
        let largest = largest_f32_tensor(&l);
        let whole: u64 = l.tensors().map(|t| t.n_elements * 4).sum();
        let dir = tempfile::tempdir().unwrap();
        for name in ["x.gguf", "x.safetensors"] {
            let out = dir.path().join(name);
            let r = conv(&model, &out, &["--dtype", "f32"]);
            r.ok();
            // The mapped input (every page is read), one decoded tensor, and
            // room for the program, its threads and the metadata.
            let bound = input + largest + (128 << 20);
            let mib = |b: u64| b >> 20;
            eprintln!(
                "{} -> {name}: peak RSS {} MiB (input {} MiB, largest tensor {} MiB, output {} MiB)",
                model.display(),
                mib(r.max_rss),
                mib(input),
                mib(largest),
                mib(whole)
            );
            assert!(
                r.max_rss < bound,
                "{name}: peak RSS {} MiB, more than input + one tensor + 128 MiB ({} MiB)",
                mib(r.max_rss),
                mib(bound)
            );
            std::fs::remove_file(&out).unwrap();
        }
    }
}

#[test]
fn unwritable_output_fails_before_decoding_on_real_models() {
    // Today's bug: Gemma-3 decoded for 2 s and 1.5 GB, then failed.
    for model in common::real_models() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("missing/x.gguf");
        let r = conv(&model, &out, &["--dtype", "f32"]);
        let err = r.err();
        assert!(
            err.contains("missing/x.gguf") && err.contains(support::NO_SUCH_FILE),
            "{err}"
        );
        // Nothing decoded, and only the largest tensor's buffer reserved
        // (never touched): the resident set stays small.
        assert!(r.max_rss < 64 << 20, "peak RSS {} MiB", r.max_rss >> 20);
    }
}

/// A conversion of `model` to `out` (f32: long enough to be caught),
/// spawned, once its temporary file is there; `stderr` piped or not.
#[cfg(unix)]
fn convert_caught_writing(model: &Path, out: &Path, stderr: bool) -> std::process::Child {
    let dir = out.parent().unwrap();
    let child = cli()
        .arg("convert")
        .arg(model)
        .arg("-o")
        .arg(out)
        .args(["--dtype", "f32"])
        .stdout(std::process::Stdio::null())
        .stderr(if stderr {
            std::process::Stdio::piped()
        } else {
            std::process::Stdio::null()
        })
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while listing(dir).is_empty() {
        assert!(std::time::Instant::now() < deadline, "no temporary file");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let tmp = listing(dir);
    let name = out.file_name().unwrap().to_str().unwrap();
    assert!(
        tmp[0].starts_with(&format!(".{name}.")) && tmp[0].ends_with(".gguf-loader.tmp"),
        "{tmp:?}"
    );
    child
}

#[cfg(unix)]
#[test]
fn an_interrupted_run_leaves_nothing_behind() {
    let Some(model) = common::real_models().pop() else {
        return;
    };
    // Ctrl-C and SIGTERM (said "interrupted"), a fault (SIGBUS: a mapped
    // input truncated meanwhile), an abort (a failed allocation) and the
    // other terminating signals end the run by the signal, as the caller
    // expects (a shell loop stops on a Ctrl-C'd command); each removes the
    // temporary file first.
    let signals = [
        libc::SIGINT,
        libc::SIGTERM,
        libc::SIGBUS,
        libc::SIGABRT,
        libc::SIGUSR1,
        libc::SIGXFSZ,
        libc::SIGPROF,
        libc::SIGSYS,
    ];
    for signal in signals {
        let dir = tempfile::tempdir().unwrap();
        let mut child = convert_caught_writing(&model, &dir.path().join("x.gguf"), true);
        // SAFETY: kill has no memory preconditions; the pid is our child's.
        unsafe { libc::kill(child.id() as libc::pid_t, signal) };
        let status = child.wait().unwrap();
        if status.success() {
            // It finished first: nothing to check on this machine.
            eprintln!("skipped: the conversion finished before the signal");
            continue;
        }
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(signal), "{status:?}");
        assert!(
            listing(dir.path()).is_empty(),
            "{signal}: {:?}",
            listing(dir.path())
        );
    }
}

/// SIGKILL cannot be caught, so its run leaves its temporary file; the next
/// run writing the same output removes it, with a warning, once it is a
/// minute old and no process holds its lock. Files of a run still alive
/// (locked), too young, of another output (another name, or the same first
/// 128 bytes of one: another hash), of another program or of another user
/// stay.
#[cfg(unix)]
#[test]
fn a_killed_runs_temporary_file_is_removed_by_the_next_run() {
    let Some(model) = common::real_models().pop() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.gguf");
    let mut child = convert_caught_writing(&model, &out, false);
    // SAFETY: kill has no memory preconditions; the pid is our child's.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) };
    child.wait().unwrap();
    let killed = listing(dir.path());
    if killed.iter().any(|n| n == "x.gguf") {
        eprintln!("skipped: the conversion finished before the signal");
        return;
    }
    assert_eq!(killed.len(), 1, "{killed:?}");
    // `.x.gguf.` + six random characters + `.<hash>.gguf-loader.tmp`.
    let ours = &killed[0][".x.gguf.".len() + 6..];
    let an_hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    let aged = |name: &str| {
        let f = std::fs::File::options()
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.path().join(name))
            .unwrap();
        f.set_modified(an_hour_ago).unwrap();
        f
    };
    aged(&killed[0]);
    // Alive: locked by this process, as a running conversion locks its own.
    let alive_name = format!(".x.gguf.Alive1{ours}");
    let alive = aged(&alive_name);
    alive.lock().unwrap();
    // Too young to tell from a run between its file's creation and lock.
    let young = format!(".x.gguf.Young1{ours}");
    std::fs::write(dir.path().join(&young), b"").unwrap();
    // Another output's (by name, or by hash), and names this tool does not
    // make.
    let mut kept = vec![alive_name, young, "x.gguf".to_string()];
    for name in [
        format!(".y.gguf.Other1{ours}"),
        ".x.gguf.Other2.00000000.gguf-loader.tmp".to_string(),
        ".x.gguf.backup.tmp".to_string(),
        format!(".x.gguf.long123{ours}"),
        "x.gguf.Abcde1.tmp".to_string(),
    ] {
        aged(&name);
        kept.push(name);
    }
    // Another user's, where this test may make one (as root).
    let me = unsafe { libc::geteuid() };
    if me == 0 {
        let theirs = format!(".x.gguf.Their1{ours}");
        aged(&theirs);
        std::os::unix::fs::chown(dir.path().join(&theirs), Some(4321), None).unwrap();
        kept.push(theirs);
    }

    let r = conv(&model, &out, &["--tensors", "output_norm"]);
    r.ok();
    kept.sort();
    assert_eq!(listing(dir.path()), kept);
    let warned: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(warned.len(), 1, "{}", r.stderr);
    assert!(
        warned[0].contains(&format!(
            "warning: removed {}",
            dir.path().join(&killed[0]).display()
        )) && warned[0].ends_with("a temporary file left by an earlier run that was killed"),
        "{}",
        r.stderr
    );
    drop(alive);
}

#[test]
fn safetensors_keeps_tokenizer_arrays_of_real_models() {
    for model in common::real_models() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("x.safetensors");
        conv(&model, &out, &["--tensors", "output_norm"]).ok();
        let bytes = std::fs::read(&out).unwrap();
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        let meta = meta.metadata().clone().unwrap();
        let src = MmapGGUFLoader::new(&model).unwrap();
        assert!(meta.contains_key("tokenizer.ggml.tokens"));
        assert_metadata_kept(&src, &meta);
    }
}

/// `convert --dtype f16|bf16` to GGUF gives what llama.cpp's own
/// `llama-quantize --allow-requantize MODEL OUT F16|BF16` gives: the same
/// tensor types (1-D in F32), the same data (SHA-256) and the same
/// general.file_type. tests/golden/llama_cpp_requant.json is written by
/// scripts/llama_cpp_golden.sh, which also checks that llama.cpp runs our
/// files and continues a prompt as it does on its own.
#[test]
fn convert_matches_llama_quantize() {
    use sha2::{Digest, Sha256};
    let golden: serde_json::Value = serde_json::from_slice(
        &std::fs::read(common::repo_root().join("tests/golden/llama_cpp_requant.json")).unwrap(),
    )
    .unwrap();
    for model in common::real_models() {
        let name = model.file_name().unwrap().to_str().unwrap();
        let (_, entry) = golden["models"]
            .as_object()
            .unwrap()
            .iter()
            .find(|(_, m)| m["file"] == name)
            .unwrap_or_else(|| panic!("{name} is not in the golden file"));
        for dtype in ["f16", "bf16"] {
            let want = &entry[dtype];
            let dir = tempfile::tempdir().unwrap();
            let out = dir.path().join("x.gguf");
            conv(&model, &out, &["--dtype", dtype]).ok();
            let l = MmapGGUFLoader::new(&out).unwrap();
            assert_eq!(
                u64::from(l.metadata().get_u32("general.file_type").unwrap()),
                want["file_type"].as_u64().unwrap(),
                "{name} {dtype}: general.file_type"
            );
            let tensors = want["tensors"].as_array().unwrap();
            assert_eq!(l.tensor_count(), tensors.len(), "{name} {dtype}");
            for t in tensors {
                let tname = t[0].as_str().unwrap();
                let info = l
                    .tensor_info(tname)
                    .unwrap_or_else(|| panic!("{name} {dtype}: {tname} missing"));
                assert_eq!(
                    info.ty.name(),
                    t[1].as_str().unwrap(),
                    "{name} {dtype}: {tname}"
                );
                let sha = Sha256::digest(l.get_tensor_data(tname).unwrap());
                let hex: String = sha.iter().map(|b| format!("{b:02x}")).collect();
                assert_eq!(hex, t[2].as_str().unwrap(), "{name} {dtype}: {tname} data");
            }
        }
    }
}

#[test]
fn metadata_too_large_for_safetensors_is_an_error_in_bounded_memory() {
    // A u8 array of 10 M items ("0,0,…": 20 MB of JSON text) and a string of
    // 14 M NUL bytes (each "\u0000" in JSON: 84 MB): more than the 100 MB a
    // safetensors header may hold. Written by hand, the data streamed.
    use std::io::{Read, Write};
    let (n, m): (u64, u64) = (10_000_000, 14_000_000);
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("big.gguf");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&input).unwrap());
    let mut put = |b: &[u8]| f.write_all(b).unwrap();
    let s = |put: &mut dyn FnMut(&[u8]), text: &str| {
        put(&(text.len() as u64).to_le_bytes());
        put(text.as_bytes());
    };
    put(b"GGUF");
    put(&3u32.to_le_bytes());
    put(&1u64.to_le_bytes()); // tensors
    put(&2u64.to_le_bytes()); // keys
    s(&mut put, "test.array");
    put(&9u32.to_le_bytes()); // array
    put(&0u32.to_le_bytes()); // of u8
    put(&n.to_le_bytes());
    let zeros = |put: &mut dyn FnMut(&[u8]), k: u64| {
        let mut left = k;
        let mut buf = vec![0u8; 1 << 20];
        while left > 0 {
            let c = left.min(buf.len() as u64) as usize;
            std::io::repeat(0).read_exact(&mut buf[..c]).unwrap();
            put(&buf[..c]);
            left -= c as u64;
        }
    };
    zeros(&mut put, n);
    s(&mut put, "test.nuls");
    put(&8u32.to_le_bytes()); // string
    put(&m.to_le_bytes());
    zeros(&mut put, m);
    s(&mut put, "t");
    put(&1u32.to_le_bytes()); // dims
    put(&8u64.to_le_bytes());
    put(&GgmlType::F32.id().to_le_bytes());
    put(&0u64.to_le_bytes()); // offset
    let len = f.get_ref().metadata().unwrap().len() + f.buffer().len() as u64;
    f.write_all(&vec![0u8; (len.next_multiple_of(32) - len) as usize + 32])
        .unwrap();
    drop(f);

    let out = dir.path().join("x.safetensors");
    let r = conv(&input, &out, &[]);
    let err = r.err();
    assert!(
        err.contains("safetensors header of over 10") && err.contains(".gguf instead"),
        "{err}"
    );
    // The text stops at the limit: never more than about 100 MB of it.
    assert!(r.max_rss < 400 << 20, "peak RSS {} MiB", r.max_rss >> 20);
    assert_eq!(listing(dir.path()), ["big.gguf"]);
    // The GGUF output keeps both, written from the input's bytes: no owned
    // copy of 10 M items (32 bytes each as a MetaValue).
    let r = conv(&input, &dir.path().join("x.gguf"), &[]);
    r.ok();
    assert!(r.max_rss < 200 << 20, "peak RSS {} MiB", r.max_rss >> 20);
}

/// `convert` with `GGUF_LOADER_SIMD` set to `cap` (`None`: unset): the file
/// written, and what was said on standard error.
fn conv_capped(input: &Path, output: &Path, dtype: &str, cap: Option<&str>) -> (Vec<u8>, String) {
    let mut cmd = cli();
    cmd.arg("convert")
        .arg(input)
        .arg("-o")
        .arg(output)
        .args(["--dtype", dtype, "--force"])
        .env_remove(gguf_loader::SIMD_ENV);
    if let Some(cap) = cap {
        cmd.env(gguf_loader::SIMD_ENV, cap);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cap:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        std::fs::read(output).unwrap(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The first line `bench` prints (its header) with `GGUF_LOADER_SIMD=cap`.
fn bench_header(input: &Path, cap: &str) -> String {
    use std::io::BufRead;
    let mut child = cli()
        .arg("bench")
        .arg(input)
        .env(gguf_loader::SIMD_ENV, cap)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    line
}

/// Every SIMD cap (`scalar`: the references alone; `avx2`: no AVX-512; the
/// widest the CPU has) writes the same file: every type of the fixture to
/// f16, bf16 and f32, synthesized i-quant models (their AVX-512 kernels
/// where the CPU has them), and the real models to f16. `bench` names the
/// SIMD in use.
#[test]
fn every_simd_cap_writes_the_same_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut inputs = vec![(fixture(), vec!["f16", "bf16", "f32"])];
    for ty in ["iq2_xs", "iq3_s", "iq1_m"] {
        let m = dir.path().join(format!("{ty}.gguf"));
        let out = cli()
            .args(["synth", "--preset", "tiny-test", "--type", ty, "-o"])
            .arg(&m)
            .output()
            .unwrap();
        assert!(out.status.success(), "synth {ty}");
        inputs.push((m, vec!["f16", "f32"]));
    }
    for model in common::real_models() {
        inputs.push((model, vec!["f16"]));
    }
    let out = dir.path().join("out.gguf");
    for (input, dtypes) in &inputs {
        for dtype in dtypes {
            let (widest, _) = conv_capped(input, &out, dtype, None);
            for cap in ["scalar", "avx2", "AVX2", "widest"] {
                let (file, said) = conv_capped(input, &out, dtype, Some(cap));
                assert!(
                    file == widest,
                    "{}: {dtype} with {cap} differs from the widest SIMD",
                    input.display()
                );
                assert!(!said.contains("GGUF_LOADER_SIMD"), "{cap}: {said}");
            }
        }
    }
    // A value the decoders do not know: one line of warning, the widest.
    let (file, said) = conv_capped(&fixture(), &out, "f32", Some("avx9000"));
    assert_eq!(file, conv_capped(&fixture(), &out, "f32", None).0);
    assert!(
        said.contains("warning: GGUF_LOADER_SIMD=avx9000 is not one of"),
        "{said}"
    );
    let header = bench_header(&fixture(), "scalar");
    assert!(header.contains("SIMD: scalar"), "{header}");
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("f16c") {
        let widest = bench_header(&fixture(), "");
        assert!(widest.contains("SIMD: AVX"), "{widest}");
        let avx2 = bench_header(&fixture(), "avx2");
        assert!(avx2.contains("SIMD: AVX2)"), "{avx2}");
    }
}

/// Integer and f64 tensors become floats that may not hold their values:
/// said on standard error, once per type, naming a tensor; I8 in f32 (or
/// any float) and I16 in f32 are exact, and not warned of.
#[test]
fn inexact_integer_tensors_are_warned_of() {
    let dir = tempfile::tempdir().unwrap();
    let r = conv(&fixture(), &dir.path().join("x.gguf"), &["--dtype", "f32"]);
    r.ok();
    let warned: Vec<&str> = r.stderr.lines().filter(|l| l.contains("warning")).collect();
    assert_eq!(warned.len(), 3, "{}", r.stderr);
    for (ty, name) in [
        ("I32", "tensor.i32"),
        ("I64", "tensor.i64"),
        ("F64", "tensor.f64"),
    ] {
        assert!(
            warned
                .iter()
                .any(|l| l.contains(&format!("1 {ty} tensor ('{name}') becomes f32"))),
            "{}",
            r.stderr
        );
    }
    assert!(
        !r.stderr.contains("I8") && !r.stderr.contains("I16"),
        "{}",
        r.stderr
    );
    // f16 holds I16 inexactly, and overflows.
    let r = conv(
        &fixture(),
        &dir.path().join("y.safetensors"),
        &["--dtype", "f16"],
    );
    r.ok();
    assert!(
        r.stderr.contains("1 I16 tensor ('tensor.i16') becomes f16")
            && r.stderr.contains("beyond its range infinite"),
        "{}",
        r.stderr
    );
}

/// Values beyond f16's range become infinite in an f16 output: said once
/// the file is written, naming the tensors; bf16 keeps their range. NaN
/// and infinite values in the file are said apart, for every output.
#[test]
fn infinities_made_by_f16_are_warned_of() {
    use gguf_loader::{GgufWriter, MetaValue};
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("big.gguf");
    let mut w = GgufWriter::new();
    w.add("general.architecture", MetaValue::String("llama".into()));
    let bytes = |v: &[f32]| v.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>();
    w.add_tensor(
        "big",
        &[2, 2],
        GgmlType::F32,
        bytes(&[1e38, 7e4, 1.0, -2.0]),
    )
    .unwrap();
    // Infinite and NaN in the file: whatever the output, no --dtype helps.
    let odd = bytes(&[f32::INFINITY, 7e4, f32::NAN, 1.0]);
    w.add_tensor("odd", &[2, 2], GgmlType::F32, odd).unwrap();
    std::fs::write(&input, w.to_bytes().unwrap()).unwrap();
    let r = conv(
        &input,
        &dir.path().join("x.safetensors"),
        &["--dtype", "f16"],
    );
    r.ok();
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(
        lines,
        [
            "gguf-loader: warning: tensors hold values beyond f16's range (±65504), infinite \
             in f16: 'big' (2), 'odd' (1); --dtype bf16 or f32 keeps their range",
            "gguf-loader: warning: 1 tensor holds NaN or infinite values as the file gives \
             them: 'odd' (2); `gguf-loader verify` says where",
        ],
        "{}",
        r.stderr
    );
    for dtype in ["bf16", "f32"] {
        let r = conv(
            &input,
            &dir.path().join(format!("{dtype}.safetensors")),
            &["--dtype", dtype],
        );
        r.ok();
        assert!(
            !r.stderr.contains("f16's range") && r.stderr.contains("'odd' (2)"),
            "{}",
            r.stderr
        );
    }
}

/// The summary line counts the tensors written as asked apart from those
/// kept as f32, and escapes the output's name as the errors do; a name
/// near the file system's limit (255 bytes) converts (the temporary file's
/// name, 12 bytes longer, was refused).
#[test]
fn the_summary_counts_and_names_as_it_should() {
    let dir = tempfile::tempdir().unwrap();
    let model = support::tiny_model(dir.path());
    let out = dir.path().join("x.gguf");
    let summary = |args: &[&str]| {
        let r = conv(&model, &out, &[&["--force"], args].concat());
        r.ok().to_string()
    };
    let s = summary(&[]);
    assert!(
        s.contains(": 16 tensors as f16, 5 kept as f32 (1-D or norm), "),
        "{s}"
    );
    let s = summary(&["--tensors", "norm"]);
    assert!(s.contains(": 5 tensors kept as f32 (1-D or norm), "), "{s}");
    let s = summary(&["--dtype", "f32"]);
    assert!(s.contains(": 21 tensors as f32, "), "{s}");

    let long = dir.path().join(format!("{}.gguf", "a".repeat(250)));
    assert!(conv(&model, &long, &[]).ok().starts_with("wrote "));
    assert!(long.exists());

    // (Windows takes no control character in a file name.)
    if cfg!(unix) {
        let odd = dir.path().join("e\u{1b}[31mx.safetensors");
        let s = conv(&model, &odd, &[]).ok().to_string();
        assert!(s.contains("e\\u{1b}[31mx.safetensors: "), "{s}");
        assert!(!s.contains('\u{1b}'), "{s}");
    }
}
