//! The `gguf-loader` command-line tool's library: what its subcommands print
//! and how they fail, apart from argument parsing (`main.rs`).
//!
//! - [`CliError`]: the one error type of every subcommand, and
//!   [`exit_code`], the one place that turns a result into an exit status
//!   (a closed standard output, as in `| head`, ends the program quietly).
//! - [`with_element!`]: the one dispatch from an [`ElementKind`] chosen at
//!   run time to code generic over [`Element`].
//! - [`inspect`], [`verify`], [`load`], [`bench`](mod@bench): the subcommands. Their
//!   output is written with error propagation (never `println!`); text
//!   taken from a file is printed with its control characters escaped, and
//!   JSON is streamed, never built as a tree.
//! - [`host`]: what the machine allows (`--threads` bounds, available
//!   memory); [`memory`]: what this process holds, where the system says.
//!
//! [`ElementKind`]: gguf_loader::ElementKind
//! [`Element`]: gguf_loader::Element

#![deny(missing_docs)]

pub mod bench;
mod error;
pub mod gpu;
pub mod host;
pub mod inspect;
mod json;
pub mod load;
pub mod memory;
pub mod text;
pub mod verify;

pub use error::{exit_code, note, warn, CliError};

/// Runs `$body` with the type alias `$t` naming the Rust float of an
/// [`ElementKind`](gguf_loader::ElementKind) known only at run time: the one
/// dtype dispatch of the CLI.
///
/// ```
/// use gguf_loader::{Element, ElementKind};
/// use gguf_loader_cli::with_element;
///
/// fn size<T: Element>() -> usize {
///     std::mem::size_of::<T>()
/// }
/// let kind = ElementKind::BF16;
/// assert_eq!(with_element!(kind, T => size::<T>()), 2);
/// ```
#[macro_export]
macro_rules! with_element {
    ($kind:expr, $t:ident => $body:expr) => {
        match $kind {
            ::gguf_loader::ElementKind::F32 => {
                type $t = f32;
                $body
            }
            ::gguf_loader::ElementKind::F16 => {
                type $t = ::gguf_loader::f16;
                $body
            }
            ::gguf_loader::ElementKind::BF16 => {
                type $t = ::gguf_loader::bf16;
                $body
            }
        }
    };
}
