//! Files made to hurt the output: 65,536-byte names, 100,000 keys, huge
//! string values, nested arrays, terminal escape sequences. The table stays
//! short and inert; the JSON stays whole.

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;

use gguf_loader::{GgmlType, GgufWriter, MetaValue, ValueType};
use serde_json::Value;
use support::{cli, output_capped};

/// The longest line `inspect` may print: index, a clipped key, the type and
/// a clipped value, with their padding.
const MAX_LINE: usize = 8 + 48 + 2 + 32 + 3 + 200 + 32;

fn write(dir: &Path, name: &str, w: &GgufWriter<'_>) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, w.to_bytes().unwrap()).unwrap();
    path
}

fn run(args: &[&str], path: &Path) -> Output {
    cli()
        .arg(args[0])
        .arg(path)
        .args(&args[1..])
        .output()
        .unwrap()
}

/// Asserts a successful `inspect` whose every line is at most `MAX_LINE`
/// characters and holds no control character; returns its text.
fn inspect_table(path: &Path) -> String {
    let out = output_capped(cli().arg("inspect").arg(path), 64 << 20);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    for line in text.lines() {
        assert!(line.chars().count() <= MAX_LINE, "long line: {line:.300}");
        assert!(!line.chars().any(char::is_control), "control: {line:?}");
    }
    text
}

fn inspect_json(path: &Path) -> Value {
    let out = run(&["inspect", "--json"], path);
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn names_of_65536_bytes_are_clipped_in_the_table_and_whole_in_json() {
    let dir = tempfile::tempdir().unwrap();
    let long_key = "k".repeat(65_536);
    let long_name = "t".repeat(65_536);
    let mut w = GgufWriter::new();
    w.add(long_key.clone(), MetaValue::U32(7));
    w.add("short", MetaValue::U32(8));
    w.add_tensor(long_name.clone(), &[2], GgmlType::F32, vec![0u8; 8])
        .unwrap();
    w.add_tensor("w", &[2], GgmlType::F32, vec![0u8; 8])
        .unwrap();
    let path = write(dir.path(), "long.gguf", &w);

    let text = inspect_table(&path);
    assert!(text.contains(&format!("{}… ", "k".repeat(47))), "{text}");
    assert!(text.contains(&format!("{}… ", "t".repeat(47))), "{text}");

    let v = inspect_json(&path);
    assert_eq!(v["metadata"][&long_key], 7);
    assert_eq!(v["tensors"][0]["name"], long_name.as_str());
}

/// A 65,535-byte key among 100,000 short ones: rows are padded to the
/// clipped width, not to the longest key (6.56 GB of output before).
#[test]
fn many_keys_and_one_long_one_stay_small() {
    let dir = tempfile::tempdir().unwrap();
    // Written by hand: GgufWriter::add looks for a duplicate key each time.
    let keys: Vec<String> = std::iter::once("x".repeat(65_535))
        .chain((0..100_000).map(|i| format!("k{i}")))
        .collect();
    let mut f = b"GGUF".to_vec();
    f.extend_from_slice(&3u32.to_le_bytes());
    f.extend_from_slice(&0u64.to_le_bytes());
    f.extend_from_slice(&(keys.len() as u64).to_le_bytes());
    for k in &keys {
        f.extend_from_slice(&(k.len() as u64).to_le_bytes());
        f.extend_from_slice(k.as_bytes());
        f.extend_from_slice(&(ValueType::U8 as u32).to_le_bytes());
        f.push(0);
    }
    let path = dir.path().join("keys.gguf");
    std::fs::write(&path, f).unwrap();
    let text = inspect_table(&path);
    assert_eq!(text.lines().filter(|l| l.contains(" = ")).count(), 100_001);
    assert!(text.len() < 100_001 * 90, "{} bytes", text.len());
}

/// A 16 MB string value is shown clipped, with its length; the JSON holds
/// it whole.
#[test]
fn long_values_are_shortened_in_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let big = "v".repeat(16 << 20);
    let mut w = GgufWriter::new();
    w.add("big", MetaValue::String(big.clone()));
    let elems: Vec<MetaValue> = (0..20)
        .map(|i| MetaValue::String(format!("{i}{}", "e".repeat(1000))))
        .collect();
    w.add("array", MetaValue::Array(ValueType::String, elems));
    // Nested arrays, 8 wide and 5 deep: 32,768 leaves, on one short line.
    let mut nested = MetaValue::U8(1);
    for depth in 0..5 {
        let ty = if depth == 0 {
            ValueType::U8
        } else {
            ValueType::Array
        };
        nested = MetaValue::Array(ty, vec![nested; 8]);
    }
    w.add("nested", nested);
    let path = write(dir.path(), "values.gguf", &w);

    let text = inspect_table(&path);
    let line = |key: &str| {
        text.lines()
            .find(|l| l.contains(&format!(": {key} ")))
            .unwrap()
            .to_string()
    };
    assert!(
        line("big").ends_with(&format!("…\" ({} bytes)", 16 << 20)),
        "{}",
        line("big")
    );
    assert!(line("array").contains("eee…\""), "{}", line("array"));
    assert!(
        line("nested").starts_with("     3: nested"),
        "{}",
        line("nested")
    );

    let v = inspect_json(&path);
    assert_eq!(v["metadata"]["big"].as_str().unwrap().len(), 16 << 20);
    assert_eq!(v["metadata"]["array"][19].as_str().unwrap().len(), 1002);
    assert_eq!(v["metadata"]["nested"][7][7][7][7][7], 1);
}

