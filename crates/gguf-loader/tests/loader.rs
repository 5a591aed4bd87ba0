//! The mmap loader: zero-copy access, versions, byte orders and split models.

mod common;

use std::path::Path;

use gguf_loader::{Endianness, GgmlType, GgufFile, GgufWriter, MetaValue, ValueType};
use gguf_loader::{Error, MmapGGUFLoader};

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn write(path: &Path, w: &GgufWriter<'_>) {
    std::fs::write(path, w.to_bytes().unwrap()).unwrap();
}

#[test]
fn get_tensor_data_is_zero_copy_and_stable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    let mut w = GgufWriter::new();
    w.add("general.architecture", MetaValue::String("llama".into()));
    w.add_tensor(
        "w",
        &[4, 2],
        GgmlType::F32,
        f32_bytes(&[1., 2., 3., 4., 5., 6., 7., 8.]),
    )
    .unwrap();
    write(&path, &w);

    let loader = MmapGGUFLoader::new(&path).unwrap();
    let a = loader.get_tensor_data("w").unwrap();
    let b = loader.get_tensor_data("w").unwrap();
    assert_eq!(a.as_ptr(), b.as_ptr(), "same pointer on every call");
    assert_eq!(a, &f32_bytes(&[1., 2., 3., 4., 5., 6., 7., 8.])[..]);
    let info = loader.tensor_info("w").unwrap();
    assert_eq!(info.ne(), &[4, 2]);
    assert_eq!(info.shape(), vec![2, 4]);
    assert_eq!(loader.tensor_names(), vec!["w"]);
    assert_eq!(loader.version(), 3);
    assert_eq!(
        loader.metadata().get_str("general.architecture").unwrap(),
        "llama"
    );
    assert!(matches!(
        loader.get_tensor_data("nope"),
        Err(Error::TensorNotFound(n)) if n == "nope"
    ));
    // The data lies inside the mapping: its address is the map's plus the offset.
    let base = loader.file().bytes().as_ptr() as usize;
    assert_eq!(a.as_ptr() as usize - base, info.file_offset as usize);
}

#[test]
fn errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.gguf");
    std::fs::write(&path, b"GGUF\x09\0\0\0").unwrap();
    let e = MmapGGUFLoader::new(&path).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("bad.gguf") && msg.contains("version 9"),
        "{msg}"
    );

    let e = MmapGGUFLoader::new(dir.path().join("missing.gguf")).unwrap_err();
    assert!(matches!(e, Error::Io { .. }), "{e}");

    let empty = dir.path().join("empty.gguf");
    std::fs::write(&empty, b"").unwrap();
    assert!(matches!(
        MmapGGUFLoader::new(&empty).unwrap_err(),
        Error::Format { .. }
    ));
}

fn every_type_metadata(w: &mut GgufWriter<'_>) {
    use MetaValue::*;
    w.add("u8", U8(255))
        .add("i8", I8(-128))
        .add("u16", U16(65535))
        .add("i16", I16(-32768))
        .add("u32", U32(u32::MAX))
        .add("i32", I32(i32::MIN))
        .add("f32", F32(-1.5))
        .add("bool", Bool(true))
        .add("string", String("héllo".into()))
        .add("u64", U64(u64::MAX))
        .add("i64", I64(i64::MIN))
        .add("f64", F64(std::f64::consts::PI))
        .add("arr", Array(ValueType::I16, vec![I16(1), I16(-2), I16(3)]))
        .add(
            "nested",
            Array(
                ValueType::Array,
                vec![
                    Array(ValueType::String, vec![String("x".into())]),
                    Array(ValueType::String, vec![]),
                ],
            ),
        );
}

