//! `gguf-loader perplexity FILE -f TEXT`: the model's perplexity over a
//! text, as llama.cpp's `llama-perplexity` computes it
//! (`gguf_loader_llm::perplexity`): chunks of `--ctx` tokens, each from an
//! empty cache with BOS first where the model adds one, the second half of
//! each scored. A chunk's running perplexity goes to standard output as it
//! is known, then llama.cpp's own last line, `Final estimate: PPL = … +/-
//! …`; load time, speed and memory go to standard error. With `--json`,
//! one object at the end instead.
//!
//! `--kl-divergence-base FILE` also writes every scored position's
//! log-probabilities to `FILE` (llama.cpp's file, on a thread of its own);
//! with `--kl-divergence`, the file's tokens and context are run instead of
//! a text, and each position's distribution is compared with the file's
//! (`gguf_loader_llm::perplexity::kld`): llama.cpp's table, a line a chunk,
//! then its statistics.

use std::cell::Cell;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::Path;
use std::sync::mpsc;
use std::time::Instant;

use rayon::prelude::*;

use gguf_loader::MmapGGUFLoader;
use gguf_loader_cli::memory;
use gguf_loader_cli::CliError;
use gguf_loader_llm::forward::ForwardError;
use gguf_loader_llm::perplexity::kld::{self, Divergence};
use gguf_loader_llm::perplexity::{self, EvalError, Event, Perplexity, PerplexityError};
use gguf_loader_llm::Tokenizer;

use crate::generate::{self, named, rate, Job, Loaded, Step};
use crate::output::Output;

/// The context `perplexity` takes without `--ctx`: 512 tokens, the
/// context of llama.cpp's published perplexity figures.
pub const DEFAULT_CONTEXT: usize = 512;

/// The most logits one step returns (f32): 128 MiB. The scored half of a
/// chunk runs in steps of as many positions as fit (a 262k-token
/// vocabulary: 128 positions). Each step packs the output matrix for its
/// product once: on Gemma-3 (`--ctx 512`), steps of 64 positions took 7.1
/// s with a peak of 908 MiB, of 128 6.4 s and 969 MiB, of 256 (a chunk's
/// half at once, as llama.cpp) 6.2 s and 1,096 MiB.
const MAX_LOGITS_BYTES: usize = 128 << 20;

/// Where `perplexity` keeps or finds a base model's log-probabilities
/// (llama.cpp's `--kl-divergence-base` file; `gguf_loader_llm::perplexity::kld`).
#[derive(Debug, Clone, Copy)]
pub enum Kld<'a> {
    /// The perplexity alone.
    None,
    /// The perplexity, and every scored position's log-probabilities
    /// written to `path` (replacing an existing file only with `force`).
    Write {
        /// The file.
        path: &'a Path,
        /// Replace an existing file.
        force: bool,
    },
    /// The text, the context and the base's log-probabilities read from
    /// `path`, and the model's distributions compared with them.
    Compare {
        /// The file.
        path: &'a Path,
    },
}

/// What `perplexity` was asked for.
pub struct Args<'a> {
    /// The model, its device and float (`ctx`: the chunk's tokens; the
    /// prompt and sampling fields are unused).
    pub model: generate::Args<'a>,
    /// The text to score (unused by [`Kld::Compare`]), and its path.
    pub text: &'a str,
    /// Its path (`-`: standard input), which an output may not replace.
    pub text_path: Option<&'a Path>,
    /// Chunks at most (`None`: every whole chunk of the text or file).
    pub chunks: Option<usize>,
    /// One JSON object on standard output instead of lines.
    pub json: bool,
    /// The KL divergence's file, to write or to compare with.
    pub kld: Kld<'a>,
}

/// Scores the text with the model `a.model` asks for.
pub fn run(a: &Args<'_>) -> Result<(), CliError> {
    generate::with_model(&a.model, a)
}

/// A base file being read (`Kld::Compare`), checked against its header.
struct BaseIn {
    header: kld::Header,
    tokens: Vec<u32>,
    file: BufReader<File>,
    shown: String,
    /// The byte the next row starts at.
    offset: u64,
    /// The rows last read.
    rows: Vec<u8>,
}

