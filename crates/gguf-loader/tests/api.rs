//! The public API's small promises: errors print their cause once and file
//! text escaped, bad magic as hex, type names honour width and padding,
//! shape is row-major and ne GGUF order, tensors as bytes and as ndarray
//! views, architecture-prefixed and typed-array metadata getters.

mod common;

use std::error::Error as _;

use gguf_loader::{
    Device, GgmlType, GgufFile, GgufWriter, MetaValue, MetadataError, MmapGGUFLoader, Tensor,
    ValueType,
};

fn small_model() -> Vec<u8> {
    let mut w = GgufWriter::new();
    w.add("general.architecture", MetaValue::String("gemma3".into()))
        .add("gemma3.block_count", MetaValue::U64(2))
        .add("gemma3.rope.freq_base", MetaValue::F32(1e6))
        .add(
            "tokenizer.ggml.tokens",
            MetaValue::Array(
                ValueType::String,
                vec![
                    MetaValue::String("<bos>".into()),
                    MetaValue::String("a".into()),
                ],
            ),
        )
        .add(
            "tokenizer.ggml.scores",
            MetaValue::Array(
                ValueType::F32,
                vec![MetaValue::F32(0.5), MetaValue::F32(-1.0)],
            ),
        );
    // ne = [3, 2]: rows of 3, 2 rows: shape [2, 3].
    let values: Vec<u8> = (0..6).flat_map(|i| (i as f32).to_le_bytes()).collect();
    w.add_tensor("blk.0.w", &[3, 2], GgmlType::F32, values)
        .unwrap();
    w.to_bytes().unwrap()
}

#[test]
fn errors_hold_their_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.gguf");
    let e = MmapGGUFLoader::new(&missing).unwrap_err();
    let text = e.to_string();
    // The system's own words for it (Windows has others).
    assert!(
        text.contains("missing.gguf") && (!cfg!(unix) || text.contains("No such file")),
        "{text}"
    );
    assert!(
        e.source().is_none(),
        "the cause is in the message, not repeated"
    );
    assert_eq!(
        e.io_error().map(|e| e.kind()),
        Some(std::io::ErrorKind::NotFound)
    );
    // It names the file, and says which.
    assert_eq!(e.path(), Some(missing.as_path()));
    // A tensor's error names the tensor only: no path, for a caller to add.
    let e = gguf_loader::Error::TensorNotFound("w".into());
    assert_eq!(e.path(), None);
}

