//! Streaming decode: ids in, complete UTF-8 text out.

use std::sync::Arc;

use super::Tokenizer;

/// Decodes ids one at a time ([`Tokenizer::stream_decoder`], or
/// [`Tokenizer::shared_stream_decoder`] for one that owns a share of its
/// tokenizer). Bytes of a character split across tokens (byte-fallback
/// tokens, byte-level BPE) are held back until the character is complete;
/// bytes that can never form a character come out as U+FFFD.
#[derive(Debug)]
pub struct StreamDecoder<'t> {
    tok: Handle<'t>,
    unparse_special: bool,
    pending: Vec<u8>,
    first: bool,
}

/// The tokenizer a decoder reads: borrowed, or a share of it.
#[derive(Debug)]
enum Handle<'t> {
    Borrowed(&'t Tokenizer),
    Shared(Arc<Tokenizer>),
}

impl StreamDecoder<'static> {
    pub(super) fn shared(tok: Arc<Tokenizer>, unparse_special: bool) -> Self {
        Self::with(Handle::Shared(tok), unparse_special)
    }
}

impl<'t> StreamDecoder<'t> {
    pub(super) fn new(tok: &'t Tokenizer, unparse_special: bool) -> Self {
        Self::with(Handle::Borrowed(tok), unparse_special)
    }

    fn with(tok: Handle<'t>, unparse_special: bool) -> Self {
        Self {
            tok,
            unparse_special,
            pending: Vec::new(),
            first: true,
        }
    }

    /// The decoder for ids that continue text already written (the
    /// continuation of a prompt, as `generate` prints it): the first piece
    /// keeps SentencePiece's leading space, as llama.cpp's
    /// `llama_token_to_piece` keeps it, so that the text and what is
    /// written here join as the model wrote them.
    #[must_use]
    pub fn continuing(mut self) -> Self {
        self.first = false;
        self
    }

    /// The text `id` completes: empty while a character is still partial.
    /// SentencePiece's leading space is dropped from the first id's piece
    /// only, as [`Tokenizer::decode`] drops it with `remove_special` false
    /// (and as llama.cpp's `detokenize`): after a first piece that is empty
    /// (BOS) or a lone space, the next keeps its space. The pieces joined
    /// are `decode`'s text before its clean-up of spaces
    /// ([`Tokenizer::cleans_spaces`], which looks at neighbouring pieces):
    /// llama.cpp's `common_token_to_piece` streams pieces without it too
    /// (and keeps every leading space, as [`Self::continuing`] does).
    pub fn push(&mut self, id: u32) -> String {
        let tok = match &self.tok {
            Handle::Borrowed(t) => *t,
            Handle::Shared(t) => &**t,
        };
        let mut piece = tok.token_to_piece(id, self.unparse_special);
        if self.first && tok.add_space_prefix && piece.first() == Some(&b' ') {
            piece = &piece[1..];
        }
        self.first = false;
        self.pending.extend_from_slice(piece);
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    out.push_str(s);
                    self.pending.clear();
                    break;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    // Valid prefix: `valid_up_to` bytes are UTF-8.
                    out.push_str(std::str::from_utf8(&self.pending[..valid]).unwrap_or(""));
                    match e.error_len() {
                        // An invalid sequence: replace it and go on.
                        Some(n) => {
                            out.push('\u{FFFD}');
                            self.pending.drain(..valid + n);
                        }
                        // An incomplete character at the end: wait.
                        None => {
                            self.pending.drain(..valid);
                            break;
                        }
                    }
                }
            }
        }
        out
    }

    /// What is still held back, as U+FFFD (empty when nothing is).
    pub fn finish(&mut self) -> String {
        let s = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        s
    }
}