#[test]
fn v1_v2_and_big_endian_files_read_back() {
    for (version, endian) in [
        (1, Endianness::Little),
        (2, Endianness::Little),
        (3, Endianness::Big),
        (1, Endianness::Big),
    ] {
        let mut w = GgufWriter::new().version(version).endianness(endian);
        every_type_metadata(&mut w);
        let floats = [0.5f32, -1.0, f32::MIN_POSITIVE, f32::NAN];
        let ints = [0i32, -1, i32::MIN, i32::MAX, 0x0102_0304];
        w.add(
            "f32s",
            MetaValue::Array(ValueType::F32, floats.map(MetaValue::F32).to_vec()),
        )
        .add(
            "i32s",
            MetaValue::Array(ValueType::I32, ints.map(MetaValue::I32).to_vec()),
        );
        w.add_tensor("t", &[32, 2], GgmlType::Q8_0, vec![7u8; 68])
            .unwrap();
        let bytes = w.to_bytes().unwrap();
        let f = GgufFile::parse(&bytes).unwrap();
        assert_eq!((f.version, f.endianness), (version, endian));
        // Numeric arrays copied out in one pass over their bytes.
        let got = f.metadata.get_f32_array("f32s").unwrap();
        assert_eq!(
            got.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            floats.map(f32::to_bits)
        );
        assert_eq!(f.metadata.get_i32_array("i32s").unwrap(), ints);
        assert_eq!(f.metadata.get_u32("u32").unwrap(), u32::MAX);
        assert_eq!(f.metadata.get_i64("i64").unwrap(), i64::MIN);
        assert_eq!(f.metadata.get_f32("f32").unwrap(), -1.5);
        assert_eq!(f.metadata.get_str("string").unwrap(), "héllo");
        let arr: Vec<_> = f.metadata.get_array("arr").unwrap().iter().collect();
        assert_eq!(arr.len(), 3);
        assert_eq!(arr[1].as_i64(), Some(-2));
        let nested = f.metadata.get_array("nested").unwrap();
        let inner: Vec<_> = nested.iter().map(|v| v.as_array().unwrap().len()).collect();
        assert_eq!(inner, vec![1, 0]);
        let t = f.tensor("t").unwrap();
        assert_eq!(
            (t.ty, t.ne(), t.n_bytes),
            (GgmlType::Q8_0, &[32u64, 2][..], 68)
        );
        assert_eq!(f.tensor_data(t), Some(&[7u8; 68][..]));
    }
}

/// `GgufFile::tensor_data` gives the bytes of its own tensors only: the
/// description of another file's tensor (another shard's: the same name at
/// another offset) read this file's bytes at that offset.
#[test]
fn tensor_data_of_another_files_tensor_is_none() {
    let file = |pad: usize| {
        let mut w = GgufWriter::new();
        if pad > 0 {
            w.add_tensor("pad", &[pad as u64], GgmlType::F32, vec![1u8; 4 * pad])
                .unwrap();
        }
        w.add_tensor("t", &[4], GgmlType::F32, vec![pad as u8; 16])
            .unwrap();
        w.to_bytes().unwrap()
    };
    let (a, b) = (file(0), file(64));
    let (fa, fb) = (GgufFile::parse(&a).unwrap(), GgufFile::parse(&b).unwrap());
    let (ta, tb) = (fa.tensor("t").unwrap(), fb.tensor("t").unwrap());
    assert_eq!(fa.tensor_data(ta), Some(&[0u8; 16][..]));
    assert_eq!(fb.tensor_data(tb), Some(&[64u8; 16][..]));
    assert_eq!(fa.tensor_data(tb), None);
    assert_eq!(fb.tensor_data(ta), None);
    // A copy of its own description is its own.
    assert_eq!(fb.tensor_data(&tb.clone()), Some(&[64u8; 16][..]));
    // Nothing of the data after a header-only parse.
    let header = &b[..fb.data_offset as usize];
    let h = GgufFile::parse_header(header, b.len() as u64).unwrap();
    assert_eq!(h.tensor_data(h.tensor("t").unwrap()), None);
    // Nor where the bytes parsed hold some of the data (read mode reads
    // the first MiB): the first tensor's are there, not the file's.
    let some = &b[..b.len() - 16];
    let h = GgufFile::parse_header(some, b.len() as u64).unwrap();
    assert_eq!(h.tensor_data(h.tensor("pad").unwrap()), None);
}

