//! Float settings and weights that would make every logit NaN: an RMS
//! epsilon or a RoPE base that is NaN, infinite, 0 or negative, a bad RoPE
//! scaling factor or logit soft-cap are refused when the model is built,
//! naming the key and the value, and so are RoPE settings whose angles
//! leave f32's range (a factor of 1e-38, a `rope_freqs.weight` of 0),
//! naming the key or tensor; a NaN weight ends the forward pass in a
//! typed error naming the position, never in logits a sampler would turn
//! into token 0.

mod common;

use gguf_loader::{GgmlType, GgufWriter, MetaValue, MmapGGUFLoader};
use gguf_loader_llm::forward::{ForwardError, Transformer};

use common::{f32_bytes, HEAD, N_EMBD, N_FF, N_HEAD, N_KV, N_VOCAB};

const N_LAYER: usize = 2;

/// A model of architecture `arch` (`llama` or `gemma3`, two blocks, every
/// tensor F32) with the settings real models use, `meta` added after (and
/// so overriding) them, and `nan` (a tensor's name and an index) written
/// into one weight.
fn model(
    arch: &str,
    meta: &[(&str, MetaValue)],
    nan: Option<(&str, usize)>,
) -> tempfile::NamedTempFile {
    model_with(arch, meta, nan, &[])
}

/// [`model`] with `extra` F32 tensors (name, ne, values) added.
fn model_with(
    arch: &str,
    meta: &[(&str, MetaValue)],
    nan: Option<(&str, usize)>,
    extra: &[(&str, Vec<u64>, Vec<f32>)],
) -> tempfile::NamedTempFile {
    let gemma = arch == "gemma3";
    let mut w = GgufWriter::new();
    w.add("general.architecture", MetaValue::String(arch.into()));
    let k = |s: &str| format!("{arch}.{s}");
    w.add(k("block_count"), MetaValue::U32(N_LAYER as u32))
        .add(k("embedding_length"), MetaValue::U32(N_EMBD as u32))
        .add(k("feed_forward_length"), MetaValue::U32(N_FF as u32))
        .add(k("attention.head_count"), MetaValue::U32(N_HEAD))
        .add(k("attention.head_count_kv"), MetaValue::U32(N_KV))
        .add(k("attention.layer_norm_rms_epsilon"), MetaValue::F32(1e-6))
        .add(k("rope.freq_base"), MetaValue::F32(1e6));
    if gemma {
        w.add(k("attention.key_length"), MetaValue::U32(HEAD as u32))
            .add(k("attention.sliding_window"), MetaValue::U32(512))
            .add(k("attention.sliding_window_pattern"), MetaValue::U32(2))
            .add(k("rope.freq_base_swa"), MetaValue::F32(10_000.0));
    }
    for (key, v) in meta {
        w.add(*key, v.clone());
    }
    let q = N_HEAD as u64 * HEAD;
    let kv = N_KV as u64 * HEAD;
    let mut tensors: Vec<(String, Vec<u64>)> = vec![
        ("token_embd.weight".into(), vec![N_EMBD, N_VOCAB]),
        ("output.weight".into(), vec![N_EMBD, N_VOCAB]),
        ("output_norm.weight".into(), vec![N_EMBD]),
    ];
    for il in 0..N_LAYER {
        let p = |s: &str| format!("blk.{il}.{s}.weight");
        tensors.extend([
            (p("attn_q"), vec![N_EMBD, q]),
            (p("attn_k"), vec![N_EMBD, kv]),
            (p("attn_v"), vec![N_EMBD, kv]),
            (p("attn_output"), vec![q, N_EMBD]),
            (p("ffn_gate"), vec![N_EMBD, N_FF]),
            (p("ffn_up"), vec![N_EMBD, N_FF]),
            (p("ffn_down"), vec![N_FF, N_EMBD]),
            (p("attn_norm"), vec![N_EMBD]),
            (p("ffn_norm"), vec![N_EMBD]),
        ]);
        if gemma {
            tensors.extend([
                (p("attn_q_norm"), vec![HEAD]),
                (p("attn_k_norm"), vec![HEAD]),
                (p("post_attention_norm"), vec![N_EMBD]),
                (p("post_ffw_norm"), vec![N_EMBD]),
            ]);
        }
    }
    for (i, (name, ne)) in tensors.iter().enumerate() {
        let mut data = if ne.len() == 1 {
            // Norms: ones.
            (0..ne[0]).flat_map(|_| 1f32.to_le_bytes()).collect()
        } else {
            f32_bytes(ne.iter().product(), i as u32)
        };
        if let Some((_, at)) = nan.filter(|(t, _)| t == name) {
            data[at * 4..at * 4 + 4].copy_from_slice(&f32::NAN.to_le_bytes());
        }
        w.add_tensor(name.as_str(), ne, GgmlType::F32, data)
            .unwrap();
    }
    for (name, ne, values) in extra {
        let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        w.add_tensor(*name, ne, GgmlType::F32, data).unwrap();
    }
    let file = tempfile::Builder::new().suffix(".gguf").tempfile().unwrap();
    std::fs::write(file.path(), w.to_bytes().unwrap()).unwrap();
    file
}

