//! `gguf-loader verify`: exit 0 clean, 1 data problems, 2 malformed; one line
//! per problem and a summary on standard output, errors on standard error;
//! the `--json` object, with the same keys in every outcome.

#[path = "../../gguf-loader/tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use gguf_loader::{Endianness, GgmlType, GgufWriter};
use serde_json::Value;

fn verify(path: &Path, json: bool) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_gguf-loader"));
    c.arg("verify").arg(path);
    if json {
        c.arg("--json");
    }
    c.output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

/// The keys of every `--json` report, in order.
const KEYS: [&str; 8] = [
    "file",
    "shards",
    "tensors_checked",
    "structure",
    "error",
    "problems",
    "problem_count",
    "skipped",
];

fn json_keys(v: &Value) -> Vec<&str> {
    v.as_object().unwrap().keys().map(String::as_str).collect()
}

/// Two tensors with problems (an f32 NaN at element 3 and a Q4_0 block 1
/// with an infinite `d`) and a clean one.
fn bad_file(dir: &Path) -> PathBuf {
    let mut f = vec![0u8; 8 * 4];
    f[12..16].copy_from_slice(&f32::NAN.to_le_bytes());
    let mut q = vec![0u8; 18 * 4];
    q[18..20].copy_from_slice(&0x7c00u16.to_le_bytes());
    let mut w = GgufWriter::new();
    w.add_tensor("weights.f32", &[8], GgmlType::F32, f).unwrap();
    w.add_tensor("ok", &[4], GgmlType::F16, vec![0u8; 8])
        .unwrap();
    w.add_tensor("weights.q4_0", &[128], GgmlType::Q4_0, q)
        .unwrap();
    let path = dir.join("bad.gguf");
    std::fs::write(&path, w.to_bytes().unwrap()).unwrap();
    path
}

#[test]
fn clean_fixture_exits_0() {
    let path = common::repo_root().join("tests/fixtures/default_align.gguf");
    let out = verify(&path, false);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let text = stdout(&out);
    assert_eq!(
        text,
        format!(
            "{}: 7 tensors in 1 shard checked, 0 problems\n",
            path.display()
        )
    );

    let out = verify(&path, true);
    assert_eq!(out.status.code(), Some(0));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json_keys(&v), KEYS);
    assert_eq!(v["structure"], "ok");
    assert_eq!(v["error"], Value::Null);
    assert_eq!(v["shards"], 1);
    assert_eq!(v["tensors_checked"], 7);
    assert_eq!(v["problems"], Value::Array(vec![]));
    assert_eq!(v["problem_count"], 0);
    assert_eq!(v["skipped"], Value::Array(vec![]));
    assert!(out.stderr.is_empty());
}

#[test]
fn data_problems_exit_1_one_line_each() {
    let dir = tempfile::tempdir().unwrap();
    let path = bad_file(dir.path());
    let out = verify(&path, false);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        vec![
            "weights.f32: element 3: value is NaN".to_string(),
            "weights.q4_0: block 1: field d is Inf".to_string(),
            format!(
                "{}: 3 tensors in 1 shard checked, 2 problems",
                path.display()
            ),
        ]
    );
    assert!(out.stderr.is_empty(), "{}", stderr(&out));
}

/// One problem is "1 problem".
#[test]
fn one_problem_is_singular() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = GgufWriter::new();
    w.add_tensor(
        "x",
        &[1],
        GgmlType::F32,
        f32::INFINITY.to_le_bytes().to_vec(),
    )
    .unwrap();
    let path = dir.path().join("one.gguf");
    std::fs::write(&path, w.to_bytes().unwrap()).unwrap();
    let out = verify(&path, false);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stdout(&out),
        format!(
            "x: element 0: value is Inf\n{}: 1 tensor in 1 shard checked, 1 problem\n",
            path.display()
        )
    );
}

#[test]
fn json_shape() {
    let dir = tempfile::tempdir().unwrap();
    let path = bad_file(dir.path());
    let out = verify(&path, true);
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json_keys(&v), KEYS);
    assert_eq!(v["file"], path.display().to_string());
    assert_eq!(v["shards"], 1);
    assert_eq!(v["tensors_checked"], 3);
    assert_eq!(v["structure"], "ok");
    assert_eq!(v["error"], Value::Null);
    let problems = v["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 2);
    assert_eq!(
        problems[0],
        serde_json::json!({
            "tensor": "weights.f32", "block": null, "element": 3, "field": "value",
            "kind": "NaN", "value": "NaN", "bits": "0x7fc00000",
        })
    );
    assert_eq!(
        problems[1],
        serde_json::json!({
            "tensor": "weights.q4_0", "block": 1, "element": null, "field": "d",
            "kind": "Inf", "value": "Inf", "bits": "0x7c00",
        })
    );
    assert_eq!(v["problem_count"], 2);
}

