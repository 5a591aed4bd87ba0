//! `gguf-loader inspect --json` agrees with gguf-py, llama.cpp's own reader:
//! on committed fixtures (written by gguf-py's GGUFWriter, one big-endian),
//! and on the real SmolLM2 model.

#[path = "../../gguf-loader/tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn inspect_json(path: &Path) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_gguf-loader"))
        .arg("inspect")
        .arg("--json")
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "inspect {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Equal JSON, numbers compared as values (Python and Rust print floats
/// differently), naming the first path where they differ.
fn assert_same(path: &str, got: &Value, want: &Value) {
    match (got, want) {
        (Value::Number(a), Value::Number(b)) => {
            let same = match (a.as_i64(), b.as_i64(), a.as_u64(), b.as_u64()) {
                (Some(x), Some(y), _, _) => x == y,
                (_, _, Some(x), Some(y)) => x == y,
                _ => a.as_f64().map(f64::to_bits) == b.as_f64().map(f64::to_bits),
            };
            assert!(same, "{path}: {a} != {b}");
        }
        (Value::Array(a), Value::Array(b)) => {
            assert_eq!(a.len(), b.len(), "{path}: array length");
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                assert_same(&format!("{path}[{i}]"), x, y);
            }
        }
        (Value::Object(a), Value::Object(b)) => {
            let ka: Vec<_> = a.keys().collect();
            let kb: Vec<_> = b.keys().collect();
            assert_eq!(ka, kb, "{path}: keys (in order)");
            for (k, x) in a {
                assert_same(&format!("{path}.{k}"), x, &b[k]);
            }
        }
        _ => assert_eq!(got, want, "{path}"),
    }
}

#[test]
fn fixtures_match_gguf_py() {
    let dir = common::repo_root().join("tests/fixtures");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "gguf") {
            let want: Value =
                serde_json::from_slice(&std::fs::read(path.with_extension("json")).unwrap())
                    .unwrap();
            assert_same(&path.display().to_string(), &inspect_json(&path), &want);
            n += 1;
        }
    }
    assert!(n >= 4, "found {n} fixtures");
}

#[test]
fn smollm2_matches_gguf_py() {
    let Some(model) = common::model_path() else {
        return;
    };
    let Some(stdout) = common::python_oracle("dump_gguf_json.py", &model) else {
        return;
    };
    let want: Value = serde_json::from_slice(&stdout).unwrap();
    let got = inspect_json(&model);
    assert_same("smollm2", &got, &want);
    assert_eq!(got["tensors"].as_array().unwrap().len(), 272);
    assert_eq!(
        got["metadata"]["tokenizer.ggml.tokens"]
            .as_array()
            .unwrap()
            .len(),
        49152
    );
}

#[test]
fn bad_input_gives_one_line_and_exit_2() {
    let dir = std::env::temp_dir().join(format!("gguf-loader-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cases: [(&str, &[u8]); 3] = [
        ("empty.gguf", b""),
        ("magic.gguf", b"NOPE\x03\0\0\0"),
        ("trunc.gguf", b"GGUF\x03\0\0\0\x01\0\0\0\0\0\0\0"),
    ];
    for (name, bytes) in cases {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_gguf-loader"))
            .args(["inspect", p.to_str().unwrap()])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{name}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "{name}: {err}");
        assert!(err.contains(name) && !err.contains("panicked"), "{err}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A split model's tensor offsets are each in its own shard: the table
/// says which tensors each shard holds, and the JSON lists the shards.
#[test]
fn split_models_say_which_shard_holds_which_tensors() {
    use gguf_loader::{GgmlType, GgufWriter, MetaValue};
    let dir = tempfile::tempdir().unwrap();
    let p = |i: u16| dir.path().join(format!("m-{i:05}-of-00002.gguf"));
    for (i, names) in [&["a", "b"][..], &["c"]].iter().enumerate() {
        let mut w = GgufWriter::new();
        w.add("split.no", MetaValue::U16(i as u16))
            .add("split.count", MetaValue::U16(2))
            .add("split.tensors.count", MetaValue::I32(3))
            .add("general.architecture", MetaValue::String("llama".into()));
        for name in *names {
            w.add_tensor(*name, &[4], GgmlType::F32, vec![0u8; 16])
                .unwrap();
        }
        std::fs::write(p(i as u16 + 1), w.to_bytes().unwrap()).unwrap();
    }
    let out = Command::new(env!("CARGO_BIN_EXE_gguf-loader"))
        .arg("inspect")
        .arg(p(1))
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("split model: 2 shards"), "{text}");
    assert!(
        text.contains("shard 1: tensors 1-2 (offsets in this file)")
            && text.contains("m-00001-of-00002.gguf"),
        "{text}"
    );
    assert!(text.contains("shard 2: tensors 3-3"), "{text}");
    let json = inspect_json(&p(2));
    let shards = json["shards"].as_array().unwrap();
    assert_eq!(shards.len(), 2);
    assert_eq!(shards[0]["tensors"], 2);
    assert_eq!(shards[1]["tensors"], 1);
    assert!(shards[1]["path"]
        .as_str()
        .unwrap()
        .ends_with("m-00002-of-00002.gguf"));
    assert_eq!(json["tensors"].as_array().unwrap().len(), 3);
    // One file: no shard list.
    assert!(
        inspect_json(&common::repo_root().join("tests/fixtures/all_types_le.gguf"))
            .get("shards")
            .is_none()
    );
}

/// Floats print as their shortest decimal, in scientific notation where
/// that is long: `1e308` was 309 digits, clipped before its value showed.
#[test]
fn floats_print_short() {
    use gguf_loader::{GgufWriter, MetaValue};
    let dir = tempfile::tempdir().unwrap();
    let mut w = GgufWriter::new();
    for (key, v) in [
        ("t.tiny", MetaValue::F64(5e-324)),
        ("t.neg", MetaValue::F64(-1.5e200)),
        ("t.big", MetaValue::F64(1e308)),
        ("t.eps", MetaValue::F32(1e-5)),
        ("t.rope", MetaValue::F32(10000.0)),
        ("t.half", MetaValue::F32(0.5)),
        ("t.nan", MetaValue::F64(f64::NAN)),
    ] {
        w.add(key, v);
    }
    let path = dir.path().join("f.gguf");
    std::fs::write(&path, w.to_bytes().unwrap()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gguf-loader"))
        .arg("inspect")
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for (key, shown) in [
        ("t.tiny", "5e-324"),
        ("t.neg", "-1.5e200"),
        ("t.big", "1e308"),
        ("t.eps", "1e-5"),
        ("t.rope", "10000"),
        ("t.half", "0.5"),
        ("t.nan", "NaN"),
    ] {
        let line = text.lines().find(|l| l.contains(key)).unwrap();
        assert!(line.ends_with(&format!("= {shown}")), "{line}");
    }
}
