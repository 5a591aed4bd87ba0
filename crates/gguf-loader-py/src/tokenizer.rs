//! The model's own tokenizer from the file's metadata
//! (`gguf_loader_llm::Tokenizer`: llama.cpp's algorithms, held to its
//! tokenizer tests), and its chat template.

use std::sync::Arc;

use gguf_loader_llm::chat::{self, Message};
use gguf_loader_llm::{StreamDecoder, Tokenizer as Inner, TokenizerKind};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedStr;
use pyo3::types::{PyBytes, PyDict};

use crate::file::File;

/// A tokenizer built from a GGUF's `tokenizer.*` metadata; see
/// `gguf_loader.GGUFFile.tokenizer`.
#[pyclass(module = "gguf_loader._native", frozen)]
pub struct Tokenizer {
    inner: Arc<Inner>,
    /// The keys it was built from, as a GGUF of their own
    /// (`Inner::metadata_gguf`): what a pickle holds.
    gguf: Box<[u8]>,
}

/// The tokenizer of `file` (it keeps nothing of the file but the keys it
/// was built from): `ValueError` naming the file where it has none this
/// crate supports, as the CLI's `tokenize` says it.
#[pyfunction]
pub(crate) fn tokenizer(py: Python<'_>, file: &File) -> PyResult<Tokenizer> {
    let loader = file.loader()?;
    let (inner, gguf) = py
        .detach(|| {
            let inner = Inner::from_loader(&loader)?;
            let gguf = Inner::metadata_gguf(loader.metadata())?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>((inner, gguf))
        })
        .map_err(|e| crate::value_error_in(&loader, e))?;
    Ok(Tokenizer {
        inner: Arc::new(inner),
        gguf: gguf.into_boxed_slice(),
    })
}

/// The tokenizer of a GGUF of its keys (`Tokenizer.gguf`'s bytes: how a
/// pickle rebuilds one); `ValueError` where `data` is no such GGUF.
#[pyfunction]
pub(crate) fn tokenizer_from_gguf(py: Python<'_>, data: &[u8]) -> PyResult<Tokenizer> {
    let inner = py
        .detach(|| Inner::from_gguf_bytes(data))
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    Ok(Tokenizer {
        inner: Arc::new(inner),
        gguf: data.into(),
    })
}

/// The text `encode_batch` encodes between two looks for Ctrl-C: some
/// 0.3 s of work on two cores.
const BATCH_BYTES: usize = 4 << 20;

impl Tokenizer {
    /// `id` as a `u32`: `ValueError` where it is outside the vocabulary.
    fn id(&self, id: i64) -> PyResult<u32> {
        checked_id(id, self.inner.vocab_size())
    }

    /// `ids` as `u32`s, each checked as [`Self::id`] checks one.
    fn ids(&self, ids: Vec<i64>) -> PyResult<Vec<u32>> {
        ids.into_iter().map(|id| self.id(id)).collect()
    }
}

