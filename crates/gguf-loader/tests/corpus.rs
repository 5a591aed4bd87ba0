//! The malformed-file corpus: every class of defect gives its own error and
//! no panic, and the copies committed under `tests/corpus/` stay in step
//! with the builders (regenerate them with `GGUF_LOADER_WRITE_CORPUS=1
//! cargo test --test corpus`). Every prefix of every fixture is rejected
//! unless it holds the whole file up to the end of the last tensor.

mod common;
mod corpus_cases;

use std::collections::BTreeMap;
use std::path::PathBuf;

use corpus_cases::cases;
use gguf_loader::{FormatErrorKind as K, GgufFile};

fn corpus_dir() -> PathBuf {
    common::repo_root().join("tests/corpus")
}

#[test]
fn every_class_gives_its_error() {
    for c in cases() {
        let r = std::panic::catch_unwind(|| GgufFile::parse(&c.bytes).map(|_| ()));
        let e = match r {
            Ok(Ok(())) => panic!("{}: accepted", c.name),
            Ok(Err(e)) => e,
            Err(_) => panic!("{}: panicked", c.name),
        };
        assert!((c.expect)(&e.kind), "{}: unexpected error {e}", c.name);
        assert!(e.offset <= c.bytes.len() as u64, "{}: offset {e}", c.name);
    }
}

/// Writes the committed copies when `GGUF_LOADER_WRITE_CORPUS=1`.
fn write_corpus_if_asked() {
    if std::env::var("GGUF_LOADER_WRITE_CORPUS").as_deref() != Ok("1") {
        return;
    }
    let dir = corpus_dir();
    std::fs::create_dir_all(&dir).unwrap();
    for old in std::fs::read_dir(&dir).unwrap() {
        let p = old.unwrap().path();
        if p.extension().is_some_and(|e| e == "gguf") {
            std::fs::remove_file(p).unwrap();
        }
    }
    for c in cases().into_iter().filter(|c| c.committed) {
        std::fs::write(dir.join(format!("{}.gguf", c.name)), &c.bytes).unwrap();
    }
}

#[test]
fn committed_corpus_files_give_their_errors() {
    write_corpus_if_asked();
    let table: BTreeMap<_, _> = cases()
        .into_iter()
        .filter(|c| c.committed)
        .map(|c| (c.name.to_string(), c))
        .collect();
    let mut seen = 0;
    for entry in std::fs::read_dir(corpus_dir()).expect("tests/corpus") {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "gguf") {
            continue;
        }
        let name = path.file_stem().unwrap().to_str().unwrap().to_string();
        let c = table
            .get(&name)
            .unwrap_or_else(|| panic!("{name}.gguf is not in the table"));
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(
            bytes, c.bytes,
            "{name}.gguf is stale: regenerate with GGUF_LOADER_WRITE_CORPUS=1"
        );
        let e = GgufFile::parse(&bytes).expect_err(&name);
        assert!((c.expect)(&e.kind), "{name}: unexpected error {e}");
        // The loader gives the same error through a mapping or a read.
        for mode in [gguf_loader::LoadMode::Mmap, gguf_loader::LoadMode::Read] {
            match gguf_loader::MmapGGUFLoader::open(&path, mode) {
                Err(gguf_loader::Error::Format { error, .. }) => {
                    assert_eq!(*error, e, "{name} via {mode:?}")
                }
                Err(other) => panic!("{name} via {mode:?}: {other}"),
                Ok(_) => panic!("{name} via {mode:?}: accepted"),
            }
        }
        seen += 1;
    }
    assert_eq!(seen, table.len(), "committed files missing");
}

#[test]
fn every_prefix_of_every_fixture_is_rejected() {
    let dir = common::repo_root().join("tests/fixtures");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "gguf"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty());
    for path in paths {
        let bytes = std::fs::read(&path).unwrap();
        let whole = GgufFile::parse(&bytes).expect("fixture is valid");
        // The header, then the data up to the end of the last tensor; the
        // padding after it is optional.
        let need = whole
            .tensors()
            .iter()
            .map(|t| t.file_offset + t.n_bytes)
            .max()
            .unwrap_or(0) as usize;
        for n in 0..bytes.len() {
            match GgufFile::parse(&bytes[..n]) {
                Ok(f) => {
                    assert!(n >= need, "{path:?}: prefix of {n} accepted");
                    assert_eq!(f.tensors().len(), whole.tensors().len());
                    assert_eq!(f.metadata.len(), whole.metadata.len());
                }
                Err(e) => {
                    assert!(
                        n < need || whole.tensors().is_empty(),
                        "{path:?}: prefix of {n} rejected: {e}"
                    );
                    assert!(
                        matches!(
                            e.kind,
                            K::Truncated { .. } | K::CountTooLarge { .. } | K::DataPastEnd { .. }
                        ),
                        "{path:?}: prefix of {n}: {e}"
                    );
                }
            }
        }
    }
}