#[test]
fn typed_getters_report_missing_keys_and_wrong_types() {
    let mut w = GgufWriter::new();
    every_type_metadata(&mut w);
    let bytes = w.to_bytes().unwrap();
    let f = GgufFile::parse(&bytes).unwrap();
    let m = &f.metadata;
    assert_eq!(
        m.get_u32("nope").unwrap_err().to_string(),
        "metadata key 'nope' is missing"
    );
    assert_eq!(
        m.get_u32("string").unwrap_err().to_string(),
        "metadata key 'string' is string, expected uint32"
    );
    assert_eq!(m.get_uint("u8").unwrap(), 255);
    assert!(m.get_uint("i8").is_err());
    assert_eq!(m.get_float("f32").unwrap(), -1.5);
    // Any integer, a u64 beyond i64::MAX too.
    assert_eq!(m.get_float("u64").unwrap(), u64::MAX as f64);
    assert_eq!(m.get_float("i64").unwrap(), i64::MIN as f64);
    let strings: Vec<String> = m
        .get_array("nested")
        .unwrap()
        .iter()
        .flat_map(|v| {
            v.as_array()
                .unwrap()
                .strings()
                .map(|s| s.to_str().unwrap().to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(strings, vec!["x"]);
}

fn shard(no: u16, count: u16, tensors: &[&str], total: i32) -> GgufWriter<'static> {
    let mut w = GgufWriter::new();
    w.add("split.no", MetaValue::U16(no))
        .add("split.count", MetaValue::U16(count))
        .add("split.tensors.count", MetaValue::I32(total));
    if no == 0 {
        w.add("general.architecture", MetaValue::String("llama".into()));
    }
    for name in tensors {
        w.add_tensor(*name, &[4], GgmlType::F32, vec![no as u8; 16])
            .unwrap();
    }
    w
}

#[test]
fn split_models_open_as_one() {
    let dir = tempfile::tempdir().unwrap();
    let p = |i: u16| dir.path().join(format!("model-{i:05}-of-00003.gguf"));
    write(&p(1), &shard(0, 3, &["a", "b"], 5));
    write(&p(2), &shard(1, 3, &["c"], 5));
    write(&p(3), &shard(2, 3, &["d", "e"], 5));

    for opened in 1..=3 {
        let l = MmapGGUFLoader::new(p(opened)).unwrap();
        assert_eq!(l.tensor_names(), vec!["a", "b", "c", "d", "e"]);
        assert_eq!(l.get_tensor_data("d").unwrap(), &[2u8; 16][..]);
        assert_eq!(l.tensor_path("c").unwrap(), p(2));
        assert_eq!(
            l.metadata().get_str("general.architecture").unwrap(),
            "llama"
        );
        assert_eq!(l.paths().count(), 3);
        // F32 tensors load as f32 views, each of its own shard's mapping.
        let m = l.load_model::<f32>(gguf_loader::Device::Cpu).unwrap();
        for (n, t) in m.tensors() {
            assert!(t.is_mapped(), "{n}");
            assert_eq!(t.as_bytes(), l.get_tensor_data(n).unwrap(), "{n}");
        }
    }

    std::fs::remove_file(p(2)).unwrap();
    let e = MmapGGUFLoader::new(p(1)).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("model-00002-of-00003.gguf") && msg.contains("missing"),
        "{msg}"
    );

    // A tensor in two shards, and a wrong tensor total.
    write(&p(2), &shard(1, 3, &["a"], 5));
    assert!(MmapGGUFLoader::new(p(1))
        .unwrap_err()
        .to_string()
        .contains("more than one shard"));
    // Values are said as numbers (not `Some(2)`, `U32(5)`).
    let said = |what: &str| {
        let msg = MmapGGUFLoader::new(p(1)).unwrap_err().to_string();
        assert!(msg.contains(what), "{what}: {msg}");
    };
    write(&p(2), &shard(1, 3, &["c", "x"], 5));
    said("split.tensors.count is 5 but the shards hold 6 tensors");
    // A shard that claims the wrong number.
    write(&p(2), &shard(2, 3, &["c"], 5));
    said("split.no is 2, expected 1");

    // A name whose -of- count is not the file's split.count: the other
    // shards' names would be another model's.
    write(&p(2), &shard(1, 3, &["c"], 5));
    let two = dir.path().join("model-00001-of-00002.gguf");
    std::fs::copy(p(1), &two).unwrap();
    let msg = MmapGGUFLoader::new(&two).unwrap_err().to_string();
    assert!(
        msg.contains("split.count is 3 but the name says -of-00002"),
        "{msg}"
    );

    // A negative total is said as the number it is.
    write(&p(1), &shard(0, 3, &["a", "b"], -1));
    said("split.tensors.count is -1 but the shards hold 5 tensors");
    write(&p(1), &shard(0, 3, &["a", "b"], 5));

    // A count of 0 or 1 in a shard named -of-00003 (or with a total the
    // file does not hold) once opened as a whole model of its own tensors.
    for count in [0, 1] {
        let w = shard(0, count, &["a", "b"], 5);
        write(&p(1), &w);
        said(&format!(
            "split.count is {count} but the name says -of-00003"
        ));
        let alone = dir.path().join(format!("alone{count}.gguf"));
        write(&alone, &w);
        let msg = MmapGGUFLoader::new(&alone).unwrap_err().to_string();
        assert!(
            msg.contains("split.tensors.count is 5 but the file holds 2 tensors"),
            "{msg}"
        );
        // Its own total: one file, as llama.cpp opens it.
        write(&alone, &shard(0, count, &["a", "b"], 2));
        assert_eq!(
            MmapGGUFLoader::new(&alone).unwrap().tensor_names(),
            ["a", "b"]
        );
    }
}

/// Shards whose common prefix is not UTF-8 open as any others (a single
/// file of such a name always did).
#[cfg(unix)]
#[test]
fn split_models_whose_names_are_not_utf8_open_as_one() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let p = |i: u16| {
        let mut name = b"m\xff-".to_vec();
        name.extend_from_slice(format!("{i:05}-of-00002.gguf").as_bytes());
        dir.path().join(std::ffi::OsStr::from_bytes(&name))
    };
    write(&p(1), &shard(0, 2, &["a"], 2));
    write(&p(2), &shard(1, 2, &["b"], 2));
    let l = MmapGGUFLoader::new(p(2)).unwrap();
    assert_eq!(l.tensor_names(), ["a", "b"]);
    assert_eq!(l.tensor_path("a").unwrap(), p(1));
}