#[pymethods]
impl Tokenizer {
    /// `"gpt2"`, `"llama"`, `"bert"` or `"t5"`: the algorithm, by
    /// `tokenizer.ggml.model`'s name.
    #[getter]
    fn model(&self) -> &'static str {
        match self.inner.kind() {
            TokenizerKind::Bpe => "gpt2",
            TokenizerKind::Spm => "llama",
            TokenizerKind::Wpm => "bert",
            TokenizerKind::Ugm => "t5",
            // A kind added to the tokenizer crate after this binding.
            _ => "other",
        }
    }

    /// The pre-tokenizer (`tokenizer.ggml.pre`), `""` where none.
    #[getter]
    fn pre(&self) -> &str {
        self.inner.pre()
    }

    #[getter]
    fn vocab_size(&self) -> usize {
        self.inner.vocab_size()
    }

    fn __len__(&self) -> usize {
        self.inner.vocab_size()
    }

    #[getter]
    fn bos(&self) -> Option<u32> {
        self.inner.bos()
    }

    #[getter]
    fn eos(&self) -> Option<u32> {
        self.inner.eos()
    }

    #[getter]
    fn eot(&self) -> Option<u32> {
        self.inner.eot()
    }

    #[getter]
    fn eog(&self) -> Vec<u32> {
        self.inner.eog_tokens().to_vec()
    }

    #[getter]
    fn add_bos(&self) -> bool {
        self.inner.add_bos()
    }

    #[getter]
    fn add_eos(&self) -> bool {
        self.inner.add_eos()
    }

    #[getter]
    fn chat_template(&self) -> Option<&str> {
        self.inner.chat_template()
    }

    #[getter]
    fn warnings(&self) -> Vec<String> {
        self.inner.warnings().to_vec()
    }

    fn is_eog(&self, id: i64) -> bool {
        u32::try_from(id).is_ok_and(|i| self.inner.is_eog(i))
    }

    /// The text of token `id` in the vocabulary.
    fn token_text(&self, id: i64) -> PyResult<String> {
        let id = self.id(id)?;
        Ok(self.inner.token_text(id).unwrap_or_default().to_string())
    }

    /// The id of the token whose text is `text`, or `None`.
    fn token_id(&self, text: &str) -> Option<u32> {
        self.inner.token_id(text)
    }

    /// The bytes token `id` decodes to (part of a character for a byte
    /// token); control tokens give their text only with `special`.
    #[pyo3(signature = (id, special = false))]
    fn token_to_piece<'py>(
        &self,
        py: Python<'py>,
        id: i64,
        special: bool,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let id = self.id(id)?;
        Ok(PyBytes::new(py, self.inner.token_to_piece(id, special)))
    }

    #[pyo3(signature = (text, add_special = false, parse_special = false))]
    fn encode(
        &self,
        py: Python<'_>,
        text: &str,
        add_special: bool,
        parse_special: bool,
    ) -> Vec<u32> {
        py.detach(|| self.inner.encode(text, add_special, parse_special))
    }

    /// `encode` of each text, the texts shared out among this process's
    /// decoding threads, without the GIL, some [`BATCH_BYTES`] of text at a
    /// time (Ctrl-C is heard between them). Each text is read in place:
    /// Python keeps its UTF-8.
    #[pyo3(signature = (texts, add_special = false, parse_special = false))]
    fn encode_batch(
        &self,
        py: Python<'_>,
        texts: Vec<PyBackedStr>,
        add_special: bool,
        parse_special: bool,
    ) -> PyResult<Vec<Vec<u32>>> {
        let inner = &self.inner;
        let mut out = Vec::with_capacity(texts.len());
        let mut rest = &texts[..];
        while !rest.is_empty() {
            py.check_signals()?;
            // At least one text; more while they stay under the bound.
            let mut n = 1;
            let mut bytes = rest[0].len();
            while n < rest.len() && bytes + rest[n].len() <= BATCH_BYTES {
                bytes += rest[n].len();
                n += 1;
            }
            let (part, later) = rest.split_at(n);
            out.extend(py.detach(|| {
                crate::fork::run(|| inner.encode_batch(part, add_special, parse_special))
            })?);
            rest = later;
        }
        Ok(out)
    }

    #[pyo3(signature = (ids, remove_special = false, unparse_special = false))]
    fn decode_bytes<'py>(
        &self,
        py: Python<'py>,
        ids: Vec<i64>,
        remove_special: bool,
        unparse_special: bool,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let ids = self.ids(ids)?;
        let bytes = py.detach(|| {
            self.inner
                .decode_bytes(&ids, remove_special, unparse_special)
        });
        Ok(PyBytes::new(py, &bytes))
    }

    #[pyo3(signature = (ids, remove_special = false, unparse_special = false))]
    fn decode(
        &self,
        py: Python<'_>,
        ids: Vec<i64>,
        remove_special: bool,
        unparse_special: bool,
    ) -> PyResult<String> {
        let ids = self.ids(ids)?;
        Ok(py.detach(|| self.inner.decode(&ids, remove_special, unparse_special)))
    }

    /// `messages` (`{"role": …, "content": …}` mappings) rendered with the
    /// file's chat template (llama.cpp's fallbacks where it has none), and
    /// whether the text should be encoded with `add_special` (`False` where
    /// the template wrote BOS itself).
    #[pyo3(signature = (messages, add_generation_prompt = true))]
    fn render_chat(
        &self,
        py: Python<'_>,
        messages: Vec<Bound<'_, PyAny>>,
        add_generation_prompt: bool,
    ) -> PyResult<(String, bool, bool)> {
        let messages = messages
            .iter()
            .enumerate()
            .map(|(i, m)| message(i, m))
            .collect::<PyResult<Vec<Message>>>()?;
        let text = py
            .detach(|| chat::render(&self.inner, &messages, add_generation_prompt))
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        let add_special = chat::add_special(&self.inner, &text);
        Ok((text, add_special, self.inner.chat_template().is_some()))
    }

    /// A decoder of ids one at a time into whole characters; with
    /// `continuing`, the first piece keeps SentencePiece's leading space
    /// (ids that continue a text already written, as a prompt's).
    #[pyo3(signature = (continuing = false, unparse_special = false))]
    fn stream(&self, continuing: bool, unparse_special: bool) -> TextStream {
        let d = self.inner.shared_stream_decoder(unparse_special);
        TextStream {
            inner: if continuing { d.continuing() } else { d },
            vocab_size: self.inner.vocab_size(),
        }
    }

    /// The keys it was built from, as a GGUF of their own.
    fn gguf<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.gguf)
    }

    fn __repr__(&self) -> String {
        format!(
            "<gguf_loader.Tokenizer model={} pre={:?} vocab_size={}>",
            self.model(),
            self.pre(),
            self.inner.vocab_size()
        )
    }
}

