//! `gguf-loader synth`: a model with real shapes and random weights.

use std::io::{self, Write};
use std::path::Path;

use gguf_loader::{write_synthetic, GgmlType, Preset};

use crate::output::Output;
use gguf_loader_cli::CliError;

/// Writes the model to `output` through [`Output`] (a temporary file renamed
/// into place) and prints a one-line summary. Errs on an unknown preset or
/// type, an output named `.safetensors`, an output that cannot be written or
/// exists without `force`, and a failed write, naming the output.
pub fn run(
    preset_name: &str,
    ty: &str,
    output: &Path,
    seed: u64,
    force: bool,
) -> Result<(), CliError> {
    let p = Preset::by_name(preset_name).ok_or_else(|| {
        let names: Vec<_> = Preset::ALL.iter().map(|p| p.name).collect();
        format!(
            "unknown preset '{preset_name}' (known: {})",
            names.join(", ")
        )
    })?;
    let ty = GgmlType::from_name(ty).ok_or_else(|| {
        let names: Vec<_> = (0..=u8::MAX as u32)
            .filter_map(GgmlType::from_id)
            .map(|t| t.name().to_ascii_lowercase())
            .collect();
        format!("unknown tensor type '{ty}' (known: {})", names.join(", "))
    })?;
    // The model is a GGUF: a name that says safetensors would mislead.
    let ext = output.extension().and_then(|e| e.to_str());
    if ext.is_some_and(|e| e.eq_ignore_ascii_case("safetensors")) {
        return Err(format!(
            "{}: synth writes a GGUF; name the output .gguf (convert makes safetensors)",
            output.display()
        )
        .into());
    }
    // Before the (long) synthesis: an output that cannot be written shows now.
    let mut out = Output::create(output, &[], force)?;
    // One tensor in memory at a time, straight into the file.
    write_synthetic(&p, ty, seed, &mut out).map_err(|e| out.error(format!("cannot write: {e}")))?;
    let bytes = out.commit()?;
    writeln!(
        io::stdout().lock(),
        "wrote {}: {} with {ty} weights, seed {seed}, {bytes} bytes",
        gguf_loader::Escaped(&output.display().to_string()),
        p.name
    )
    .map_err(CliError::stdout)?;
    Ok(())
}
