//! Read mode (`LoadMode::Read`: the header read into memory, tensor data by
//! positioned reads) gives what the mapped load gives: the same header, the
//! same decoded bytes, the same error for a malformed file, whatever the
//! size of the header (real tokenizers take megabytes, more than the first
//! read).

mod common;

use std::path::Path;

use gguf_loader::{
    check_model_report, f16, Device, Element, Error, FormatError, FormatErrorKind, GgmlType,
    GgufFile, GgufWriter, LazyModel, LoadMode, LoadOptions, MetaValue, MmapGGUFLoader, Prefetch,
    ValueType,
};

fn open(path: &Path, mode: LoadMode) -> Result<MmapGGUFLoader, Error> {
    MmapGGUFLoader::open(path, mode)
}

/// Asserts that the two loaders hold the same header: version, byte order,
/// metadata and tensor infos.
fn assert_same_header(a: &MmapGGUFLoader, b: &MmapGGUFLoader, what: &str) {
    let (fa, fb) = (a.file(), b.file());
    assert_eq!(
        (fa.version, fa.endianness, fa.alignment, fa.data_offset),
        (fb.version, fb.endianness, fb.alignment, fb.data_offset),
        "{what}"
    );
    let meta = |l: &MmapGGUFLoader| -> Vec<String> {
        l.metadata()
            .iter()
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect()
    };
    assert_eq!(meta(a), meta(b), "{what}: metadata");
    assert!(a.tensors().eq(b.tensors()), "{what}: tensors");
}

/// Every tensor decoded to `T` through `l`, as little-endian bytes.
fn decoded<T: Element>(l: &MmapGGUFLoader) -> Vec<(String, Result<Vec<u8>, String>)> {
    l.tensor_names()
        .into_iter()
        .map(|n| {
            let t = l.load_tensor::<T>(n, Device::Cpu);
            let bytes = t
                .map(|t| T::to_le_bytes_vec(t.data()))
                .map_err(|e| e.to_string());
            (n.to_string(), bytes)
        })
        .collect()
}

/// Mapped and read: the same header, raw tensor bytes and decoded values
/// (tensor by tensor and as a whole model), and the same data check.
fn assert_modes_agree(path: &Path) {
    let what = path.display().to_string();
    let mapped = open(path, LoadMode::Mmap).unwrap();
    let read = open(path, LoadMode::Read).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_same_header(&mapped, &read, &what);
    for t in mapped.tensors() {
        let raw = read.read_tensor_data(t.name).unwrap();
        assert!(
            raw[..] == mapped.get_tensor_data(t.name).unwrap()[..],
            "{what}: {} raw bytes",
            t.name
        );
    }
    assert_eq!(
        decoded::<f32>(&mapped),
        decoded::<f32>(&read),
        "{what}: f32"
    );
    let whole = |l: &MmapGGUFLoader| {
        l.load_f16_model(Device::Cpu).map(|m| {
            m.tensors()
                .map(|(n, t)| (n.to_string(), f16::to_le_bytes_vec(t.data())))
                .collect::<Vec<_>>()
        })
    };
    match (whole(&mapped), whole(&read)) {
        (Ok(a), Ok(b)) => assert!(a == b, "{what}: whole model"),
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{what}"),
        (a, b) => panic!("{what}: mapped {:?}, read {:?}", a.is_ok(), b.is_ok()),
    }
    assert_eq!(
        check_model_report(&mapped, 10),
        check_model_report(&read, 10),
        "{what}: data check"
    );
}

#[test]
fn every_fixture_reads_as_it_maps() {
    let dir = common::repo_root().join("tests/fixtures");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "gguf") {
            assert_modes_agree(&path);
            n += 1;
        }
    }
    assert!(n >= 4);
}

/// The failure: the header of both real models is larger than the
/// first read (`tokenizer.ggml.merges` and `tokenizer.ggml.tokens` end past
/// its first mebibyte).
#[test]
fn real_models_read_as_they_map() {
    for path in common::real_models() {
        let len = std::fs::metadata(&path).unwrap().len();
        let header = open(&path, LoadMode::Mmap).unwrap().file().header_len();
        assert!(header > 1 << 20, "{}: header {header}", path.display());
        assert!(header < len);
        assert_modes_agree(&path);
        // The lazy model reads too, layer by layer.
        let lazy = LazyModel::<f16>::open_with(&path, LoadMode::Read, LoadOptions::default());
        let first = lazy.unwrap().layers(Prefetch::NextLayer).next().unwrap();
        assert!(!first.unwrap().tensors().is_empty());
    }
}

/// A model whose header holds `strings` vocabulary strings (about 12 bytes
/// each) before its tensor infos, so that it is larger than the first read.
fn big_header_model(strings: usize) -> GgufWriter<'static> {
    let mut w = GgufWriter::new();
    w.add("general.architecture", MetaValue::String("llama".into()));
    let tokens = (0..strings)
        .map(|i| MetaValue::String(format!("token-{i:06}")))
        .collect();
    w.add(
        "tokenizer.ggml.tokens",
        MetaValue::Array(ValueType::String, tokens),
    );
    w.add("after", MetaValue::U32(7));
    let values: Vec<u8> = (0..64u32)
        .flat_map(|i| (i as f32 - 20.5).to_le_bytes())
        .collect();
    w.add_tensor("blk.0.w", &[32, 2], GgmlType::F32, values)
        .unwrap();
    w.add_tensor("output.weight", &[32], GgmlType::Q8_0, vec![3u8; 34])
        .unwrap();
    w
}