/// Message `i`: a mapping with string `role` and `content`.
fn message(i: usize, m: &Bound<'_, PyAny>) -> PyResult<Message> {
    let field = |key: &str| -> PyResult<String> {
        let v = if let Ok(d) = m.cast::<PyDict>() {
            d.get_item(key)?
        } else {
            m.get_item(key).ok()
        };
        let v = v.ok_or_else(|| {
            PyTypeError::new_err(format!(
                "messages[{i}] must be a mapping with 'role' and 'content', and has no '{key}'"
            ))
        })?;
        v.extract::<String>().map_err(|_| {
            PyTypeError::new_err(format!(
                "messages[{i}]['{key}'] must be a str, not {}",
                v.get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_default()
            ))
        })
    };
    Ok(Message::new(field("role")?, field("content")?))
}

/// Ids in, whole characters out: see `Tokenizer.stream`.
#[pyclass(module = "gguf_loader._native")]
pub struct TextStream {
    inner: StreamDecoder<'static>,
    vocab_size: usize,
}

#[pymethods]
impl TextStream {
    /// The text `id` completes (empty while a character is partial).
    fn push(&mut self, id: i64) -> PyResult<String> {
        let id = checked_id(id, self.vocab_size)?;
        Ok(self.inner.push(id))
    }

    /// What is still held back, as U+FFFD (empty when nothing is).
    fn finish(&mut self) -> String {
        self.inner.finish()
    }
}

/// `id` as a `u32` below `n`: `ValueError` where it is outside the
/// vocabulary.
fn checked_id(id: i64, n: usize) -> PyResult<u32> {
    u32::try_from(id)
        .ok()
        .filter(|&i| (i as usize) < n)
        .ok_or_else(|| {
            PyValueError::new_err(format!(
                "token id {id} is outside the vocabulary (0 to {})",
                n.saturating_sub(1)
            ))
        })
}