#[test]
fn big_endian_fixture_decodes_like_little_endian() {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
    let le = MmapGGUFLoader::new(dir.join("all_types_le.gguf")).unwrap();
    let be = MmapGGUFLoader::new(dir.join("all_types_be.gguf")).unwrap();
    let mut decoded = Vec::new();
    for t in le.tensors() {
        let a = le
            .load_tensor::<f32>(t.name, gguf_loader::Device::Cpu)
            .unwrap();
        match be.load_tensor::<f32>(t.name, gguf_loader::Device::Cpu) {
            Ok(b) => {
                let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(a.data()), bits(b.data()), "{}", t.name);
                decoded.push(t.ty);
            }
            Err(Error::BigEndianData { ty, .. }) => {
                assert!(!ty.has_big_endian_order(), "{ty}");
                assert_eq!(ty, GgmlType::Q4_1);
            }
            Err(e) => panic!("{}: {e}", t.name),
        }
    }
    assert_eq!(decoded.len(), le.tensor_count() - 1);
    for ty in [
        GgmlType::Q4_0,
        GgmlType::Q8_0,
        GgmlType::Q4_K,
        GgmlType::Q6_K,
    ] {
        assert!(decoded.contains(&ty), "{ty}");
    }
}

/// Data of the types whose blocks hold only bytes (I8, MXFP4, NVFP4) is
/// the same in either byte order: a big-endian file's decodes as the same
/// bytes in a little-endian file, in both load modes, eagerly and one
/// tensor at a time.
#[test]
fn big_endian_byte_types_decode_like_little_endian() {
    use gguf_loader::{Device, LoadMode};
    let dir = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for e in [Endianness::Little, Endianness::Big] {
        let mut w = GgufWriter::new().endianness(e);
        let mut rng = common::Lcg(0x9e37_79b9);
        for ty in [GgmlType::I8, GgmlType::MXFP4, GgmlType::NVFP4] {
            let data = rng.bytes(300 * ty.type_size() as usize);
            w.add_tensor(ty.name(), &[ty.block_size() * 100, 3], ty, data)
                .unwrap();
        }
        let path = dir.path().join(format!("{e:?}.gguf"));
        write(&path, &w);
        paths.push(path);
    }
    let le = MmapGGUFLoader::new(&paths[0]).unwrap();
    let want = le.load_model::<f32>(Device::Cpu).unwrap();
    let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    for mode in [LoadMode::Mmap, LoadMode::Read] {
        let be = MmapGGUFLoader::open(&paths[1], mode).unwrap();
        assert_eq!(be.endianness(), Endianness::Big);
        let got = be.load_model::<f32>(Device::Cpu).unwrap();
        for (name, w) in want.tensors() {
            let g = got.tensor(name).unwrap();
            assert_eq!(bits(w.data()), bits(g.data()), "{name} ({mode:?})");
            let one = be.load_tensor::<f32>(name, Device::Cpu).unwrap();
            assert_eq!(bits(w.data()), bits(one.data()), "{name} ({mode:?})");
        }
    }
}

