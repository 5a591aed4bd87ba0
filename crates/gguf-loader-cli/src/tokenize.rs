//! `gguf-loader tokenize FILE`: all of standard input, as one UTF-8 text,
//! through the model's own tokenizer (`gguf_loader_llm::Tokenizer`); the
//! ids on one line, separated by spaces, or with `--json` an array of
//! `{id, piece}` objects (and `bytes` where the piece is part of a
//! character). By default no BOS/EOS is added and special-token
//! text is not parsed, as llama.cpp's tokenizer tests call it. The text
//! may be up to [`MAX_TEXT`] bytes long.

use std::io::{self, Read, Write};
use std::path::Path;

use gguf_loader::MmapGGUFLoader;
use gguf_loader_cli::CliError;
use gguf_loader_llm::Tokenizer;

/// Tokenizes standard input with `file`'s tokenizer and writes the ids to
/// standard output. Errs when the file cannot be opened or has no
/// supported tokenizer, when standard input is not UTF-8 or cannot be read,
/// or when standard output cannot be written.
pub fn run(
    file: &Path,
    add_special: bool,
    parse_special: bool,
    json: bool,
) -> Result<(), CliError> {
    let loader = MmapGGUFLoader::new(file)?;
    let tok = Tokenizer::from_loader(&loader)
        .map_err(|e| CliError::Message(format!("{}: {e}", file.display())))?;
    for w in tok.warnings() {
        gguf_loader_cli::warn(format_args!("{}: warning: {w}", file.display()));
    }
    let text = read_text(io::stdin().lock(), "standard input")?;
    let ids = tok.encode(&text, add_special, parse_special);
    let mut out = io::BufWriter::new(io::stdout().lock());
    if json {
        let items: Vec<_> = ids
            .iter()
            .map(|&id| {
                let piece = tok.token_to_piece(id, true);
                match std::str::from_utf8(piece) {
                    Ok(p) => serde_json::json!({ "id": id, "piece": p }),
                    // Part of a character (a byte token): the bytes too.
                    Err(_) => serde_json::json!({
                        "id": id,
                        "piece": String::from_utf8_lossy(piece),
                        "bytes": piece,
                    }),
                }
            })
            .collect();
        serde_json::to_writer(&mut out, &items).map_err(CliError::stdout)?;
        writeln!(out).map_err(CliError::stdout)?;
    } else {
        let line: Vec<String> = ids.iter().map(u32::to_string).collect();
        writeln!(out, "{}", line.join(" ")).map_err(CliError::stdout)?;
    }
    out.flush().map_err(CliError::stdout)
}

/// The most text `tokenize` (standard input) and `generate --prompt-file`
/// take: 256 MiB. Endless input (`< /dev/zero`) is refused when it passes
/// this instead of filling the memory.
pub const MAX_TEXT: u64 = 256 << 20;

/// All of `r` as UTF-8 text of at most [`MAX_TEXT`] bytes. Errs, naming
/// `what` (and the byte offset of invalid UTF-8), when `r` cannot be read,
/// is longer, or is not UTF-8.
pub fn read_text(r: impl Read, what: &str) -> Result<String, CliError> {
    let mut input = Vec::new();
    r.take(MAX_TEXT + 1)
        .read_to_end(&mut input)
        .map_err(|e| CliError::Message(format!("reading {what}: {e}")))?;
    if input.len() as u64 > MAX_TEXT {
        return Err(CliError::Message(format!(
            "{what} is longer than {} MiB, the most text taken at once",
            MAX_TEXT >> 20
        )));
    }
    String::from_utf8(input).map_err(|e| {
        CliError::Message(format!(
            "{what} is not UTF-8 (at byte offset {})",
            e.utf8_error().valid_up_to()
        ))
    })
}