/// Keys, values and tensor names holding ESC sequences (set the window
/// title, colour the text) and other control characters reach the terminal
/// escaped, from `inspect`, `verify` and error lines alike.
#[test]
fn terminal_escapes_are_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let title = "\u{1b}]0;TITLE\u{7}";
    let red = "\u{1b}[31mred";
    let mut w = GgufWriter::new();
    w.add(
        format!("key{title}"),
        MetaValue::String(format!("value{red}\n")),
    );
    w.add(
        "csi\u{9b}31m",
        MetaValue::Array(ValueType::String, vec![MetaValue::String(red.into())]),
    );
    let mut nan = vec![0u8; 8];
    nan[..4].copy_from_slice(&f32::NAN.to_le_bytes());
    w.add_tensor(format!("tensor{red}"), &[2], GgmlType::F32, nan)
        .unwrap();
    let path = write(dir.path(), "esc.gguf", &w);

    let text = inspect_table(&path);
    assert!(text.contains("key\\u{1b}]0;TITLE\\u{7}"), "{text}");
    assert!(text.contains("\"value\\u{1b}[31mred\\n\""), "{text}");
    assert!(text.contains("csi\\u{9b}31m"), "{text}");
    assert!(text.contains("tensor\\u{1b}[31mred"), "{text}");

    // JSON escapes by itself, and keeps the text.
    let v = inspect_json(&path);
    assert_eq!(v["tensors"][0]["name"], format!("tensor{red}"));

    // verify names the tensor with a NaN.
    let out = run(&["verify"], &path);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        !text.chars().any(|c| c.is_control() && c != '\n'),
        "{text:?}"
    );
    assert!(
        text.starts_with("tensor\\u{1b}[31mred: element 0"),
        "{text}"
    );

    // An error line naming a key with an ESC (a bool that is 2), in a file
    // whose own name holds one.
    let mut w = GgufWriter::new();
    w.add(format!("flag{red}"), MetaValue::Bool(true));
    let mut bytes = w.to_bytes().unwrap();
    let at = bytes.iter().rposition(|b| *b == 1).unwrap();
    bytes[at] = 2;
    // (Windows takes no control character in a file name.)
    let bad = dir
        .path()
        .join(format!("bad{}.gguf", if cfg!(unix) { title } else { "" }));
    std::fs::write(&bad, bytes).unwrap();
    for args in [&["inspect"][..], &["verify"], &["load"], &["bench"]] {
        let out = run(args, &bad);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(!err.trim_end().chars().any(char::is_control), "{err:?}");
        assert!(err.contains("flag\\u{1b}[31mred"), "{args:?}: {err}");
        assert!(
            !cfg!(unix) || err.contains("bad\\u{1b}]0;TITLE\\u{7}.gguf"),
            "{args:?}: {err}"
        );
    }
}
