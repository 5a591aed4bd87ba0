//! `gguf-loader verify`: the structure check (every parser check, every
//! shard) and a scan of the tensor data for NaN and infinite values and
//! scales, like llama.cpp's `--check-tensors`.
//!
//! Findings go to standard output, one line each and a summary; a file that
//! cannot be opened or is malformed is an error, on standard error. The
//! JSON report has the same keys in every outcome.
//!
//! Exit status: 0 clean, 1 data problems, 2 malformed or unreadable file.

use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;

use gguf_loader::{check_model_report, DataProblem, ModelReport, SkippedTensor};
use gguf_loader::{Error, Escaped, MmapGGUFLoader};
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

use crate::json::Seq;
use crate::text::count;
use crate::CliError;

/// Problems listed per tensor (all are counted).
pub const MAX_PER_TENSOR: usize = 16;

/// Checks `path` and writes the findings (or the JSON report) to standard
/// output. Returns exit status 0 when clean, 1 when the data has problems,
/// 2 when the file is malformed or unreadable (then also said on standard
/// error). Errs only when standard output cannot be written.
pub fn run(path: &Path, as_json: bool) -> Result<ExitCode, CliError> {
    let mut out = io::BufWriter::new(io::stdout().lock());
    let file = path.display().to_string();
    let opened = MmapGGUFLoader::new(path);
    let code = match &opened {
        Err(e) => {
            let (structure, message) = describe(path, e);
            crate::warn(format_args!("{file}: {structure}: {message}"));
            if as_json {
                let report = Report {
                    file: &file,
                    structure,
                    error: Some(&message),
                    found: None,
                };
                crate::json::write_line(&mut out, &report).map_err(CliError::stdout)?;
            }
            ExitCode::from(2)
        }
        Ok(loader) => {
            let found = check_model_report(loader, MAX_PER_TENSOR);
            if as_json {
                let report = Report {
                    file: &file,
                    structure: "ok",
                    error: None,
                    found: Some(&found),
                };
                crate::json::write_line(&mut out, &report)
            } else {
                write_human(&mut out, &file, &found)
            }
            .map_err(CliError::stdout)?;
            if found.is_clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
    };
    out.flush().map_err(CliError::stdout)?;
    Ok(code)
}

/// One line per problem and per skipped tensor (names escaped), then
/// `FILE: N tensors in M shards checked, K problems`.
fn write_human(out: &mut impl Write, file: &str, r: &ModelReport) -> io::Result<()> {
    for p in &r.problems {
        writeln!(out, "{}", Escaped(&p.to_string()))?;
    }
    for s in &r.skipped {
        writeln!(
            out,
            "{}: skipped: {} {}",
            Escaped(&s.tensor),
            s.ty,
            s.reason
        )?;
    }
    let listed = r.problems.len() as u64;
    write!(
        out,
        "{}: {} in {} checked, {}",
        Escaped(file),
        count(r.tensors_checked as u64, "tensor"),
        count(r.shards as u64, "shard"),
        count(r.problem_count, "problem")
    )?;
    if listed < r.problem_count {
        write!(
            out,
            " ({listed} listed, at most {MAX_PER_TENSOR} per tensor)"
        )?;
    }
    if !r.skipped.is_empty() {
        write!(out, ", {} skipped", r.skipped.len())?;
    }
    writeln!(out)
}

/// `("malformed", why)` for a file that fails a structure check, or
/// `("unreadable", why)` when it cannot be opened or mapped. The message
/// leaves out the path when it is the file's own.
fn describe(path: &Path, e: &Error) -> (&'static str, String) {
    match e {
        Error::Io { path: p, error } if p == path => ("unreadable", error.to_string()),
        Error::NotAFile { path: p, what } if p == path => {
            ("unreadable", format!("is {what}, not a regular file"))
        }
        Error::Io { .. } | Error::NotAFile { .. } => ("unreadable", e.to_string()),
        Error::Format { path: p, error } if p == path => ("malformed", error.to_string()),
        _ => ("malformed", e.to_string()),
    }
}

/// The JSON report: `file`, `shards`, `tensors_checked`, `structure`
/// (`ok`, `malformed`, `unreadable`), `error`, `problems`, `problem_count`,
/// `skipped`, in every outcome (`null`, 0 or empty where nothing was
/// checked); problems and skipped tensors streamed.
struct Report<'a> {
    file: &'a str,
    structure: &'static str,
    error: Option<&'a str>,
    found: Option<&'a ModelReport>,
}

impl Serialize for Report<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.found;
        let problems = || {
            r.into_iter()
                .flat_map(|r| &r.problems)
                .map(JsonProblem::from)
        };
        let skipped = || {
            r.into_iter()
                .flat_map(|r| &r.skipped)
                .map(JsonSkipped::from)
        };
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("file", self.file)?;
        map.serialize_entry("shards", &r.map(|r| r.shards))?;
        map.serialize_entry("tensors_checked", &r.map_or(0, |r| r.tensors_checked))?;
        map.serialize_entry("structure", self.structure)?;
        map.serialize_entry("error", &self.error)?;
        map.serialize_entry("problems", &Seq(problems))?;
        map.serialize_entry("problem_count", &r.map_or(0, |r| r.problem_count))?;
        map.serialize_entry("skipped", &Seq(skipped))?;
        map.end()
    }
}

/// A problem as the report lists it: `block` for a block type's scale or
/// `element` for a plain float type's value (the other one `null`).
#[derive(Serialize)]
struct JsonProblem<'a> {
    tensor: &'a str,
    block: Option<u64>,
    element: Option<u64>,
    field: &'a str,
    kind: &'a str,
    value: &'a str,
    bits: String,
}

impl<'a> From<&'a DataProblem> for JsonProblem<'a> {
    fn from(p: &'a DataProblem) -> Self {
        JsonProblem {
            tensor: &p.tensor,
            block: (!p.is_element()).then_some(p.block),
            element: p.is_element().then_some(p.block),
            field: p.field,
            kind: p.kind.name(),
            value: p.value_name(),
            bits: format!("{:#x}", p.bits),
        }
    }
}

/// A tensor left unchecked, and why.
#[derive(Serialize)]
struct JsonSkipped<'a> {
    tensor: &'a str,
    #[serde(rename = "type")]
    ty: &'a str,
    reason: &'a str,
}

impl<'a> From<&'a SkippedTensor> for JsonSkipped<'a> {
    fn from(t: &'a SkippedTensor) -> Self {
        JsonSkipped {
            tensor: &t.tensor,
            ty: t.ty.name(),
            reason: t.reason,
        }
    }
}
