//! `gguf-loader perplexity FILE -f TEXT`: the model's perplexity over a
//! text, as llama.cpp's `llama-perplexity` computes it
//! (`gguf_loader_llm::perplexity`): chunks of `--ctx` tokens, each from an
//! empty cache with BOS first where the model adds one, the second half of
//! each scored. A chunk's running perplexity goes to standard output as it
//! is known, then llama.cpp's own last line, `Final estimate: PPL = … +/-
//! …`; load time, speed and memory go to standard error. With `--json`,
//! one object at the end instead.

use std::io::{self, Write};
use std::time::Instant;

use gguf_loader::MmapGGUFLoader;
use gguf_loader_cli::memory;
use gguf_loader_cli::CliError;
use gguf_loader_llm::forward::ForwardError;
use gguf_loader_llm::perplexity::{self, EvalError, Perplexity};
use gguf_loader_llm::Tokenizer;

use crate::generate::{self, named, rate, Job, Loaded, Step};

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

/// What `perplexity` was asked for.
pub struct Args<'a> {
    /// The model, its device and float (`ctx`: the chunk's tokens; the
    /// prompt and sampling fields are unused).
    pub model: generate::Args<'a>,
    /// The text to score.
    pub text: &'a str,
    /// Chunks at most (`None`: every whole chunk of the text).
    pub chunks: Option<usize>,
    /// One JSON object on standard output instead of lines.
    pub json: bool,
}

/// Scores the text with the model `a.model` asks for.
pub fn run(a: &Args<'_>) -> Result<(), CliError> {
    generate::with_model(&a.model, a)
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
        // As llama-perplexity: BOS (and EOS) as the model asks, special
        // tokens' text left as text.
        let tokens = tok.encode(self.text, true, false);
        let n_ctx = a.ctx.unwrap_or(DEFAULT_CONTEXT);
        let plan = perplexity::chunks(tokens.len(), n_ctx, self.chunks)
            .map_err(|e| CliError::Message(format!("{file}: {e}")))?;
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
        let per_step = (MAX_LOGITS_BYTES / 4 / tok.vocab_size().max(1)).max(1);

        let mut out = io::stdout().lock();
        let mut chunk_ppl = Vec::new();
        let t1 = Instant::now();
        let step = |ids: &[u32], fresh: bool, all: bool| {
            if fresh {
                cache.clear();
            }
            model
                .step_all(&mut cache, ids, all)
                .map_err(|e| named(a, e))
        };
        let chunk_done = |i: usize, total: &Perplexity, this: &Perplexity| {
            chunk_ppl.push(total.value());
            if i == 0 && plan.chunks > 1 {
                let s = t1.elapsed().as_secs_f64();
                gguf_loader_cli::note(format_args!(
                    "{s:.2} s a chunk: about {:.0} s for {} chunks",
                    s * plan.chunks as f64,
                    plan.chunks
                ));
            }
            if self.json {
                return Ok(());
            }
            writeln!(
                out,
                "[{}/{}] PPL {:.4} (this chunk {:.4})",
                i + 1,
                plan.chunks,
                total.value(),
                this.value()
            )
            .and_then(|()| out.flush())
            .map_err(CliError::stdout)
        };
        let ppl =
            perplexity::evaluate(&tokens, &plan, bos, per_step, step, chunk_done).map_err(|e| {
                match e {
                    EvalError::Caller(e) => e,
                    e => CliError::Message(format!("{file}: {e}")),
                }
            })?;
        let eval_s = t1.elapsed().as_secs_f64();
        // Every position run: the first half of each chunk and its scored
        // positions, not the last.
        let run = plan.chunks * (plan.n_ctx - 1);
        let error = ppl.error();
        if self.json {
            let v = serde_json::json!({
                "file": a.file.display().to_string(),
                "ctx": plan.n_ctx,
                "chunks": plan.chunks,
                "text_tokens": tokens.len(),
                "scored": ppl.count(),
                "mean_nll": ppl.mean_nll(),
                "ppl": ppl.value(),
                "ppl_error": error,
                "chunk_ppl": chunk_ppl,
                "seconds": eval_s,
            });
            serde_json::to_writer(&mut out, &v).map_err(CliError::stdout)?;
            writeln!(out).map_err(CliError::stdout)?;
        } else {
            let error = error.map_or("n/a".to_string(), |e| format!("{e:.5}"));
            writeln!(out, "Final estimate: PPL = {:.4} +/- {error}", ppl.value())
                .map_err(CliError::stdout)?;
        }
        out.flush().map_err(CliError::stdout)?;
        gguf_loader_cli::note(format_args!(
            "load: {:.2} s ({weights} on {}, RSS {}); text: {} tokens, {} chunks of {} \
             ({} tokens scored); evaluation: {:.2} s, {}; peak RSS {}{}",
            loaded.load_s,
            a.device,
            memory::mib(loaded.rss),
            tokens.len(),
            plan.chunks,
            plan.n_ctx,
            ppl.count(),
            eval_s,
            rate(run, eval_s),
            memory::mib(memory::peak_resident()),
            loaded.vram(a),
        ));
        Ok(())
    }
}
