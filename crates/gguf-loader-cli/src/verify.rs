//! `gguf-loader verify`: the structure check (every parser check, every shard)
//! and a scan of the tensor data for NaN and infinite values and scales, like
//! llama.cpp's `--check-tensors`.
//!
//! Exit status: 0 clean, 1 data problems, 2 malformed or unreadable file.

use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;

use gguf_loader::{check_model_report, DataProblem, ModelReport};
use gguf_loader::{Error, MmapGGUFLoader};
use serde_json::{json, Value as Json};

/// Problems listed per tensor (all are counted).
const MAX_PER_TENSOR: usize = 16;

pub fn run(path: &Path, as_json: bool) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let mut out = io::BufWriter::new(io::stdout().lock());
    let file = path.display().to_string();
    let loader = match MmapGGUFLoader::new(path) {
        Ok(l) => l,
        Err(e) => {
            let (structure, message) = describe(path, &e);
            if as_json {
                let obj = json!({
                    "file": file,
                    "shards": Json::Null,
                    "tensors_checked": 0,
                    "structure": structure,
                    "error": message,
                    "problems": [],
                });
                serde_json::to_writer(&mut out, &obj)?;
                writeln!(out)?;
            } else {
                writeln!(out, "{file}: {structure}: {message}")?;
            }
            out.flush()?;
            return Ok(ExitCode::from(2));
        }
    };
    let report = check_model_report(&loader, MAX_PER_TENSOR);
    if as_json {
        serde_json::to_writer(&mut out, &to_json(&file, &report))?;
        writeln!(out)?;
    } else {
        for p in &report.problems {
            writeln!(out, "{p}")?;
        }
        for s in &report.skipped {
            writeln!(out, "{}: skipped: {} {}", s.tensor, s.ty, s.reason)?;
        }
        let listed = report.problems.len() as u64;
        let mut summary = format!(
            "{file}: {} tensors in {} shard(s) checked, {} problems",
            report.tensors_checked, report.shards, report.problem_count
        );
        if listed < report.problem_count {
            summary += &format!(" ({listed} listed, at most {MAX_PER_TENSOR} per tensor)");
        }
        if !report.skipped.is_empty() {
            summary += &format!(", {} skipped", report.skipped.len());
        }
        writeln!(out, "{summary}")?;
    }
    out.flush()?;
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `("malformed", why)` for a file that fails a structure check, or
/// `("unreadable", why)` when it cannot be opened or mapped. The message
/// leaves out the path when it is the file's own.
fn describe(path: &Path, e: &Error) -> (&'static str, String) {
    match e {
        Error::Io { path: p, error } if p == path => ("unreadable", error.to_string()),
        Error::Io { .. } => ("unreadable", e.to_string()),
        Error::Format { path: p, error } if p == path => ("malformed", error.to_string()),
        _ => ("malformed", e.to_string()),
    }
}

fn problem_json(p: &DataProblem) -> Json {
    json!({
        "tensor": p.tensor,
        "block": p.block,
        "field": p.field,
        "kind": p.kind.name(),
        "value": p.value_name(),
        "bits": format!("{:#x}", p.bits),
    })
}

fn to_json(file: &str, r: &ModelReport) -> Json {
    json!({
        "file": file,
        "shards": r.shards,
        "tensors_checked": r.tensors_checked,
        "structure": "ok",
        "error": Json::Null,
        "problems": r.problems.iter().map(problem_json).collect::<Vec<_>>(),
        "problem_count": r.problem_count,
        "skipped": r.skipped.iter().map(|s| json!({
            "tensor": s.tensor,
            "type": s.ty.name(),
            "reason": s.reason,
        })).collect::<Vec<_>>(),
    })
}