/// Directories, FIFOs, sockets and devices are refused before anything is
/// read, in both modes, with what they are: a directory said "No such
/// device" (the mmap's error), and a FIFO with no writer blocked the open
/// forever. (Unix: FIFOs, sockets and /dev/null.)
#[cfg(unix)]
#[test]
fn only_regular_files_open() {
    use gguf_loader::LoadMode;
    use std::time::Duration;

    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo.gguf");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let socket = dir.path().join("socket.gguf");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let cases = [
        (dir.path().to_path_buf(), "a directory"),
        (fifo, "a FIFO"),
        (socket, "a socket"),
        (std::path::PathBuf::from("/dev/null"), "a character device"),
    ];
    for (path, what) in cases {
        for mode in [LoadMode::Mmap, LoadMode::Read] {
            // On a thread, so that an open that blocks fails the test
            // instead of hanging it.
            let p = path.clone();
            let r = common::within(
                Duration::from_secs(30),
                &format!("{}: open", path.display()),
                move || MmapGGUFLoader::open(&p, mode).map(|_| ()),
            );
            match r {
                Err(e @ Error::NotAFile { .. }) => {
                    let msg = e.to_string();
                    assert_eq!(
                        msg,
                        format!("{}: is {what}, not a regular file", path.display())
                    );
                }
                Err(e) => panic!("{} via {mode:?}: {e}", path.display()),
                Ok(()) => panic!("{} via {mode:?}: opened", path.display()),
            }
        }
    }
}

fn f32_shard(no: u16, count: u16, name: &str, endian: Endianness) -> GgufWriter<'static> {
    let mut w = GgufWriter::new().endianness(endian);
    w.add("split.no", MetaValue::U16(no))
        .add("split.count", MetaValue::U16(count));
    if no == 0 {
        w.add("general.architecture", MetaValue::String("llama".into()));
    }
    let values: Vec<u8> = (1..=8u32)
        .flat_map(|v| match endian {
            Endianness::Little => (v as f32).to_le_bytes(),
            Endianness::Big => (v as f32).to_be_bytes(),
        })
        .collect();
    w.add_tensor(name, &[8], GgmlType::F32, values).unwrap();
    w
}

