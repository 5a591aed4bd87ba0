//! Opening a file allocates a bounded multiple of its size, whatever the file
//! claims: a counting allocator measures the peak heap during `GgufFile::parse`
//! and `MmapGGUFLoader::open` (mapped and read) of every malformed corpus file
//! and every fixture. And no recursion depth is driven by the file: metadata
//! nesting is capped, so even 200,000 levels parse on a small stack.
//! (One test in its own binary, so no other test allocates meanwhile.)

mod common;

use common::counting::{peak, reset_peak, Counting};
mod corpus_cases;

use gguf_loader::MAX_ARRAY_NESTING;
use gguf_loader::{FormatErrorKind, GgufFile, Value};
use gguf_loader::{LoadMode, MmapGGUFLoader};

#[global_allocator]
static A: Counting = Counting;

/// Peak heap growth while `f` runs, in bytes.
fn peak_during(f: impl FnOnce()) -> u64 {
    let before = reset_peak();
    f();
    (peak() - before).max(0) as u64
}

const FACTOR: u64 = 4;
const SLACK: u64 = 64 * 1024;

/// Walks a value fully (recursing into nested arrays).
fn walk(v: &Value<'_>) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(|e| walk(&e)).sum::<usize>(),
        Value::String(s) => s.as_bytes().len(),
        _ => 1,
    }
}

#[test]
fn opening_allocates_a_bounded_multiple_of_the_file() {
    let mut files: Vec<(String, Vec<u8>)> = corpus_cases::cases()
        .into_iter()
        .map(|c| (format!("corpus/{}", c.name), c.bytes))
        .collect();
    for dir in ["tests/fixtures", "tests/corpus"] {
        let mut paths: Vec<_> = std::fs::read_dir(common::repo_root().join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "gguf"))
            .collect();
        paths.sort();
        for p in paths {
            let name = format!("{dir}/{}", p.file_name().unwrap().to_string_lossy());
            files.push((name, std::fs::read(&p).unwrap()));
        }
    }
    // A valid file at the nesting limit, and a model-sized one.
    files.push((
        "nested_at_limit".into(),
        corpus_cases::nested(MAX_ARRAY_NESTING - 1),
    ));
    let synth = gguf_loader::synthesize(
        &gguf_loader::Preset::TINY_TEST,
        gguf_loader::GgmlType::Q4_K,
        1,
    )
    .unwrap()
    .to_bytes()
    .unwrap();
    files.push(("synth_tiny_q4_k".into(), synth));

    let dir = tempfile::tempdir().unwrap();
    // Warm up lazily allocated process state (the first file open, the
    // first error formatting) outside the measurements.
    let warm = dir.path().join("warm.gguf");
    std::fs::write(&warm, b"GGUF").unwrap();
    let _ = MmapGGUFLoader::open(&warm, LoadMode::Read);
    let _ = MmapGGUFLoader::open(&warm, LoadMode::Mmap);

    let mut worst = (0f64, String::new());
    let mut worst_abs = (0u64, String::new());
    println!(
        "{:<44} {:>9} {:>9} {:>9} {:>9}",
        "file", "bytes", "parse", "mmap", "read"
    );
    for (i, (name, bytes)) in files.iter().enumerate() {
        let size = bytes.len() as u64;
        let path = dir.path().join(format!("f{i}.gguf"));
        std::fs::write(&path, bytes).unwrap();
        let parse = peak_during(|| {
            if let Ok(f) = GgufFile::parse(bytes) {
                for (_, v) in f.metadata.iter() {
                    std::hint::black_box(walk(v));
                }
            }
        });
        let mut peaks = vec![parse];
        for mode in [LoadMode::Mmap, LoadMode::Read] {
            peaks.push(peak_during(|| {
                drop(std::hint::black_box(MmapGGUFLoader::open(&path, mode)));
            }));
        }
        println!(
            "{name:<44} {size:>9} {:>9} {:>9} {:>9}",
            peaks[0], peaks[1], peaks[2]
        );
        for p in peaks {
            assert!(
                p <= FACTOR * size + SLACK,
                "{name}: peak {p} bytes for a {size}-byte file"
            );
            if size >= 4096 {
                let r = p as f64 / size as f64;
                if r > worst.0 {
                    worst = (r, name.clone());
                }
            }
            if p > worst_abs.0 {
                worst_abs = (p, name.clone());
            }
        }
    }
    println!(
        "worst ratio (files >= 4 KiB): {:.3} ({}); largest peak {} bytes ({})",
        worst.0, worst.1, worst_abs.0, worst_abs.1
    );

    // No recursion depth follows the file: nesting is rejected at a fixed
    // depth, so 200,000 levels parse on a 256 KiB stack (2 MiB unoptimized,
    // whose frames are larger; 200,000 levels would overflow either), and a
    // value at the limit walks on it too.
    let stack = if cfg!(debug_assertions) {
        2 << 20
    } else {
        256 << 10
    };
    std::thread::Builder::new()
        .stack_size(stack)
        .spawn(|| {
            let deep = corpus_cases::nested(200_000);
            let e = GgufFile::parse(&deep).unwrap_err();
            assert_eq!(e.kind, FormatErrorKind::NestingTooDeep(MAX_ARRAY_NESTING));
            let limit = corpus_cases::nested(MAX_ARRAY_NESTING - 1);
            let f = GgufFile::parse(&limit).unwrap();
            let (_, v) = f.metadata.iter().next().unwrap();
            assert_eq!(walk(v), MAX_ARRAY_NESTING);
            let over = corpus_cases::nested(MAX_ARRAY_NESTING);
            assert!(GgufFile::parse(&over).is_err());
        })
        .unwrap()
        .join()
        .unwrap();
}
