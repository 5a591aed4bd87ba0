//! Parses arbitrary bytes as a GGUF file; on success touches every metadata
//! value (arrays fully, nested ones too, and every string), every tensor's
//! data, and runs the data check on each tensor.
#![no_main]

use std::hint::black_box;

use gguf_loader::check_tensor_data;
use gguf_loader::{GgufFile, Value};
use libfuzzer_sys::fuzz_target;

fn touch(v: &Value<'_>, depth: usize) -> u64 {
    // Nesting is capped at parse time; this guards the harness itself.
    assert!(depth <= 64, "array nesting {depth} passed the parser");
    match v {
        Value::String(s) => {
            let _ = black_box(s.to_str());
            s.as_bytes().iter().map(|b| u64::from(*b)).sum()
        }
        Value::Array(a) => {
            let mut n = 0u64;
            let mut sum = 0u64;
            for e in a.iter() {
                assert_eq!(e.value_type(), a.elem_type());
                sum = sum.wrapping_add(touch(&e, depth + 1));
                n += 1;
            }
            assert_eq!(n, a.len(), "array iterated short");
            let strings = a.strings().count() as u64;
            if a.elem_type() == gguf_loader::ValueType::String {
                assert_eq!(strings, a.len());
            }
            sum
        }
        other => {
            let _ = black_box((other.as_u64(), other.as_i64(), other.as_f64()));
            1
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(file) = GgufFile::parse(data) else {
        return;
    };
    for (k, v) in file.metadata.iter() {
        black_box(k.len());
        black_box(touch(v, 0));
        assert!(file.metadata.get(k).is_some());
    }
    for t in file.tensors() {
        let bytes = file.tensor_data(t).expect("a parsed tensor's data");
        assert_eq!(bytes.len() as u64, t.n_bytes);
        assert!(std::ptr::eq(file.tensor(t.name).unwrap(), t));
        black_box(bytes.iter().fold(0u8, |a, b| a ^ b));
        black_box(check_tensor_data(t.name, t.ty, bytes, 8));
    }
});