impl BaseIn {
    fn open(path: &Path, n_vocab: usize) -> Result<BaseIn, CliError> {
        let shown = path.display().to_string();
        let fail = |e: &dyn std::fmt::Display| CliError::Message(format!("{shown}: {e}"));
        // A FIFO or a device is refused before it is opened (an open FIFO
        // would wait for a writer).
        if !std::fs::metadata(path).map_err(|e| fail(&e))?.is_file() {
            return Err(fail(&"not a regular file"));
        }
        let file = File::open(path).map_err(|e| fail(&e))?;
        let meta = file.metadata().map_err(|e| fail(&e))?;
        let mut file = BufReader::with_capacity(1 << 20, file);
        let mut head = Vec::with_capacity(kld::HEADER_BYTES);
        (&mut file)
            .take(kld::HEADER_BYTES as u64)
            .read_to_end(&mut head)
            .map_err(|e| fail(&e))?;
        let header = kld::Header::parse(&head).map_err(|e| fail(&e))?;
        if header.n_vocab != n_vocab {
            return Err(fail(&format_args!(
                "byte 12: log-probabilities over a vocabulary of {}; the model's has {n_vocab} \
                 (the base must share its tokenizer)",
                header.n_vocab
            )));
        }
        // Checked by `parse`: the size fits a u64.
        let want = header.file_bytes().unwrap_or(u64::MAX);
        if meta.len() != want {
            return Err(fail(&format_args!(
                "byte {}: the file has {} bytes; its header ({} chunks of {} tokens over a \
                 vocabulary of {}) makes {want}",
                meta.len().min(want),
                meta.len(),
                header.chunks,
                header.n_ctx,
                header.n_vocab
            )));
        }
        let token_bytes = header.token_bytes().unwrap_or(u64::MAX);
        let mut raw = Vec::new();
        raw.try_reserve_exact(usize::try_from(token_bytes).unwrap_or(usize::MAX))
            .map_err(|_| {
                fail(&format_args!(
                    "cannot allocate {token_bytes} bytes of tokens"
                ))
            })?;
        (&mut file)
            .take(token_bytes)
            .read_to_end(&mut raw)
            .map_err(|e| fail(&e))?;
        let tokens = header.tokens(&raw).map_err(|e| fail(&e))?;
        Ok(BaseIn {
            header,
            tokens,
            file,
            shown,
            offset: kld::HEADER_BYTES as u64 + token_bytes,
            rows: Vec::new(),
        })
    }

    /// The next `len` bytes of rows, in a buffer kept for the next call.
    fn read_rows(&mut self, len: usize) -> Result<&[u8], CliError> {
        if self.rows.len() < len {
            self.rows = row_buffer(len)?;
        }
        let buf = &mut self.rows[..len];
        self.file
            .read_exact(buf)
            .map_err(|e| CliError::Message(format!("{}: byte {}: {e}", self.shown, self.offset)))?;
        self.offset += len as u64;
        Ok(buf)
    }
}

/// What each scored row feeds.
enum Scoring {
    /// The perplexity.
    Plain,
    /// The perplexity, and the rows' log-probabilities to a file.
    Write(Writer),
    /// The divergence from a base.
    Compare(Box<BaseIn>, Divergence),
}

/// `more`'s fields added to the object `into`.
fn merge(into: &mut serde_json::Value, more: serde_json::Value) {
    if let (Some(o), serde_json::Value::Object(m)) = (into.as_object_mut(), more) {
        o.extend(m);
    }
}

/// The base file written on a thread of its own, so that writing a step's
/// rows overlaps the next step's forward pass (on Gemma-3 at `--ctx 512`,
/// 510 MiB); two buffers go round.
struct Writer {
    full: Option<mpsc::SyncSender<Vec<u8>>>,
    empty: mpsc::Receiver<Vec<u8>>,
    made: usize,
    thread: Option<std::thread::JoinHandle<Result<Output, CliError>>>,
}

