//! The peer of `gguf-loader load --dtype f16`: candle-core reads a GGUF file
//! and dequantizes every tensor to f16 on the CPU. Whole process timed by
//! `scripts/bench_load_peers.py`.

use std::fs::File;
use std::io::BufReader;

use candle_core::quantized::gguf_file::Content;
use candle_core::Device;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: candle_load_f16 FILE")?;
    let mut reader = BufReader::new(File::open(&path)?);
    let content = Content::read(&mut reader)?;
    let mut elements = 0usize;
    let mut tensors = Vec::with_capacity(content.tensor_infos.len());
    for name in content.tensor_infos.keys() {
        let q = content.tensor(&mut reader, name, &Device::Cpu)?;
        let t = q.dequantize_f16(&Device::Cpu)?;
        elements += t.elem_count();
        tensors.push(t);
    }
    println!("{} tensors, {elements} elements", tensors.len());
    Ok(())
}
