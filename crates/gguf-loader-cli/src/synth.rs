//! `gguf-loader synth`: a model with real shapes and random weights.

use std::path::Path;

use gguf_loader::{synthesize, GgmlType, Preset};

pub fn run(
    preset_name: &str,
    ty: &str,
    output: &Path,
    seed: u64,
) -> Result<(), Box<dyn std::error::Error>> {
    let p = Preset::by_name(preset_name).ok_or_else(|| {
        let names: Vec<_> = Preset::ALL.iter().map(|p| p.name).collect();
        format!(
            "unknown preset '{preset_name}' (known: {})",
            names.join(", ")
        )
    })?;
    let ty = GgmlType::from_name(ty).ok_or_else(|| format!("unknown tensor type '{ty}'"))?;
    let w = synthesize(&p, ty, seed)?;
    let mut out = std::io::BufWriter::new(std::fs::File::create(output)?);
    w.write_to(&mut out)?;
    std::io::Write::flush(&mut out)?;
    Ok(())
}