/// Shards are decoded in their own byte order (a split model in big-endian
/// gives its values), and shards that disagree on version, byte order or
/// alignment, or come from a model of another architecture, are refused:
/// shard 2 big-endian under a little-endian shard 1 decoded to 4.6e-41…
#[test]
fn split_shards_must_agree() {
    use gguf_loader::{Device, LoadMode};
    let dir = tempfile::tempdir().unwrap();
    let p = |i: u16| dir.path().join(format!("s-{i:05}-of-00002.gguf"));
    let values: Vec<f32> = (1..=8).map(|v| v as f32).collect();

    for endian in [Endianness::Little, Endianness::Big] {
        write(&p(1), &f32_shard(0, 2, "a", endian));
        write(&p(2), &f32_shard(1, 2, "b", endian));
        for mode in [LoadMode::Mmap, LoadMode::Read] {
            let l = MmapGGUFLoader::open(p(1), mode).unwrap();
            assert_eq!(l.endianness(), endian);
            for name in ["a", "b"] {
                let t = l.load_tensor::<f32>(name, Device::Cpu).unwrap();
                assert_eq!(t.data(), &values[..], "{endian:?} {mode:?} {name}");
            }
            let m = l.load_model::<f32>(Device::Cpu).unwrap();
            assert!(m.tensors().all(|(_, t)| t.data() == &values[..]));
        }
    }

    let refused = |second: GgufWriter<'_>, what: &str| {
        write(&p(1), &f32_shard(0, 2, "a", Endianness::Little));
        write(&p(2), &second);
        let e = MmapGGUFLoader::new(p(1)).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, Error::Split { .. }), "{what}: {msg}");
        assert!(
            msg.contains("s-00002-of-00002.gguf") && msg.contains(what),
            "{what}: {msg}"
        );
    };
    refused(f32_shard(1, 2, "b", Endianness::Big), "byte order is big");
    refused(
        f32_shard(1, 2, "b", Endianness::Little).version(2),
        "GGUF version is 2",
    );
    refused(
        f32_shard(1, 2, "b", Endianness::Little).alignment(64),
        "alignment is 64",
    );
    let mut other = f32_shard(1, 2, "b", Endianness::Little);
    other.add("general.architecture", MetaValue::String("gemma3".into()));
    refused(other, "general.architecture is 'gemma3'");

    // A shard not there names where it was looked for.
    std::fs::remove_file(p(2)).unwrap();
    let e = MmapGGUFLoader::new(p(1)).unwrap_err();
    assert!(
        matches!(&e, Error::MissingShard { path, no: 2, count: 2, opened } if *path == p(2) && *opened == p(1)),
        "{e}"
    );
    assert_eq!(e.path(), Some(p(2).as_path()));
    assert_eq!(
        e.to_string(),
        format!(
            "{}: shard 2 of 2 is missing (opened from {})",
            p(2).display(),
            p(1).display()
        )
    );
}

/// A split model's lookups go through one index by name, built at open:
/// every tensor of a 300-shard set is found in its own shard.
#[test]
fn split_lookups_find_every_tensor_in_its_shard() {
    let dir = tempfile::tempdir().unwrap();
    let n = 300u16;
    let p = |i: u16| dir.path().join(format!("m-{i:05}-of-{n:05}.gguf"));
    for i in 0..n {
        write(
            &p(i + 1),
            &f32_shard(i, n, &format!("t{i}"), Endianness::Little),
        );
    }
    let l = MmapGGUFLoader::new(p(n / 2)).unwrap();
    assert_eq!(l.tensor_count(), n as usize);
    for i in 0..n {
        let name = format!("t{i}");
        assert_eq!(l.tensor_path(&name).unwrap(), p(i + 1));
        assert_eq!(l.tensor_info(&name).unwrap().name, name);
    }
    assert!(l.tensor_info("t300").is_none());
}