#[test]
fn headers_larger_than_the_first_read_are_read_whole() {
    let dir = tempfile::tempdir().unwrap();
    // Two sizes: just past the first mebibyte, and past four (more than one
    // round of growth).
    for strings in [100_000, 450_000] {
        let path = dir.path().join(format!("big-{strings}.gguf"));
        std::fs::write(&path, big_header_model(strings).to_bytes().unwrap()).unwrap();
        let read = open(&path, LoadMode::Read).unwrap();
        assert!(read.file().header_len() > 1 << 20);
        assert_eq!(read.metadata().get_u32("after").unwrap(), 7);
        assert_eq!(
            read.metadata()
                .get_array("tokenizer.ggml.tokens")
                .unwrap()
                .len(),
            strings as u64
        );
        // The buffer is cut to the header: nothing of the data section.
        assert_eq!(read.file().bytes().len() as u64, read.file().header_len());
        assert_modes_agree(&path);
    }
}

/// Malformed headers past the first read fail alike in both modes: the
/// read grows only for bytes the file has, and a count is measured against
/// the file.
#[test]
fn malformed_big_headers_fail_alike() {
    let dir = tempfile::tempdir().unwrap();
    let good = big_header_model(150_000).to_bytes().unwrap();
    let f = GgufFile::parse(&good).unwrap();
    let at = f
        .metadata
        .iter()
        .position(|(k, _)| k == "after")
        .expect("key");
    assert_eq!(at, 2);
    // Offset of the key "after": its length field follows the token array.
    let key = good
        .windows(5)
        .rposition(|w| w == b"after")
        .expect("key bytes")
        - 8;
    assert!(key > 1 << 20);

    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    // An unknown value type right after the big array.
    let mut b = good.clone();
    b[key + 8 + 5..key + 8 + 5 + 4].copy_from_slice(&99u32.to_le_bytes());
    cases.push(("unknown value type", b));
    // A key length past the end of the file.
    let mut b = good.clone();
    b[key..key + 8].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
    cases.push(("key past the end", b));
    // The file cut inside the big array.
    cases.push(("truncated", good[..(1 << 20) + 12_345].to_vec()));
    // A tensor count that cannot fit the file: the same CountTooLarge.
    let mut b = good.clone();
    b[8..16].copy_from_slice(&(1u64 << 40).to_le_bytes());
    cases.push(("tensor count", b));

    for (what, bytes) in cases {
        let path = dir.path().join("bad.gguf");
        std::fs::write(&path, &bytes).unwrap();
        let want = GgufFile::parse(&bytes).expect_err(what);
        for mode in [LoadMode::Mmap, LoadMode::Read] {
            match open(&path, mode) {
                Err(Error::Format { error, .. }) => assert_eq!(*error, want, "{what} {mode:?}"),
                Err(e) => panic!("{what} {mode:?}: {e}"),
                Ok(_) => panic!("{what} {mode:?}: accepted"),
            }
        }
    }
}

/// The contract `read mode` relies on: a parse of any prefix of a file,
/// told the file's length, either gives the whole-file result or fails
/// with `Truncated` asking for bytes that the file has.
#[test]
fn every_prefix_parses_whole_or_asks_for_more() {
    let mut files = Vec::new();
    for dir in ["tests/fixtures", "tests/corpus"] {
        for entry in std::fs::read_dir(common::repo_root().join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "gguf") {
                files.push((path.display().to_string(), std::fs::read(&path).unwrap()));
            }
        }
    }
    files.push(("big".into(), big_header_model(2_000).to_bytes().unwrap()));
    for (name, bytes) in files {
        let len = bytes.len() as u64;
        let whole = GgufFile::parse(&bytes).map(|f| f.header_len());
        let step = (bytes.len() / 3000).max(1);
        for n in (0..=bytes.len()).step_by(step) {
            match GgufFile::parse_header(&bytes[..n], len) {
                Ok(f) => {
                    let header_len = whole.as_ref().expect("a prefix parses only if all does");
                    assert_eq!(f.header_len(), *header_len, "{name}: {n}");
                    assert!(n as u64 >= *header_len, "{name}: {n}");
                }
                Err(FormatError {
                    offset,
                    kind: FormatErrorKind::Truncated { needed, .. },
                    ..
                }) if offset + needed <= len => {
                    assert!(
                        offset + needed > n as u64,
                        "{name}: {n}: asks for what it has"
                    );
                }
                Err(e) => assert_eq!(Err(e), whole.clone().map(|_| ()), "{name}: prefix {n}"),
            }
        }
    }
}

/// `check_model_report` in read mode reads the data: a NaN is found as it
/// is through the mapping (it found nothing before: there is no mapping).
#[test]
fn the_data_check_reads_in_read_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nan.gguf");
    let mut values = vec![1.0f32; 64];
    values[37] = f32::NAN;
    let mut w = GgufWriter::new();
    w.add_tensor(
        "w",
        &[64],
        GgmlType::F32,
        values
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<u8>>(),
    )
    .unwrap();
    std::fs::write(&path, w.to_bytes().unwrap()).unwrap();
    let read = open(&path, LoadMode::Read).unwrap();
    let report = check_model_report(&read, 10);
    assert_eq!(report.problem_count, 1);
    assert_eq!(report.problems[0].block, 37);
    // A file that shrank: the tensor is listed as unreadable, and the
    // options form returns the I/O error.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(100)
        .unwrap();
    let report = check_model_report(&read, 10);
    assert_eq!(report.skipped.len(), 1, "{report:?}");
    assert_eq!(report.tensors_checked, 0);
    let e = gguf_loader::check_model_report_with(&read, 10, LoadOptions::default().threads(1))
        .unwrap_err();
    assert!(matches!(e, Error::TensorIo { .. }), "{e}");
}