fn eager(file: &tempfile::NamedTempFile) -> Result<Transformer<f32>, ForwardError> {
    Transformer::<f32>::load(&MmapGGUFLoader::new(file.path()).unwrap())
}

fn lazy(file: &tempfile::NamedTempFile) -> Result<Transformer<f32>, ForwardError> {
    Transformer::<f32>::load_lazy(std::sync::Arc::new(
        MmapGGUFLoader::new(file.path()).unwrap(),
    ))
}

#[test]
fn the_settings_real_models_use_run() {
    let linear = || MetaValue::String("linear".into());
    let cases: Vec<(&str, Vec<(&str, MetaValue)>)> = vec![
        ("llama", vec![]),
        (
            "llama",
            vec![
                (
                    "llama.attention.layer_norm_rms_epsilon",
                    MetaValue::F32(1e-5),
                ),
                ("llama.rope.freq_base", MetaValue::F32(10_000.0)),
                ("llama.rope.scaling.type", linear()),
                ("llama.rope.scaling.factor", MetaValue::F32(4.0)),
            ],
        ),
        // A factor is not read with scaling "none"; as llama.cpp reads it,
        // a factor of 0 is no scaling, and no type is linear.
        (
            "llama",
            vec![
                ("llama.rope.scaling.type", MetaValue::String("none".into())),
                ("llama.rope.scaling.factor", MetaValue::F32(f32::NAN)),
            ],
        ),
        (
            "llama",
            vec![
                ("llama.rope.scaling.type", linear()),
                ("llama.rope.scaling.factor", MetaValue::F32(0.0)),
            ],
        ),
        (
            "llama",
            vec![("llama.rope.scaling.factor", MetaValue::F32(4.0))],
        ),
        ("gemma3", vec![]),
        (
            "gemma3",
            vec![
                ("gemma3.rope.scaling.type", linear()),
                ("gemma3.rope.scaling.factor", MetaValue::F32(8.0)),
                ("gemma3.final_logit_softcapping", MetaValue::F32(30.0)),
            ],
        ),
        // 0: no soft-capping.
        (
            "gemma3",
            vec![("gemma3.final_logit_softcapping", MetaValue::F32(0.0))],
        ),
        // The sliding window's base is not read without a window.
        (
            "gemma3",
            vec![
                ("gemma3.attention.sliding_window", MetaValue::U32(0)),
                ("gemma3.rope.freq_base_swa", MetaValue::F32(f32::NAN)),
            ],
        ),
    ];
    for (arch, meta) in cases {
        let file = model(arch, &meta, None);
        for build in [eager, lazy] {
            let m = build(&file).unwrap_or_else(|e| panic!("{arch} {meta:?}: {e}"));
            let mut cache = m.new_cache(4).unwrap();
            let logits = m.forward(&mut cache, &[1, 2, 3], true).unwrap();
            assert_eq!(logits.len(), 3 * N_VOCAB as usize);
            assert!(logits.iter().all(|v| v.is_finite()), "{arch} {meta:?}");
        }
    }
}

