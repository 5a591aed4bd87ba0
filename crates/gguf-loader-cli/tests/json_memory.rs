//! `inspect`'s output is streamed: writing the JSON (and the table) of a
//! file holding a 10^7-element array, a 16 MB string and 100,000 tensors
//! allocates a small constant, not a tree of the file (a 100 MB array took
//! 14.2 GB before).
//!
//! One test in this binary, under a counting allocator, so that nothing
//! else allocates meanwhile.

#[path = "../../gguf-loader/tests/common/counting.rs"]
#[allow(dead_code)]
mod counting;

use std::io::{self, Write};
use std::path::Path;

use counting::Counting;
use gguf_loader::{GgufFile, ValueType};
use gguf_loader_cli::inspect::{write_human, write_json};

#[global_allocator]
static A: Counting = Counting;

const ARRAY_LEN: u64 = 10_000_000;
const STRING_LEN: usize = 16 << 20;
const TENSORS: u64 = 100_000;

/// The most the writers may allocate at once, whatever the file holds.
const BOUND: isize = 64 << 10;

/// A GGUF file (written by hand, as GgufWriter holds values as a tree):
/// one u8 array, one string, `TENSORS` one-element F32 tensors.
fn file() -> Vec<u8> {
    let mut f = b"GGUF".to_vec();
    let put_str = |f: &mut Vec<u8>, s: &[u8]| {
        f.extend_from_slice(&(s.len() as u64).to_le_bytes());
        f.extend_from_slice(s);
    };
    f.extend_from_slice(&3u32.to_le_bytes());
    f.extend_from_slice(&TENSORS.to_le_bytes());
    f.extend_from_slice(&2u64.to_le_bytes());
    put_str(&mut f, b"big.array");
    f.extend_from_slice(&(ValueType::Array as u32).to_le_bytes());
    f.extend_from_slice(&(ValueType::U8 as u32).to_le_bytes());
    f.extend_from_slice(&ARRAY_LEN.to_le_bytes());
    f.extend((0..ARRAY_LEN).map(|i| i as u8));
    put_str(&mut f, b"big.string");
    f.extend_from_slice(&(ValueType::String as u32).to_le_bytes());
    // Invalid UTF-8 too, which is replaced as it is written.
    let mut s = vec![b'a'; STRING_LEN];
    s[1000] = 0xff;
    put_str(&mut f, &s);
    for i in 0..TENSORS {
        put_str(&mut f, format!("t{i}").as_bytes());
        f.extend_from_slice(&1u32.to_le_bytes());
        f.extend_from_slice(&1u64.to_le_bytes());
        f.extend_from_slice(&0u32.to_le_bytes());
        f.extend_from_slice(&(i * 32).to_le_bytes());
    }
    f.resize(f.len().next_multiple_of(32), 0);
    f.resize(f.len() + (TENSORS * 32) as usize, 0);
    f
}

/// Counts the bytes written, keeping none.
struct Count(u64);

impl Write for Count {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn json_and_table_use_bounded_memory() {
    let bytes = file();
    let file = GgufFile::parse(&bytes).unwrap();
    let tensors = || file.tensors().iter();

    let before = counting::reset_peak();
    let mut out = Count(0);
    write_json(&mut out, &file, tensors).unwrap();
    let json_peak = counting::peak() - before;
    // Every array element and every tensor was written.
    assert!(
        out.0 > ARRAY_LEN * 2 + STRING_LEN as u64 + TENSORS * 60,
        "{}",
        out.0
    );

    let before = counting::reset_peak();
    let mut out = Count(0);
    write_human(&mut out, Path::new("f.gguf"), 1, &file, tensors).unwrap();
    let table_peak = counting::peak() - before;
    assert!(out.0 > TENSORS * 40, "{}", out.0);

    assert!(
        json_peak < BOUND && table_peak < BOUND,
        "peak heap while writing: JSON {json_peak} bytes, table {table_peak} bytes"
    );
    drop(bytes);
}
