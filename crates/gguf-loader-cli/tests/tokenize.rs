//! `gguf-loader tokenize`: the ids llama.cpp gives (tests/golden/
//! llama_cpp_tokens.json) for both real models, with and without
//! --add-special / --parse-special; --json pieces; refusals as one line.

#[path = "../../gguf-loader/tests/common/mod.rs"]
mod common;
mod support;

use std::path::Path;
use std::process::Output;

fn tokenize(model: &Path, input: &[u8], flags: &[&str]) -> Output {
    let mut cmd = support::cli();
    cmd.arg("tokenize").arg(model).args(flags);
    support::output_with_stdin(&mut cmd, input)
}

fn check(name: &str, model: &Path) {
    let golden: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(common::repo_root().join("tests/golden/llama_cpp_tokens.json"))
            .unwrap(),
    )
    .unwrap();
    // A few cases per flag combination keep the process count small.
    for c in golden["models"][name]["cases"]
        .as_array()
        .unwrap()
        .iter()
        .step_by(7)
    {
        let mut flags = Vec::new();
        if c["add_special"].as_bool().unwrap() {
            flags.push("--add-special");
        }
        if c["parse_special"].as_bool().unwrap() {
            flags.push("--parse-special");
        }
        let text = c["text"].as_str().unwrap();
        let out = tokenize(model, text.as_bytes(), &flags);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let want: Vec<String> = c["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.to_string())
            .collect();
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            format!("{}\n", want.join(" ")),
            "{name} {text:?} {flags:?}"
        );
    }
}

#[test]
fn smollm2_ids_match_llama_cpp() {
    if let Some(m) = common::model_path() {
        check("smollm2", &m);
    }
}

#[test]
fn gemma3_ids_match_llama_cpp() {
    if let Some(m) = common::gemma_path() {
        check("gemma3", &m);
    }
}

#[test]
fn json_pieces_and_bytes() {
    let Some(m) = common::gemma_path() else {
        return;
    };
    let out = tokenize(&m, "Hi 🦙".as_bytes(), &["--add-special", "--json"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let items = v.as_array().unwrap();
    assert_eq!(items[0]["piece"], "<bos>");
    // The llama is four byte tokens: each piece carries its byte.
    let bytes: Vec<u64> = items
        .iter()
        .filter_map(|i| i.get("bytes"))
        .flat_map(|b| b.as_array().unwrap().iter().map(|x| x.as_u64().unwrap()))
        .collect();
    assert_eq!(bytes, [0xF0, 0x9F, 0xA6, 0x99]);
}

#[test]
fn refusals_are_one_line() {
    let Some(m) = common::model_path() else {
        return;
    };
    let out = tokenize(&m, b"\xff", &[]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "gguf-loader: standard input is not UTF-8 (at byte offset 0)\n"
    );
    let dir = std::env::temp_dir();
    let out = tokenize(&dir, b"hi", &[]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(String::from_utf8(out.stderr).unwrap().lines().count(), 1);
    // Empty input: an empty line.
    let out = tokenize(&m, b"", &[]);
    assert!(out.status.success());
    assert_eq!(out.stdout, b"\n");
    // Input past 256 MiB (endless input, such as /dev/zero) is refused
    // instead of filling the memory.
    let out = tokenize(&m, &vec![b'a'; (256 << 20) + 1], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "gguf-loader: standard input is longer than 256 MiB, the most text taken at once\n"
    );
    assert!(out.stdout.is_empty());
}