#[test]
fn unusable_float_settings_are_refused_naming_the_key_and_the_value() {
    // 1e-42 is subnormal: as good as 0.
    let bad = [
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        0.0,
        -0.0,
        -1.0,
        1e-42,
    ];
    // (arch, key, whether it is a RoPE scaling factor: read with linear
    // scaling or none named, and 0 is no scaling)
    let keys = [
        ("llama", "attention.layer_norm_rms_epsilon", false),
        ("llama", "rope.freq_base", false),
        ("llama", "rope.scaling.factor", true),
        ("gemma3", "attention.layer_norm_rms_epsilon", false),
        ("gemma3", "rope.freq_base", false),
        ("gemma3", "rope.freq_base_swa", false),
        ("gemma3", "rope.scaling.factor", true),
    ];
    for (arch, key, linear) in keys {
        let key = format!("{arch}.{key}");
        let scaling = format!("{arch}.rope.scaling.type");
        for (i, v) in bad.into_iter().enumerate() {
            if linear && v == 0.0 {
                continue;
            }
            let mut meta = vec![(key.as_str(), MetaValue::F32(v))];
            if linear && i % 2 == 0 {
                meta.push((scaling.as_str(), MetaValue::String("linear".into())));
            }
            let file = model(arch, &meta, None);
            for build in [eager, lazy] {
                let e = build(&file).expect_err("an unusable value");
                assert!(
                    matches!(&e, ForwardError::BadParameter { key: k, .. } if *k == key),
                    "{e:?}"
                );
                let why = if v.is_subnormal() {
                    format!(
                        "{v:e} is subnormal, too small to use (it must be a normal number above 0)"
                    )
                } else {
                    format!("{v} is not a finite number above 0")
                };
                assert_eq!(e.to_string(), format!("metadata key '{key}': {why}"));
            }
        }
    }
    // The soft-cap: 0 is none; NaN, infinite, negative or subnormal (every
    // logit the same) are refused.
    for v in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -30.0, 1e-42] {
        let file = model(
            "gemma3",
            &[("gemma3.final_logit_softcapping", MetaValue::F32(v))],
            None,
        );
        for build in [eager, lazy] {
            let e = build(&file).expect_err("an unusable soft-cap");
            let why = if v.is_subnormal() {
                format!("{v:e} is subnormal, too small to cap with (0 means none)")
            } else {
                format!("{v} is neither 0 (none) nor a finite number above 0")
            };
            assert_eq!(
                e.to_string(),
                format!("metadata key 'gemma3.final_logit_softcapping': {why}")
            );
        }
    }
    // The spelled-out values: what a user reads.
    let file = model(
        "llama",
        &[(
            "llama.attention.layer_norm_rms_epsilon",
            MetaValue::F32(f32::NAN),
        )],
        None,
    );
    assert_eq!(
        eager(&file).err().unwrap().to_string(),
        "metadata key 'llama.attention.layer_norm_rms_epsilon': NaN is not a finite number above 0"
    );
}

#[test]
fn a_nan_weight_is_an_error_naming_the_position_not_token_0() {
    for arch in ["llama", "gemma3"] {
        // In the final norm: every position's logits are NaN.
        let file = model(arch, &[], Some(("output_norm.weight", 0)));
        for build in [eager, lazy] {
            let m = build(&file).unwrap();
            let mut cache = m.new_cache(8).unwrap();
            let e = m.forward(&mut cache, &[1, 2, 3], false).unwrap_err();
            assert!(
                matches!(
                    e,
                    ForwardError::BadLogits {
                        position: 2,
                        nan: 16,
                        n_vocab: 16
                    }
                ),
                "{arch}: {e:?}"
            );
            assert_eq!(
                e.to_string(),
                "16 of the 16 logits at position 2 are NaN: the weights or the settings hold \
                 NaN or Inf (`gguf-loader verify FILE` checks the weights)"
            );
            // The cache is left as it was.
            assert_eq!(cache.len(), 0);
        }
        // In one row of the embeddings (token 2's): the positions from its
        // own on (attention reads its key and value); the first is named.
        let row2 = 2 * N_EMBD as usize;
        let file = model(arch, &[], Some(("token_embd.weight", row2)));
        let m = eager(&file).unwrap();
        let mut cache = m.new_cache(8).unwrap();
        let e = m.forward(&mut cache, &[1, 1, 2, 3], true).unwrap_err();
        assert!(
            matches!(e, ForwardError::BadLogits { position: 2, .. }),
            "{arch}: {e:?}"
        );
        assert_eq!(cache.len(), 0);
        // Without the token, the same model and cache run.
        let logits = m.forward(&mut cache, &[1, 3], false).unwrap();
        assert!(logits.iter().all(|v| v.is_finite()));
        assert_eq!(cache.len(), 2);
        // It at position 2 then: the error names it too.
        let e = m.forward(&mut cache, &[2], false).unwrap_err();
        assert!(
            matches!(e, ForwardError::BadLogits { position: 2, .. }),
            "{arch}: {e:?}"
        );
        assert_eq!(cache.len(), 2);
        // In one row of the output head (token 5's): that logit only.
        let file = model(arch, &[], Some(("output.weight", 5 * N_EMBD as usize)));
        let m = eager(&file).unwrap();
        let mut cache = m.new_cache(8).unwrap();
        let e = m.forward(&mut cache, &[1], false).unwrap_err();
        assert!(
            matches!(
                e,
                ForwardError::BadLogits {
                    position: 0,
                    nan: 1,
                    ..
                }
            ),
            "{arch}: {e:?}"
        );
    }
}