impl Writer {
    fn new(mut out: Output) -> Writer {
        let (full, rows) = mpsc::sync_channel::<Vec<u8>>(1);
        let (back, empty) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            for buf in rows {
                out.write_all(&buf).map_err(|e| out.error(e))?;
                // (The other side may be gone: an error there.)
                let _ = back.send(buf);
            }
            Ok(out)
        });
        Writer {
            full: Some(full),
            empty,
            made: 0,
            thread: Some(thread),
        }
    }

    /// A buffer of `len` bytes to fill: a new one for the first two, then
    /// one the thread has written.
    fn buffer(&mut self, len: usize) -> Result<Vec<u8>, CliError> {
        let mut buf = if self.made < 2 {
            self.made += 1;
            row_buffer(len)?
        } else {
            self.empty.recv().map_err(|_| self.stopped())?
        };
        buf.resize(len, 0);
        Ok(buf)
    }

    /// Hands `buf` to the thread.
    fn send(&mut self, buf: Vec<u8>) -> Result<(), CliError> {
        let sent = self.full.as_ref().map(|f| f.send(buf));
        match sent {
            Some(Ok(())) => Ok(()),
            _ => Err(self.stopped()),
        }
    }

    fn stopped(&mut self) -> CliError {
        match self.finish() {
            Err(e) => e,
            Ok(_) => CliError::Message("the log-probabilities' writer stopped".into()),
        }
    }

    /// Waits for every buffer to be written: the output, or the error that
    /// stopped the thread.
    fn finish(&mut self) -> Result<Output, CliError> {
        drop(self.full.take());
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(CliError::Message(
                "the log-probabilities' writer panicked".into(),
            )),
            None => Err(CliError::Message(
                "the log-probabilities' writer stopped".into(),
            )),
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // The output dropped on its thread: its temporary file removed.
        let _ = self.finish();
    }
}

/// `n` bytes for rows, or an error naming them.
fn row_buffer(n: usize) -> Result<Vec<u8>, CliError> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| {
        CliError::Message(format!("cannot allocate {n} bytes for log-probabilities"))
    })?;
    v.resize(n, 0);
    Ok(v)
}

