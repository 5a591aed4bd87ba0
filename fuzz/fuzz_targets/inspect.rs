//! Renders arbitrary parsed files as `gguf-loader inspect` does: the table
//! must stay inert and short (no control character, every line bounded
//! whatever the names and values hold), and the JSON must parse back with
//! every tensor in it.
#![no_main]

use std::path::Path;

use gguf_loader::GgufFile;
use gguf_loader_cli::inspect::{write_human, write_json};
use libfuzzer_sys::fuzz_target;

/// The longest line the table may hold: index, clipped key, array type,
/// clipped value with its length, or a tensor row with four `ne` values.
const MAX_LINE: usize = 400;

fuzz_target!(|data: &[u8]| {
    let Ok(file) = GgufFile::parse(data) else {
        return;
    };
    let tensors = || file.tensors().iter();

    let mut table = Vec::new();
    write_human(&mut table, Path::new("fuzz.gguf"), 1, &file, tensors).unwrap();
    let text = std::str::from_utf8(&table).expect("the table is UTF-8");
    for line in text.lines() {
        assert!(
            !line.chars().any(char::is_control),
            "control character in {line:?}"
        );
        assert!(line.chars().count() <= MAX_LINE, "long line {line:?}");
    }

    let mut json = Vec::new();
    write_json(&mut json, &file, tensors).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&json).expect("the JSON parses");
    assert_eq!(
        v["tensors"].as_array().map(Vec::len),
        Some(file.tensors().len())
    );
    assert_eq!(
        v["metadata"].as_object().map(|m| m.len()),
        Some(file.metadata.len())
    );
});
