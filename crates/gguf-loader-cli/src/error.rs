//! The CLI's one error type, and the one place a result becomes an exit
//! status.

use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use gguf_loader::Escaped;

/// How every subcommand fails. [`exit_code`] prints it as one line,
/// `gguf-loader: …`, on standard error and exits 2, except a closed standard
/// output, which ends the program quietly.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// The library's error, as it is: it names the file, key or tensor and
    /// the byte offset.
    #[error(transparent)]
    Gguf(#[from] gguf_loader::Error),
    /// Writing standard output failed (a full disk, a closed pipe).
    #[error("writing standard output: {0}")]
    Stdout(io::Error),
    /// Creating, writing or reading a file other than the input failed.
    #[error("{}: {error}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What the system said.
        error: io::Error,
    },
    /// Anything else, as one line (a refused argument, a machine limit).
    #[error("{0}")]
    Message(String),
}

impl CliError {
    /// A failed write to standard output, from an `io::Error` or a
    /// `serde_json::Error` (whose I/O cause is kept, so that a closed pipe
    /// is still recognised).
    pub fn stdout(e: impl Into<io::Error>) -> CliError {
        CliError::Stdout(e.into())
    }

    /// This error with `file` named first where it is the library's error
    /// about a tensor or key of that file (not found, not decodable, out of
    /// memory, a GPU failure on it), whose message names only the tensor or
    /// key: every error line names the file it is about.
    pub fn in_file(self, file: &Path) -> CliError {
        use gguf_loader::Error as E;
        match self {
            CliError::Gguf(
                e @ (E::Metadata(_)
                | E::NotMapped(_)
                | E::TooLarge(_)
                | E::OutOfMemory { .. }
                | E::TensorNotFound(_)
                | E::LayerNotFound(_)
                | E::Decode { .. }
                | E::BigEndianData { .. }
                | E::Cuda { .. }),
            ) => CliError::Message(format!("{}: {e}", file.display())),
            e => e,
        }
    }

    /// True when standard output was closed by its reader (`| head`): not an
    /// error of ours, so nothing is printed.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, CliError::Stdout(e) if e.kind() == io::ErrorKind::BrokenPipe)
    }
}

impl From<String> for CliError {
    fn from(s: String) -> CliError {
        CliError::Message(s)
    }
}

impl From<&str> for CliError {
    fn from(s: &str) -> CliError {
        CliError::Message(s.to_string())
    }
}

/// The exit status of a subcommand's result: its own status when it
/// succeeded; 141 (as `cat` killed by SIGPIPE) and nothing printed when its
/// standard output was closed early; else the error as one line on standard
/// error, its control characters escaped, and 2.
pub fn exit_code(result: Result<ExitCode, CliError>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(e) if e.is_broken_pipe() => ExitCode::from(141),
        Err(e) => {
            warn(format_args!("{e}"));
            ExitCode::from(2)
        }
    }
}

/// Writes `gguf-loader: {message}` on standard error, control characters
/// escaped, ignoring a failed write (a closed or full standard error must
/// neither stop nor crash the program).
pub fn warn(message: fmt::Arguments<'_>) {
    let line = message.to_string();
    let _ = writeln!(io::stderr().lock(), "gguf-loader: {}", Escaped(&line));
}

/// Writes `message` and a newline on standard error as it is (no prefix, no
/// escaping: text of ours, such as `generate`'s timings), ignoring a failed
/// write as [`warn`] does. `eprintln!` would panic on a full or closed
/// standard error (`2>/dev/full`).
pub fn note(message: fmt::Arguments<'_>) {
    let _ = writeln!(io::stderr().lock(), "{message}");
}