impl Job for Args<'_> {
    fn run<M: Step>(
        &self,
        a: &generate::Args<'_>,
        weights: &str,
        load: impl FnOnce(&MmapGGUFLoader) -> Result<M, ForwardError>,
    ) -> Result<(), CliError> {
        let t0 = Instant::now();
        let file = a.file.display();
        let loader = MmapGGUFLoader::new(a.file)?;
        let tok = Tokenizer::from_loader(&loader)
            .map_err(|e| CliError::Message(format!("{file}: {e}")))?;
        for w in tok.warnings() {
            gguf_loader_cli::warn(format_args!("{file}: warning: {w}"));
        }
        let (tokens, plan, mut scoring) = match self.kld {
            Kld::Compare { path } => {
                // The base's tokens and context, as llama.cpp (no text).
                let mut base = BaseIn::open(path, tok.vocab_size())?;
                let mut plan = base.header.plan();
                plan.chunks = plan.chunks.min(self.chunks.unwrap_or(usize::MAX));
                let tokens = std::mem::take(&mut base.tokens);
                (
                    tokens,
                    plan,
                    Scoring::Compare(Box::new(base), Divergence::default()),
                )
            }
            Kld::None | Kld::Write { .. } => {
                // As llama-perplexity: BOS (and EOS) as the model asks,
                // special tokens' text left as text.
                let tokens = tok.encode(self.text, true, false);
                let n_ctx = a.ctx.unwrap_or(DEFAULT_CONTEXT);
                let plan = perplexity::chunks(tokens.len(), n_ctx, self.chunks)
                    .map_err(|e| CliError::Message(format!("{file}: {e}")))?;
                let scoring = match self.kld {
                    Kld::Write { path, force } => {
                        let mut inputs: Vec<&Path> = loader.paths().collect();
                        inputs.extend(self.text_path.filter(|p| *p != Path::new("-")));
                        let mut out = Output::create(path, &inputs, force)?;
                        let header = kld::Header {
                            n_ctx: plan.n_ctx,
                            n_vocab: tok.vocab_size(),
                            chunks: plan.chunks,
                        };
                        let len = header.file_bytes().ok_or_else(|| {
                            out.error("the log-probabilities would take more than 2^64 bytes")
                        })?;
                        out.reserve(len)?;
                        let mut head = header.to_bytes().to_vec();
                        for t in &tokens[..plan.n_ctx * plan.chunks] {
                            head.extend(t.to_le_bytes());
                        }
                        out.write_all(&head).map_err(|e| out.error(e))?;
                        Scoring::Write(Writer::new(out))
                    }
                    _ => Scoring::Plain,
                };
                (tokens, plan, scoring)
            }
        };
        let bos = match (tok.add_bos(), tok.bos()) {
            (true, Some(b)) => Some(b),
            (true, None) => {
                return Err(format!("{file}: the tokenizer adds BOS but names no BOS token").into())
            }
            (false, _) => None,
        };
        let loaded = Loaded::new(a, &loader, t0, load)?;
        let model = &loaded.model;
        let mut cache = model.cache(plan.n_ctx).map_err(|e| named(a, e))?;
        let n_vocab = tok.vocab_size().max(1);
        let per_step = (MAX_LOGITS_BYTES / 4 / n_vocab).max(1);
        let buf_len = per_step.min(plan.per_chunk()) * kld::row_bytes(n_vocab);

        let mut out = io::stdout().lock();
        let mut chunk_ppl = Vec::new();
        let mut chunk_running = Vec::new();
        let mut total = Perplexity::default();
        let mut this = Perplexity::default();
        let t1 = Instant::now();
        // The last step's logits, handed back for the next's.
        let spare: Cell<Option<Vec<f32>>> = Cell::new(None);
        let step = |ids: &[u32], fresh: bool, all: bool| {
            if fresh {
                cache.clear();
            }
            if let Some(v) = spare.take() {
                model.recycle(&mut cache, v);
            }
            model
                .step_all(&mut cache, ids, all)
                .map_err(|e| named(a, e))
        };
        let on = |event: Event<'_>| -> Result<(), EvalError<CliError>> {
            match event {
                Event::Rows {
                    chunk,
                    logits,
                    next,
                } => {
                    let width = logits.len() / next.len();
                    let bad = |error| EvalError::Logits { chunk, error };
                    let stored = !matches!(scoring, Scoring::Plain);
                    if stored && width != n_vocab {
                        let why =
                            format!("rows of {width} logits; the vocabulary has {n_vocab} tokens");
                        return Err(bad(PerplexityError::BadLogits(why)));
                    }
                    let row = kld::row_bytes(n_vocab);
                    let nll = match &mut scoring {
                        Scoring::Plain => perplexity::row_nlls(logits, next).map_err(bad)?,
                        Scoring::Write(file) => {
                            let mut whole = file.buffer(buf_len).map_err(EvalError::Caller)?;
                            let buf = &mut whole[..next.len() * row];
                            let nll: Vec<_> = logits
                                .par_chunks_exact(width)
                                .zip(buf.par_chunks_exact_mut(row))
                                .zip(next)
                                .map(|((row, o), &t)| kld::encode_row(row, t, o).map(f64::from))
                                .collect();
                            // (The first bad row's error, in order.)
                            let nll = nll.into_iter().collect::<Result<Vec<_>, _>>();
                            let nll = nll.map_err(bad)?;
                            whole.truncate(next.len() * row);
                            file.send(whole).map_err(EvalError::Caller)?;
                            nll
                        }
                        Scoring::Compare(base, div) => {
                            let buf = base
                                .read_rows(next.len() * row)
                                .map_err(EvalError::Caller)?;
                            let rows: Vec<_> = logits
                                .par_chunks_exact(width)
                                .zip(buf.par_chunks_exact(row))
                                .zip(next)
                                .map(|((row, b), &t)| kld::compare_row(row, b, t))
                                .collect();
                            for r in rows {
                                div.add(r.map_err(bad)?);
                            }
                            Vec::new()
                        }
                    };
                    // Added in order: the same sums as one by one.
                    for v in nll {
                        total.add_nll(v);
                        this.add_nll(v);
                    }
                    Ok(())
                }
                Event::ChunkDone(i) => {
                    if i == 0 && plan.chunks > 1 {
                        let s = t1.elapsed().as_secs_f64();
                        gguf_loader_cli::note(format_args!(
                            "{s:.2} s a chunk: about {:.0} s for {} chunks",
                            s * plan.chunks as f64,
                            plan.chunks
                        ));
                    }
                    let line = match &scoring {
                        Scoring::Compare(_, div) => {
                            let running = div.running();
                            chunk_running.push(running);
                            let head = if i == 0 {
                                format!("{}\n", kld::CHUNK_HEADER)
                            } else {
                                String::new()
                            };
                            format!("{head}{}", kld::chunk_line(i, running))
                        }
                        _ => {
                            chunk_ppl.push(total.value());
                            let line = format!(
                                "[{}/{}] PPL {:.4} (this chunk {:.4})",
                                i + 1,
                                plan.chunks,
                                total.value(),
                                this.value()
                            );
                            this = Perplexity::default();
                            line
                        }
                    };
                    if self.json {
                        return Ok(());
                    }
                    writeln!(out, "{line}")
                        .and_then(|()| out.flush())
                        .map_err(|e| EvalError::Caller(CliError::stdout(e)))
                }
            }
        };
        let recycle = |v| spare.set(Some(v));
        let done = perplexity::run_plan(&tokens, &plan, bos, per_step, step, on, recycle);
        if let (Err(_), Scoring::Write(w)) = (&done, &mut scoring) {
            // The writer's own error, where it stopped first.
            w.finish()?;
        }
        done.map_err(|e| match e {
            EvalError::Caller(e) => e,
            e => CliError::Message(format!("{file}: {e}")),
        })?;
        let eval_s = t1.elapsed().as_secs_f64();
        // Every position run: the first half of each chunk and its scored
        // positions, not the last.
        let run = plan.chunks * (plan.n_ctx - 1);
        let mut json = serde_json::json!({
            "file": a.file.display().to_string(),
            "ctx": plan.n_ctx,
            "chunks": plan.chunks,
            "seconds": eval_s,
        });
        let scored = match scoring {
            Scoring::Compare(base, div) => {
                let s = div.summary();
                if self.json {
                    let pct = |v: &[(f32, f32)]| {
                        v.iter()
                            .map(|(p, v)| (format!("{:.1}", 100.0 * p), serde_json::json!(v)))
                            .collect::<serde_json::Map<_, _>>()
                    };
                    let more = serde_json::json!({
                        "base": base.shown,
                        "scored": s.count,
                        "ppl": s.ppl,
                        "ppl_base": s.ppl_base,
                        "ln_ppl_correlation": s.ln_ppl_correlation,
                        "ln_ppl_ratio": s.ln_ppl_ratio,
                        "ppl_ratio": s.ppl_ratio,
                        "ppl_diff": s.ppl_diff,
                        "kld": s.kld,
                        "kld_max": s.kld_max,
                        "kld_median": s.kld_median,
                        "kld_min": s.kld_min,
                        "kld_percentiles": pct(&s.kld_percentiles),
                        "p_diff": s.p_diff,
                        "p_diff_max": s.p_diff_max,
                        "p_diff_median": s.p_diff_median,
                        "p_diff_min": s.p_diff_min,
                        "p_diff_percentiles": pct(&s.p_diff_percentiles),
                        "p_diff_rms": s.p_diff_rms,
                        "same_top": s.same_top,
                        "chunk_ppl": chunk_running.iter().map(|r| r[0].0).collect::<Vec<_>>(),
                        "chunk_kld": chunk_running.iter().map(|r| r[2].0).collect::<Vec<_>>(),
                    });
                    merge(&mut json, more);
                } else if s.count >= 100 {
                    writeln!(out, "\n{s}").map_err(CliError::stdout)?;
                } else {
                    gguf_loader_cli::note(format_args!(
                        "{} positions compared: too few for the statistics (llama.cpp prints \
                         them from 100 on; --json gives them)",
                        s.count
                    ));
                }
                s.count
            }
            scoring => {
                let error = total.error();
                if self.json {
                    let more = serde_json::json!({
                        "text_tokens": tokens.len(),
                        "scored": total.count(),
                        "mean_nll": total.mean_nll(),
                        "ppl": total.value(),
                        "ppl_error": error,
                        "chunk_ppl": chunk_ppl,
                    });
                    merge(&mut json, more);
                } else {
                    let error = error.map_or("n/a".to_string(), |e| format!("{e:.5}"));
                    writeln!(
                        out,
                        "Final estimate: PPL = {:.4} +/- {error}",
                        total.value()
                    )
                    .map_err(CliError::stdout)?;
                }
                if let Scoring::Write(mut w) = scoring {
                    let file = w.finish()?;
                    let shown = file.path().display().to_string();
                    let bytes = file.commit()?;
                    gguf_loader_cli::note(format_args!(
                        "{shown}: {bytes} bytes of log-probabilities ({} positions of {} \
                         tokens); compare a model with them: --kl-divergence-base {shown} \
                         --kl-divergence",
                        total.count(),
                        n_vocab
                    ));
                }
                total.count()
            }
        };
        if self.json {
            serde_json::to_writer(&mut out, &json).map_err(CliError::stdout)?;
            writeln!(out).map_err(CliError::stdout)?;
        }
        out.flush().map_err(CliError::stdout)?;
        gguf_loader_cli::note(format_args!(
            "load: {:.2} s ({weights} on {}, RSS {}); text: {} tokens{}, {} chunks of {} \
             ({scored} tokens scored); evaluation: {:.2} s, {}; peak RSS {}{}",
            loaded.load_s,
            a.device,
            memory::mib(loaded.rss),
            tokens.len(),
            if matches!(self.kld, Kld::Compare { .. }) {
                " (the base file's)"
            } else {
                ""
            },
            plan.chunks,
            plan.n_ctx,
            eval_s,
            rate(run, eval_s),
            memory::mib(memory::peak_resident()),
            loaded.vram(a),
        ));
        Ok(())
    }
}