#[test]
fn truncated_file_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let src = common::repo_root().join("tests/fixtures/all_types_le.gguf");
    let bytes = std::fs::read(&src).unwrap();
    let path = dir.path().join("truncated.gguf");
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();

    let out = verify(&path, false);
    assert_eq!(out.status.code(), Some(2));
    // An error, on standard error; nothing on standard output.
    assert_eq!(stdout(&out), "");
    let text = stderr(&out);
    assert_eq!(text.lines().count(), 1, "{text}");
    let prefix = format!("gguf-loader: {}: malformed: ", path.display());
    assert!(text.starts_with(&prefix), "{text}");
    // The path is not repeated inside the message.
    assert!(!text[prefix.len()..].contains("truncated.gguf"), "{text}");

    let out = verify(&path, true);
    assert_eq!(out.status.code(), Some(2));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json_keys(&v), KEYS);
    assert_eq!(v["structure"], "malformed");
    assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()));
    assert_eq!(v["problems"], Value::Array(vec![]));
    assert_eq!(v["tensors_checked"], 0);
    assert_eq!(v["problem_count"], 0);
    assert_eq!(v["skipped"], Value::Array(vec![]));
    assert_eq!(v["shards"], Value::Null);
    assert_eq!(stderr(&out).lines().count(), 1);
}

#[test]
fn missing_file_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("none.gguf");
    let out = verify(&path, false);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stdout(&out), "");
    assert!(stderr(&out).contains(": unreadable: "), "{}", stderr(&out));

    let out = verify(&path, true);
    assert_eq!(out.status.code(), Some(2));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json_keys(&v), KEYS);
    assert_eq!(v["structure"], "unreadable");
}

#[test]
fn big_endian_tensors_without_a_byte_order_are_skipped() {
    // Q4_0, Q8_0, Q4_K and Q6_K are checked (their scales big-endian, as
    // gguf_convert_endian.py writes them); Q4_1 has no big-endian order.
    let path = common::repo_root().join("tests/fixtures/all_types_be.gguf");
    let out = verify(&path, false);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    let skipped: Vec<&str> = text.lines().filter(|l| l.contains(": skipped: ")).collect();
    assert_eq!(skipped.len(), 1, "{text}");
    assert!(
        skipped[0].contains("Q4_1 data has no defined big-endian byte order"),
        "{text}"
    );
    assert!(text.ends_with("15 tensors in 1 shard checked, 0 problems, 1 skipped\n"));

    let out = verify(&path, true);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json_keys(&v), KEYS);
    assert_eq!(v["skipped"].as_array().unwrap().len(), 1);

    // A big-endian float NaN is still found.
    let dir = tempfile::tempdir().unwrap();
    let mut f = Vec::new();
    for x in [1.0f32, f32::NAN] {
        f.extend_from_slice(&x.to_be_bytes());
    }
    let mut w = GgufWriter::new().endianness(Endianness::Big);
    w.add_tensor("x", &[2], GgmlType::F32, f).unwrap();
    let p = dir.path().join("be.gguf");
    std::fs::write(&p, w.to_bytes().unwrap()).unwrap();
    let out = verify(&p, false);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).starts_with("x: element 1: value is NaN\n"));
}

#[test]
fn many_problems_are_counted_and_capped() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = GgufWriter::new();
    w.add_tensor("nan", &[1000], GgmlType::F32, vec![0xffu8; 4000])
        .unwrap();
    let path = dir.path().join("nan.gguf");
    std::fs::write(&path, w.to_bytes().unwrap()).unwrap();
    let out = verify(&path, false);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 17, "{text}");
    assert!(lines[16].ends_with("1000 problems (16 listed, at most 16 per tensor)"));
}

/// The real SmolLM2 model is clean; a copy with one Q4_1 `m` set to NaN is
/// reported at exactly that tensor and block.
#[test]
fn smollm2_clean_then_one_bad_scale() {
    let Some(model) = common::model_path() else {
        return;
    };
    let out = verify(&model, false);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(stdout(&out).ends_with("272 tensors in 1 shard checked, 0 problems\n"));

    let (name, at) = {
        let loader = gguf_loader::MmapGGUFLoader::new(&model).unwrap();
        let t = loader
            .tensors()
            .find(|t| t.ty == GgmlType::Q4_1 && t.n_bytes > 20 * 1000)
            .expect("a Q4_1 tensor");
        // Block 777's `m` (bytes 2..4 of the 20-byte block).
        (t.name.to_string(), t.file_offset as usize + 777 * 20 + 2)
    };
    let mut bytes = std::fs::read(&model).unwrap();
    bytes[at..at + 2].copy_from_slice(&0x7e00u16.to_le_bytes());
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("smollm2-bad.gguf");
    std::fs::write(&copy, &bytes).unwrap();
    let out = verify(&copy, false);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], format!("{name}: block 777: field m is NaN"));
    assert_eq!(lines.len(), 2, "{text}");
}