/// A lazy model's tensor that cannot be read (here: the file truncated
/// under a read-mode loader; out of memory alike) is that error, naming
/// the tensor, not "tensor '…' is missing".
#[test]
fn an_unreadable_lazy_tensor_is_its_error_not_missing() {
    use gguf_loader::LoadMode;
    let file = model("llama", &[], None);
    let loader = MmapGGUFLoader::open(file.path(), LoadMode::Read).unwrap();
    let header = loader.file().data_offset;
    std::fs::OpenOptions::new()
        .write(true)
        .open(file.path())
        .unwrap()
        .set_len(header)
        .unwrap();
    let e =
        Transformer::<f32>::load_lazy(std::sync::Arc::new(loader)).expect_err("a truncated file");
    assert!(!matches!(e, ForwardError::MissingTensor(_)), "{e:?}");
    assert!(e.to_string().contains("token_embd.weight"), "{e}");
}

/// A 62-layer Gemma 3 scales attention by the hidden size per head: with
/// fewer hidden units than heads that is 1/sqrt(0), every logit NaN, and
/// the error blamed the weights. It names the head count instead.
#[test]
fn a_62_layer_gemma_with_more_heads_than_hidden_units_is_refused() {
    let meta = [
        ("gemma3.block_count", MetaValue::U32(62)),
        ("gemma3.embedding_length", MetaValue::U32(N_HEAD - 1)),
    ];
    let file = model("gemma3", &meta, None);
    // Enough tensors that 62 blocks are not refused by the count alone.
    let loader = MmapGGUFLoader::new(file.path()).unwrap();
    let mut w = GgufWriter::new();
    for (k, v) in loader.metadata().iter() {
        w.add_value(k, *v);
    }
    for t in loader.tensors() {
        let data = loader.get_tensor_data(t.name).unwrap().to_vec();
        w.add_tensor(t.name, t.ne(), t.ty, data).unwrap();
    }
    for i in 0..62 {
        w.add_tensor(format!("pad.{i}"), &[1], GgmlType::F32, vec![0u8; 4])
            .unwrap();
    }
    let padded = tempfile::Builder::new().suffix(".gguf").tempfile().unwrap();
    std::fs::write(padded.path(), w.to_bytes().unwrap()).unwrap();
    for build in [eager, lazy] {
        let e = build(&padded).expect_err("more heads than hidden units");
        assert!(
            matches!(&e, ForwardError::BadParameter { key, .. } if key == "gemma3.attention.head_count"),
            "{e:?}"
        );
        assert!(
            e.to_string().contains("leave no hidden size per head"),
            "{e}"
        );
    }
}

/// gemma3's per-layer sliding-window flags must be bools: an array of
/// integers (read as all false before) is refused, naming its type.
#[test]
fn sliding_window_flags_of_another_type_are_refused() {
    use gguf_loader::ValueType;
    let key = "gemma3.attention.sliding_window_pattern";
    let ints = MetaValue::Array(ValueType::I32, vec![MetaValue::I32(5), MetaValue::I32(7)]);
    let file = model("gemma3", &[(key, ints)], None);
    for build in [eager, lazy] {
        let e = build(&file).expect_err("flags that are not bools");
        assert_eq!(
            e.to_string(),
            format!("metadata key '{key}': an array of int32, not of bool (one flag per layer)")
        );
    }
    let flags = MetaValue::Array(
        ValueType::Bool,
        vec![MetaValue::Bool(true), MetaValue::Bool(false)],
    );
    let file = model("gemma3", &[(key, flags)], None);
    assert!(eager(&file).is_ok() && lazy(&file).is_ok());
}