#[test]
fn bad_magic_prints_as_hex_and_escaped_text() {
    let mut bytes = small_model();
    bytes[..4].copy_from_slice(&[0x17, 0x14, b'g', b'g']);
    let e = GgufFile::parse(&bytes).unwrap_err().to_string();
    assert!(e.contains(r#"0x17 0x14 0x67 0x67 ("\x17\x14gg")"#), "{e}");
}

#[test]
fn names_from_a_file_are_escaped_in_errors() {
    let loader = {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.gguf");
        std::fs::write(&p, small_model()).unwrap();
        MmapGGUFLoader::new(&p).unwrap()
    };
    let e = loader
        .load_tensor_f16("x\u{1b}]0;TITLE\u{7}", Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(!e.chars().any(|c| c.is_control()), "{e:?}");
    assert!(e.contains(r"x\u{1b}]0;TITLE\u{7}"), "{e}");
}

#[test]
fn type_names_honour_width() {
    assert_eq!(format!("[{:<6}]", GgmlType::Q4_K), "[Q4_K  ]");
    assert_eq!(format!("[{:>8}]", ValueType::U32), "[  uint32]");
    assert_eq!(format!("[{:^7}]", Device::Cpu), "[  cpu  ]");
}

#[test]
fn shape_is_row_major_and_ne_is_gguf_order() {
    let bytes = small_model();
    let f = GgufFile::parse(&bytes).unwrap();
    let info = f.tensor("blk.0.w").unwrap();
    assert_eq!(info.ne(), &[3, 2]);
    assert_eq!(info.shape(), vec![2, 3]);

    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.gguf");
    std::fs::write(&p, &bytes).unwrap();
    let t = MmapGGUFLoader::new(&p)
        .unwrap()
        .load_tensor::<f32>("blk.0.w", Device::Cpu)
        .unwrap();
    assert_eq!(t.ne(), &[3, 2]);
    assert_eq!(t.shape(), vec![2, 3]);
    let bytes_le: Vec<u8> = (0..6).flat_map(|i| (i as f32).to_ne_bytes()).collect();
    assert_eq!(t.as_bytes(), &bytes_le[..]);
    // Row-major: element [1, 0] is the second row's first value.
    let v = t.view();
    assert_eq!(v.shape(), &[2, 3]);
    assert_eq!(v[[1, 0]], 3.0);
    assert_eq!(v[[0, 2]], 2.0);

    let made = Tensor::from_vec(&[2, 3], (0..6).map(|i| i as f32).collect()).unwrap();
    assert_eq!(made.ne(), &[3, 2]);
    assert_eq!(made.data(), t.data());
    assert!(Tensor::from_vec(&[4, 2], vec![0f32; 6]).is_none());
}

#[test]
fn architecture_keys_and_typed_arrays() {
    let bytes = small_model();
    let f = GgufFile::parse(&bytes).unwrap();
    let m = &f.metadata;
    assert_eq!(m.architecture().unwrap(), "gemma3");
    assert_eq!(m.arch_key("block_count").unwrap(), "gemma3.block_count");
    // Stored as u64: arch_u32 takes any width that fits.
    assert_eq!(m.arch_u32("block_count").unwrap(), 2);
    assert_eq!(m.arch_f32("rope.freq_base").unwrap(), 1e6);
    assert_eq!(
        m.arch_u32("context_length").unwrap_err(),
        MetadataError::Missing("gemma3.context_length".into())
    );
    assert_eq!(
        m.get_str_array("tokenizer.ggml.tokens").unwrap(),
        ["<bos>", "a"]
    );
    assert_eq!(
        m.get_f32_array("tokenizer.ggml.scores").unwrap(),
        [0.5, -1.0]
    );
    assert!(matches!(
        m.get_f32_array("tokenizer.ggml.tokens"),
        Err(MetadataError::WrongElementType {
            found: ValueType::String,
            ..
        })
    ));
    assert_eq!(
        m.get_i32_array("tokenizer.ggml.tokens")
            .unwrap_err()
            .to_string(),
        "metadata key 'tokenizer.ggml.tokens' is an array of string, expected array of int32"
    );
}

/// The README's keys on both real models: `{arch}.block_count` whatever the
/// architecture.
#[test]
fn arch_keys_on_both_real_models() {
    for (model, arch, layers) in common::model_path()
        .map(|p| (p, "llama", 30))
        .into_iter()
        .chain(common::gemma_path().map(|p| (p, "gemma3", 18)))
    {
        let l = MmapGGUFLoader::new(&model).unwrap();
        let m = l.metadata();
        assert_eq!(m.architecture().unwrap(), arch);
        assert_eq!(m.arch_u32("block_count").unwrap(), layers);
        let tokens = m.get_str_array("tokenizer.ggml.tokens").unwrap();
        assert!(tokens.len() >= 49152);
    }
}

/// Every public type has a `Debug` that says what it holds (not its data),
/// so that a user's own `#[derive(Debug)]` struct can hold it; the lazy
/// model's layer iterator knows its length.
#[test]
fn debug_on_every_public_type() {
    use gguf_loader::{LazyModel, LoadOptions, Prefetch};
    use half::f16;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    let w = gguf_loader::synthesize(&gguf_loader::Preset::TINY_TEST, GgmlType::Q8_0, 1).unwrap();
    let text = format!("{w:?}");
    assert!(text.starts_with("GgufWriter { version: 3,"), "{text}");
    assert!(text.contains("\"general.architecture\""), "{text}");
    std::fs::write(&path, w.to_bytes().unwrap()).unwrap();

    let noop = |_: &gguf_loader::Progress| true;
    let opts = LoadOptions::default().threads(1).progress(&noop);
    let text = format!("{opts:?}");
    assert!(text.contains("threads: Some(1)") && text.contains("progress: Some(\"callback\")"));

    let lazy = LazyModel::<f16>::open(&path).unwrap();
    lazy.tensor("output_norm.weight").unwrap();
    let loader = MmapGGUFLoader::new(&path).unwrap();
    let text = format!("{:?}", loader.tensor_info("output_norm.weight").unwrap());
    assert!(
        text.starts_with("TensorInfo { name: \"output_norm.weight\", ne: [256], ty: F32,"),
        "{text}"
    );
    let text = format!("{lazy:?}");
    assert!(text.contains("layers: 2, cached: 1"), "{text}");
    let mut layers = lazy.layers(Prefetch::NextLayer);
    assert_eq!(layers.len(), 2);
    let first = layers.next().unwrap().unwrap();
    assert_eq!(layers.len(), 1);
    assert!(format!("{layers:?}").contains("left: 1"));
    let text = format!("{first:?}");
    assert!(
        text.starts_with("LazyLayer { index: 0, tensors: [\"attn_norm.weight\""),
        "{text}"
    );

    let model = MmapGGUFLoader::new(&path)
        .unwrap()
        .load_f16_model(Device::Cpu)
        .unwrap();
    let text = format!("{:?}", model.layer(1).unwrap());
    assert!(text.starts_with("Layer { index: 1, tensors: [\""), "{text}");
    assert!(text.ends_with("dtype: \"f16\" }"), "{text}");
}

/// `Device` parses what it displays (`cpu`, `cuda:N`), and `cuda` as GPU 0;
/// anything else is a `ParseDeviceError` naming it, escaped.
#[test]
fn device_names_round_trip() {
    for d in [Device::Cpu, Device::Cuda(0), Device::Cuda(7)] {
        assert_eq!(d.to_string().parse::<Device>(), Ok(d));
    }
    assert_eq!("cuda".parse::<Device>(), Ok(Device::Cuda(0)));
    for bad in [
        "",
        "gpu",
        "CPU",
        "cuda:",
        "cuda:+1",
        "cuda:-1",
        " cuda",
        "cuda:1 ",
        "cuda:0x1",
        "cuda:99999999999999999999999",
    ] {
        let e = bad.parse::<Device>().unwrap_err();
        assert_eq!(e.input, bad);
        assert_eq!(
            e.to_string(),
            format!("unknown device '{bad}' (cpu, cuda, cuda:N)")
        );
    }
    let e = "cuda:\x1b[2J".parse::<Device>().unwrap_err();
    assert!(!e.to_string().contains('\x1b'), "{e}");
}

/// `ModelConfig::from_metadata` never fails, but lists the keys it had to
/// leave aside, each with what it holds: a mistyped key is not silently
/// the same as a missing one.
#[test]
fn model_config_lists_the_keys_it_cannot_use() {
    use gguf_loader::ModelConfig;
    let mut w = GgufWriter::new();
    w.add("general.architecture", MetaValue::String("llama".into()))
        .add("llama.block_count", MetaValue::U32(2))
        .add("llama.context_length", MetaValue::String("8192".into()))
        .add("llama.embedding_length", MetaValue::I32(-5))
        .add(
            "llama.feed_forward_length",
            MetaValue::Array(ValueType::U32, vec![MetaValue::U32(64), MetaValue::U32(32)]),
        )
        .add(
            "llama.attention.head_count",
            MetaValue::Array(ValueType::F32, vec![MetaValue::F32(4.0)]),
        )
        .add(
            "llama.attention.head_count_kv",
            MetaValue::Array(ValueType::U32, vec![]),
        )
        .add("llama.rope.freq_base", MetaValue::U32(500_000))
        .add(
            "llama.attention.layer_norm_rms_epsilon",
            MetaValue::F64(1e-6),
        )
        .add("tokenizer.ggml.tokens", MetaValue::String("a".into()));
    let bytes = w.to_bytes().unwrap();
    let file = GgufFile::parse(&bytes).unwrap();
    let c = ModelConfig::from_metadata(&file.metadata);
    assert_eq!(c.architecture, "llama");
    assert_eq!(c.block_count, Some(2));
    assert_eq!(c.feed_forward_length, Some(64), "an array's first element");
    assert_eq!(c.rms_norm_eps, Some(1e-6), "float64 is read, rounded");
    assert_eq!(
        (
            c.context_length,
            c.embedding_length,
            c.head_count,
            c.head_count_kv
        ),
        (None, None, None, None)
    );
    assert_eq!(c.rope_freq_base, 10_000.0, "the default, as for no key");
    assert_eq!(c.vocab_size, None);
    let said: Vec<String> = c.ignored.iter().map(|k| k.to_string()).collect();
    assert_eq!(
        said,
        [
            "llama.context_length is string, not an unsigned integer",
            "llama.embedding_length is int32 -5, not an unsigned integer",
            "llama.attention.head_count is an array whose first element is float32 4, \
             not an unsigned integer",
            "llama.attention.head_count_kv is an empty array of uint32, not an unsigned integer",
            "llama.rope.freq_base is uint32 500000, not a float",
            "tokenizer.ggml.tokens is string, not an array of strings",
        ]
    );

    // A file whose keys are all usable has nothing to list; one whose
    // architecture is no string has its keys read under no prefix.
    let mut w = GgufWriter::new();
    w.add("general.architecture", MetaValue::U8(1))
        .add("llama.block_count", MetaValue::U32(2));
    let bytes = w.to_bytes().unwrap();
    let file = GgufFile::parse(&bytes).unwrap();
    let c = ModelConfig::from_metadata(&file.metadata);
    assert_eq!((c.architecture.as_str(), c.block_count), ("", None));
    assert_eq!(
        c.ignored.iter().map(|k| k.to_string()).collect::<Vec<_>>(),
        ["general.architecture is uint8 1, not a string"]
    );
    let bytes = small_model();
    let file = GgufFile::parse(&bytes).unwrap();
    assert!(ModelConfig::from_metadata(&file.metadata)
        .ignored
        .is_empty());
}

/// `Value`'s `Display`: numbers as Rust prints them (floats with `{:?}`),
/// strings quoted with quotes, backslashes and terminal controls escaped,
/// arrays (nested too) in full.
#[test]
fn metadata_values_display_as_written() {
    let mut w = GgufWriter::new();
    w.add("u", MetaValue::U32(7))
        .add("i", MetaValue::I64(-3))
        .add("f", MetaValue::F32(1.0))
        .add("e", MetaValue::F32(1e-5))
        .add("n", MetaValue::F64(f64::NAN))
        .add("b", MetaValue::Bool(true))
        .add(
            "s",
            MetaValue::String("say \"hi\"\\ \u{1b}[31m\u{202e}é\n".into()),
        )
        .add(
            "a",
            MetaValue::Array(
                ValueType::Array,
                vec![
                    MetaValue::Array(ValueType::I8, vec![MetaValue::I8(-1), MetaValue::I8(2)]),
                    MetaValue::Array(ValueType::String, vec![MetaValue::String("x".into())]),
                    MetaValue::Array(ValueType::U8, vec![]),
                ],
            ),
        );
    let bytes = w.to_bytes().unwrap();
    let file = GgufFile::parse(&bytes).unwrap();
    let shown = |k: &str| file.metadata.get(k).unwrap().to_string();
    assert_eq!(shown("u"), "7");
    assert_eq!(shown("i"), "-3");
    assert_eq!(shown("f"), "1.0");
    assert_eq!(shown("e"), "1e-5");
    assert_eq!(shown("n"), "NaN");
    assert_eq!(shown("b"), "true");
    assert_eq!(shown("s"), r#""say \"hi\"\\ \u{1b}[31m\u{202e}é\n""#);
    assert_eq!(shown("a"), r#"[[-1, 2], ["x"], []]"#);
}