/// `feed_forward_length` is held to the feed-forward tensors, as llama.cpp
/// sizes them by it: 0 or another width is refused, one count per layer
/// is read as llama.cpp reads it.
#[test]
fn a_feed_forward_length_the_tensors_do_not_have_is_refused() {
    use gguf_loader::ValueType;
    for arch in ["llama", "gemma3"] {
        let key = format!("{arch}.feed_forward_length");
        let per_layer = |v: u32| MetaValue::Array(ValueType::U32, vec![MetaValue::U32(v); N_LAYER]);
        let bad = [
            (
                MetaValue::U32(0),
                format!("0, but the feed-forward tensors are {N_FF} wide"),
            ),
            (
                MetaValue::U32(N_FF as u32 + 1),
                format!("{}, but the feed-forward tensors are {N_FF} wide", N_FF + 1),
            ),
            (
                per_layer(7),
                format!("7, but the feed-forward tensors are {N_FF} wide"),
            ),
            (
                MetaValue::Array(ValueType::U32, vec![MetaValue::U32(N_FF as u32)]),
                format!("1 counts for {N_LAYER} layers"),
            ),
            (
                MetaValue::F32(N_FF as f32),
                "not a count (an unsigned integer)".to_string(),
            ),
            (
                MetaValue::I32(-1),
                "not a count (an unsigned integer)".to_string(),
            ),
        ];
        for (v, why) in bad {
            let file = model(arch, &[(key.as_str(), v.clone())], None);
            for build in [eager, lazy] {
                let e = build(&file).expect_err("a width the tensors do not have");
                assert_eq!(
                    e.to_string(),
                    format!("metadata key '{key}': {why}"),
                    "{v:?}"
                );
            }
        }
        let file = model(arch, &[(key.as_str(), per_layer(N_FF as u32))], None);
        assert!(eager(&file).is_ok() && lazy(&file).is_ok());
    }
}

/// RoPE settings each finite and above 0 but whose angles leave f32's
/// range (so every logit was NaN, blamed on the weights): refused when the
/// model is built, naming the key or tensor that does it. Real settings
/// (a 4× linear scaling, Llama 3's frequency factors of 1 to 8) run. (A
/// tiny base takes more pairs than these heads have to overflow: the unit
/// test in forward.rs has SmolLM2's.)
#[test]
fn rope_settings_whose_angles_overflow_are_refused_naming_the_cause() {
    let pairs = HEAD / 2;
    // (architecture, settings, rope_freqs.weight if any, the message's start)
    type Case = (
        &'static str,
        Vec<(&'static str, MetaValue)>,
        Vec<f32>,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        (
            "llama",
            vec![("llama.rope.scaling.factor", MetaValue::F32(1.2e-38))],
            vec![],
            "metadata key 'llama.rope.scaling.factor': 1.2e-38 scales RoPE's angles by ",
        ),
        (
            "llama",
            vec![],
            (0..pairs).map(|i| if i == 1 { 0.0 } else { 1.0 }).collect(),
            "tensor 'rope_freqs.weight': element 1 is 0e0: ",
        ),
        (
            "llama",
            vec![],
            (0..pairs)
                .map(|i| if i == 1 { -2.0 } else { 1.0 })
                .collect(),
            "tensor 'rope_freqs.weight': element 1 is -2e0: ",
        ),
        (
            "llama",
            vec![],
            vec![1e-38; pairs as usize],
            "tensor 'rope_freqs.weight': element 0 is 1e-38: ",
        ),
    ];
    for (arch, meta, freqs, message) in cases {
        let extra = if freqs.is_empty() {
            vec![]
        } else {
            vec![("rope_freqs.weight", vec![pairs], freqs)]
        };
        let file = model_with(arch, &meta, None, &extra);
        for build in [eager, lazy] {
            let e = build(&file)
                .err()
                .unwrap_or_else(|| panic!("{message}: built"));
            assert!(e.to_string().starts_with(message), "{e}");
        }
    }
    let real: Vec<f32> = (0..pairs)
        .map(|i| 1.0 + 7.0 * i as f32 / pairs as f32)
        .collect();
    let file = model_with(
        "llama",
        &[("llama.rope.scaling.factor", MetaValue::F32(4.0))],
        None,
        &[("rope_freqs.weight", vec![pairs], real)],
    );
    for build in [eager, lazy] {
        let m = build(&file).unwrap();
        let mut cache = m.new_cache(4).unwrap();
        let logits = m.forward(&mut cache, &[1, 2, 3], true).unwrap();
        assert!(logits.iter().all(|v| v.is_finite()));
    }
}
