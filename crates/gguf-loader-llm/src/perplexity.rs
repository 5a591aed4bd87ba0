//! Perplexity as llama.cpp's `llama-perplexity` computes it: the text's
//! tokens (BOS added where the model asks) cut into chunks of `n_ctx`, each
//! run from an empty KV cache with its first token replaced by BOS (where
//! the model adds one), and the tokens of each chunk's second half scored:
//! the logits at position `j` (from `n_ctx / 2` to `n_ctx - 2`) against
//! the token at `j + 1`. The perplexity is `exp` of the mean negative log
//! likelihood over every scored token, and its uncertainty the standard
//! error of that mean times the perplexity.
//!
//! The log-softmax is llama.cpp's, operation for operation: the largest
//! logit in f32, the sum of `expf(logit - max)` in f64 (in vocabulary
//! order), then `logit - max - ln(sum)`. Given the same logits, the same
//! bits; given ours (within 1e-4 NMSE of llama.cpp's), a perplexity equal
//! to a few digits.
//!
//! ```
//! use gguf_loader_llm::perplexity::{chunks, Perplexity};
//!
//! // 1,100 tokens in chunks of 512: two chunks, 255 tokens scored each.
//! let plan = chunks(1100, 512, None).unwrap();
//! assert_eq!((plan.chunks, plan.first, plan.scored()), (2, 256, 510));
//!
//! let mut ppl = Perplexity::default();
//! ppl.add(&[0.0, 0.0, 0.0, 0.0], 1).unwrap(); // uniform over 4: ln 4
//! assert!((ppl.value() - 4.0).abs() < 1e-12);
//! ```
//!
//! [`evaluate`] runs a whole plan through a forward pass:
//!
//! ```no_run
//! use gguf_loader::{f16, MmapGGUFLoader};
//! use gguf_loader_llm::forward::Transformer;
//! use gguf_loader_llm::perplexity::{chunks, evaluate};
//! use gguf_loader_llm::Tokenizer;
//!
//! let loader = MmapGGUFLoader::new("model.gguf")?;
//! let tok = Tokenizer::from_loader(&loader)?;
//! let model = Transformer::<f16>::load(&loader)?;
//! let tokens = tok.encode(&std::fs::read_to_string("text.txt")?, true, false);
//! let plan = chunks(tokens.len(), 512, None)?;
//! let bos = tok.bos().filter(|_| tok.add_bos());
//! let mut cache = model.new_cache(plan.n_ctx)?;
//! let ppl = evaluate(&tokens, &plan, bos, 64, |ids, fresh, all| {
//!     if fresh {
//!         cache.clear();
//!     }
//!     model.forward(&mut cache, ids, all)
//! }, |_, _, _| Ok(()))?;
//! println!("PPL = {:.4} +/- {:.5}", ppl.value(), ppl.error().unwrap_or(0.0));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::ops::Range;

use rayon::prelude::*;

pub mod kld;

/// Why a perplexity cannot be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PerplexityError {
    /// Too few tokens for two chunks of the context (llama.cpp's rule).
    #[error(
        "the text has {tokens} tokens; a context of {n_ctx} needs at least {} \
         (two chunks; a smaller --ctx, or more text)",
        2 * *n_ctx as u128
    )]
    TooFewTokens {
        /// The text's tokens.
        tokens: usize,
        /// The context asked for.
        n_ctx: usize,
    },
    /// A context too small to score a token (at least 3: its second half
    /// less the last position must hold one).
    #[error("a context of {0} tokens scores none; at least 3 are needed")]
    ContextTooSmall(usize),
    /// No chunk asked for.
    #[error("0 chunks asked for; at least 1")]
    NoChunks,
    /// A row of logits that does not hold the token, or holds no finite
    /// value to normalize by.
    #[error("{0}")]
    BadLogits(String),
}

/// Which tokens a perplexity run evaluates (see the module's page).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunks {
    /// Tokens a chunk: the context.
    pub n_ctx: usize,
    /// Chunks evaluated.
    pub chunks: usize,
    /// The first position of a chunk whose logits are scored (`n_ctx / 2`).
    pub first: usize,
}

impl Chunks {
    /// The tokens of chunk `i` in the text's tokens.
    pub fn range(&self, i: usize) -> Range<usize> {
        i * self.n_ctx..(i + 1) * self.n_ctx
    }

    /// Tokens scored in a chunk: positions `first` to `n_ctx - 2`, each
    /// against the token after it.
    pub fn per_chunk(&self) -> usize {
        self.n_ctx - 1 - self.first
    }

    /// Tokens scored in all.
    pub fn scored(&self) -> usize {
        self.per_chunk() * self.chunks
    }
}

/// The chunks of `n_ctx` tokens that `n_tokens` tokens give, at most
/// `max_chunks` of them (`None`: all): errs, as llama.cpp does, where the
/// text holds fewer than two chunks, and where `n_ctx` scores no token.
pub fn chunks(
    n_tokens: usize,
    n_ctx: usize,
    max_chunks: Option<usize>,
) -> Result<Chunks, PerplexityError> {
    if n_ctx < 3 {
        return Err(PerplexityError::ContextTooSmall(n_ctx));
    }
    if max_chunks == Some(0) {
        return Err(PerplexityError::NoChunks);
    }
    if n_tokens / 2 < n_ctx {
        return Err(PerplexityError::TooFewTokens {
            tokens: n_tokens,
            n_ctx,
        });
    }
    let all = n_tokens / n_ctx;
    Ok(Chunks {
        n_ctx,
        chunks: max_chunks.map_or(all, |m| m.min(all)),
        first: n_ctx / 2,
    })
}

/// The natural log of the probability of `token` under `logits`, as
/// llama.cpp's perplexity tool computes it (see the module's page). Errs
/// where `token` is out of the row, or where the row's largest logit is
/// not finite (NaN anywhere, or every logit infinite).
pub fn log_prob(logits: &[f32], token: u32) -> Result<f64, PerplexityError> {
    let (lt, max) = checked_row(logits, token)?;
    let sum: f64 = logits.iter().map(|&l| f64::from((l - max).exp())).sum();
    Ok(f64::from(lt - max) - sum.ln())
}

/// The negative log likelihood of each row of `logits` (`next.len()` rows
/// of equal width) against its token in `next`: [`log_prob`] of each,
/// negated, the rows on every thread (a 262k-token row is a quarter of a
/// millisecond). Errs with the first bad row's error, in order, and where
/// the rows are not whole.
pub fn row_nlls(logits: &[f32], next: &[u32]) -> Result<Vec<f64>, PerplexityError> {
    if next.is_empty() || logits.is_empty() || !logits.len().is_multiple_of(next.len()) {
        return Err(PerplexityError::BadLogits(format!(
            "{} logits for {} rows",
            logits.len(),
            next.len()
        )));
    }
    let nll: Vec<Result<f64, PerplexityError>> = logits
        .par_chunks_exact(logits.len() / next.len())
        .zip(next)
        .map(|(row, &t)| log_prob(row, t).map(|l| -l))
        .collect();
    nll.into_iter().collect()
}

/// `token`'s logit and the row's largest, where the row holds `token`, no
/// NaN, and a finite largest value (what [`log_prob`] and the KL
/// divergence's rows need).
pub(crate) fn checked_row(logits: &[f32], token: u32) -> Result<(f32, f32), PerplexityError> {
    let Some(&lt) = logits.get(token as usize) else {
        return Err(PerplexityError::BadLogits(format!(
            "token {token} is past the {} logits of a row",
            logits.len()
        )));
    };
    // std::max over the row, from the first: NaN stays out unless first,
    // so look for NaN apart.
    if logits.iter().any(|v| v.is_nan()) {
        return Err(PerplexityError::BadLogits(
            "a row of logits holds NaN".into(),
        ));
    }
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return Err(PerplexityError::BadLogits(
            "a row of logits has no finite largest value".into(),
        ));
    }
    Ok((lt, max))
}

/// The running negative log likelihood of the scored tokens, and the
/// perplexity it gives.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Perplexity {
    nll: f64,
    nll2: f64,
    count: usize,
}

impl Perplexity {
    /// Scores `next` against `logits` (the row of the position before it)
    /// and returns its negative log likelihood.
    pub fn add(&mut self, logits: &[f32], next: u32) -> Result<f64, PerplexityError> {
        let v = -log_prob(logits, next)?;
        self.add_nll(v);
        Ok(v)
    }

    /// Counts a token of negative log likelihood `v` (from [`log_prob`]).
    pub fn add_nll(&mut self, v: f64) {
        self.nll += v;
        self.nll2 += v * v;
        self.count += 1;
    }

    /// Tokens scored.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The mean negative log likelihood (nats a token); NaN before any.
    pub fn mean_nll(&self) -> f64 {
        self.nll / self.count as f64
    }

    /// The perplexity: `exp` of [`mean_nll`](Self::mean_nll).
    pub fn value(&self) -> f64 {
        self.mean_nll().exp()
    }

    /// llama.cpp's "±": the standard error of the mean negative log
    /// likelihood times the perplexity; `None` with fewer than two tokens
    /// or no spread.
    pub fn error(&self) -> Option<f64> {
        if self.count < 2 {
            return None;
        }
        let n = self.count as f64;
        let mean = self.nll / n;
        let var = self.nll2 / n - mean * mean;
        (var > 0.0).then(|| (var / (n - 1.0)).sqrt() * mean.exp())
    }
}

/// Why [`evaluate`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum EvalError<E> {
    /// The caller's forward pass or chunk callback failed.
    #[error(transparent)]
    Caller(E),
    /// A row of logits could not be scored, or the plan does not fit the
    /// tokens.
    #[error("chunk {}: {error}", chunk + 1)]
    Logits {
        /// The chunk (from 0).
        chunk: usize,
        /// What was wrong.
        error: PerplexityError,
    },
}

/// What [`run_plan`] hands its caller as a plan runs.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// The logits of consecutive scored positions of chunk `chunk`, row
    /// after row (`logits.len() / next.len()` a row: the vocabulary), and
    /// the token each row is scored against (the one after its position).
    Rows {
        /// The chunk (from 0).
        chunk: usize,
        /// The rows, whole.
        logits: &'a [f32],
        /// A token a row.
        next: &'a [u32],
    },
    /// Chunk `0` is done: every row of it has been handed over.
    ChunkDone(usize),
}

/// Runs `plan` over `tokens` through a forward pass, and hands each step's
/// scored rows to `on` ([`Event::Rows`], in order) and each chunk's end
/// ([`Event::ChunkDone`]). For each chunk: `step(ids, fresh, all)` runs
/// `ids` at the next positions of the forward pass, after forgetting every
/// position first where `fresh` (a chunk's first step: its first half,
/// with `bos` in its first place where given), and returns the logits of
/// every position (`all`, row after row) or of none that matter (`!all`).
/// The second half runs in steps of at most `max_rows` positions (at least
/// 1); the last position is not run (its logits would score a token past
/// the chunk). Each step's logits go to `recycle` once handed over (a
/// forward pass may write the next step's into them:
/// [`KvCache::recycle`](crate::forward::KvCache::recycle)). [`evaluate`]
/// is this with a perplexity as `on`; the KL divergence ([`kld`]) is
/// another.
pub fn run_plan<E>(
    tokens: &[u32],
    plan: &Chunks,
    bos: Option<u32>,
    max_rows: usize,
    mut step: impl FnMut(&[u32], bool, bool) -> Result<Vec<f32>, E>,
    mut on: impl FnMut(Event<'_>) -> Result<(), EvalError<E>>,
    mut recycle: impl FnMut(Vec<f32>),
) -> Result<(), EvalError<E>> {
    let bad = |chunk, error| EvalError::Logits { chunk, error };
    for i in 0..plan.chunks {
        let too_few = PerplexityError::TooFewTokens {
            tokens: tokens.len(),
            n_ctx: plan.n_ctx,
        };
        // `Chunks` has public fields: a plan made by hand is checked here
        // without arithmetic that could overflow (a first half of at least
        // one position, a scored one after it, the chunk inside the tokens).
        let fits = plan.first >= 1 && plan.first.checked_add(2).is_some_and(|f| f <= plan.n_ctx);
        let range = i
            .checked_mul(plan.n_ctx)
            .and_then(|s| Some(s..s.checked_add(plan.n_ctx)?));
        let mut chunk = range
            .filter(|_| fits)
            .and_then(|r| tokens.get(r))
            .ok_or_else(|| bad(i, too_few))?
            .to_vec();
        if let Some(b) = bos {
            chunk[0] = b;
        }
        step(&chunk[..plan.first], true, false).map_err(EvalError::Caller)?;
        let scored = plan.first..plan.n_ctx - 1;
        for from in scored.clone().step_by(max_rows.max(1)) {
            let to = (from + max_rows.max(1)).min(scored.end);
            let logits = step(&chunk[from..to], false, true).map_err(EvalError::Caller)?;
            let rows = to - from;
            if logits.is_empty() || logits.len() % rows != 0 {
                let why = format!("{} logits for {rows} positions", logits.len());
                return Err(bad(i, PerplexityError::BadLogits(why)));
            }
            // (Scored positions start at 1 or later: the token after each
            // is the text's, never the BOS put in place.)
            on(Event::Rows {
                chunk: i,
                logits: &logits,
                next: &chunk[from + 1..=to],
            })?;
            recycle(logits);
        }
        on(Event::ChunkDone(i))?;
    }
    Ok(())
}

/// Runs `plan` over `tokens` (as [`run_plan`]) and returns the perplexity
/// of every scored token, each row scored against the token after its
/// position. `chunk_done(i, total, this)` follows each chunk with the
/// running perplexity and the chunk's own.
pub fn evaluate<E>(
    tokens: &[u32],
    plan: &Chunks,
    bos: Option<u32>,
    max_rows: usize,
    step: impl FnMut(&[u32], bool, bool) -> Result<Vec<f32>, E>,
    mut chunk_done: impl FnMut(usize, &Perplexity, &Perplexity) -> Result<(), E>,
) -> Result<Perplexity, EvalError<E>> {
    let mut total = Perplexity::default();
    let mut this = Perplexity::default();
    let on = |event: Event<'_>| match event {
        Event::Rows {
            chunk,
            logits,
            next,
        } => {
            // Added in order: the same sums as one by one.
            let nll = row_nlls(logits, next).map_err(|error| EvalError::Logits { chunk, error })?;
            for v in nll {
                total.add_nll(v);
                this.add_nll(v);
            }
            Ok(())
        }
        Event::ChunkDone(i) => {
            chunk_done(i, &total, &this).map_err(EvalError::Caller)?;
            this = Perplexity::default();
            Ok(())
        }
    };
    run_plan(tokens, plan, bos, max_rows, step, on, drop)?;
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_follow_llama_cpp() {
        // llama-perplexity: at least 2 * n_ctx tokens, n_chunk = tokens /
        // n_ctx, scored n_ctx - 1 - n_ctx / 2 a chunk.
        let c = chunks(1024, 512, None).unwrap();
        assert_eq!((c.chunks, c.first, c.per_chunk()), (2, 256, 255));
        assert_eq!(c.range(1), 512..1024);
        assert_eq!(chunks(5000, 512, Some(3)).unwrap().chunks, 3);
        assert_eq!(chunks(5000, 512, Some(30)).unwrap().chunks, 9);
        let odd = chunks(14, 7, None).unwrap();
        assert_eq!((odd.first, odd.per_chunk()), (3, 3));
        assert_eq!(
            chunks(1023, 512, None),
            Err(PerplexityError::TooFewTokens {
                tokens: 1023,
                n_ctx: 512
            })
        );
        let three = chunks(6, 3, None).unwrap();
        assert_eq!((three.chunks, three.first, three.per_chunk()), (2, 1, 1));
        assert_eq!(
            chunks(100, 2, None),
            Err(PerplexityError::ContextTooSmall(2))
        );
        assert_eq!(chunks(100, 3, Some(0)), Err(PerplexityError::NoChunks));
        // Sizes from a hostile --ctx do not overflow.
        assert!(chunks(usize::MAX, usize::MAX, None).is_err());
        let msg = chunks(3, usize::MAX, None).unwrap_err().to_string();
        assert!(msg.contains("needs at least 36893488147419103230"), "{msg}");
    }

    #[test]
    fn log_prob_is_llama_cpps() {
        // Written out as llama.cpp's log_softmax: max in f32, sum in f64.
        let logits = [1.5f32, -2.25, 3.0, 0.125, 3.0];
        let max = 3.0f32;
        let sum: f64 = logits.iter().map(|&l| f64::from((l - max).exp())).sum();
        for t in 0..5 {
            let want = f64::from(logits[t] - max) - sum.ln();
            assert_eq!(
                log_prob(&logits, t as u32).unwrap().to_bits(),
                want.to_bits()
            );
        }
        let p: f64 = (0..5).map(|t| log_prob(&logits, t).unwrap().exp()).sum();
        // (each exp in f32, as llama.cpp's expf)
        assert!((p - 1.0).abs() < 1e-6);
        // -inf logits are probability 0; the row still normalizes.
        let lp = log_prob(&[f32::NEG_INFINITY, 0.0], 0).unwrap();
        assert_eq!(lp, f64::NEG_INFINITY);
        assert!(log_prob(&[0.0, f32::NAN], 0).is_err());
        assert!(log_prob(&[f32::NAN, 0.0], 1).is_err());
        assert!(log_prob(&[f32::INFINITY, 0.0], 1).is_err());
        assert!(log_prob(&[f32::NEG_INFINITY; 3], 1).is_err());
        assert!(log_prob(&[0.0; 3], 3).is_err());
        assert!(log_prob(&[], 0).is_err());
    }

    #[test]
    fn row_nlls_are_log_prob_row_by_row() {
        let logits = [0.0f32, 1.0, 2.0, 3.0, -1.0, 0.5];
        let nll = row_nlls(&logits, &[2, 0]).unwrap();
        let want = [
            -log_prob(&logits[..3], 2).unwrap(),
            -log_prob(&logits[3..], 0).unwrap(),
        ];
        assert_eq!(nll, want);
        // The first bad row's error, in order; rows that are not whole.
        let e = row_nlls(&[0.0, f32::NAN, f32::NAN, 0.0], &[5, 0]).unwrap_err();
        assert!(e.to_string().contains("token 5 is past"), "{e}");
        assert!(row_nlls(&logits, &[0; 4]).is_err());
        assert!(row_nlls(&logits, &[]).is_err());
        assert!(row_nlls(&[], &[0]).is_err());
    }

    #[test]
    fn perplexity_and_its_error() {
        let mut p = Perplexity::default();
        assert_eq!(p.error(), None);
        assert!(p.value().is_nan());
        // Two tokens: probabilities 1/2 and 1/4.
        let a = p.add(&[0.0, 0.0], 0).unwrap();
        let b = p.add(&[0.0, 0.0, 0.0, 0.0], 3).unwrap();
        assert!((a - 2f64.ln()).abs() < 1e-15 && (b - 4f64.ln()).abs() < 1e-15);
        assert_eq!(p.count(), 2);
        assert!((p.value() - 8f64.sqrt()).abs() < 1e-12);
        // llama.cpp: sqrt((mean(v²) - mean(v)²) / (n - 1)) * ppl.
        let mean = (a + b) / 2.0;
        let var = (a * a + b * b) / 2.0 - mean * mean;
        let want = (var / 1.0).sqrt() * mean.exp();
        assert!((p.error().unwrap() - want).abs() < 1e-12);
        // Equal likelihoods: no spread, no error.
        let mut q = Perplexity::default();
        q.add(&[0.0, 0.0], 0).unwrap();
        q.add(&[0.0, 0.0], 1).unwrap();
        assert_eq!(q.error(), None);
        // A bad row leaves the sums as they were.
        assert!(q.add(&[0.0], 1).is_err());
        assert_eq!(q.count(), 2);
    }

    /// The steps `evaluate` asks for, and the token each row is scored
    /// against: a fake forward pass whose row for input `t` puts its mass
    /// on `t + 1`, over tokens that count up, scores every token at the
    /// same probability only if each row meets the token after its input.
    #[test]
    fn evaluate_runs_llama_cpps_chunks() {
        let tokens: Vec<u32> = (0..20).collect();
        let plan = chunks(tokens.len(), 8, None).unwrap();
        assert_eq!((plan.chunks, plan.first, plan.per_chunk()), (2, 4, 3));
        let mut calls = Vec::new();
        let mut done = Vec::new();
        const V: usize = 64;
        let ppl = evaluate(
            &tokens,
            &plan,
            Some(63),
            2,
            |ids, fresh, all| {
                calls.push((ids.to_vec(), fresh, all));
                let mut rows = Vec::new();
                for &t in ids.iter().filter(|_| all) {
                    let mut row = [0f32; V];
                    row[(t as usize + 1) % V] = 10.0;
                    rows.extend(row);
                }
                Ok::<_, ()>(rows)
            },
            |i, total, this| {
                done.push((i, total.count(), this.count()));
                Ok(())
            },
        )
        .unwrap();
        let want: Vec<(Vec<u32>, bool, bool)> = vec![
            (vec![63, 1, 2, 3], true, false),
            (vec![4, 5], false, true),
            (vec![6], false, true),
            (vec![63, 9, 10, 11], true, false),
            (vec![12, 13], false, true),
            (vec![14], false, true),
        ];
        assert_eq!(calls, want);
        assert_eq!(done, vec![(0, 3, 3), (1, 6, 3)]);
        // Every scored token at e^10 / (e^10 + 63).
        let p = (10f64).exp() / ((10f64).exp() + 63.0);
        assert_eq!(ppl.count(), 6);
        assert!((ppl.value() - 1.0 / p).abs() < 1e-5, "{}", ppl.value());

        // A row short of the vocabulary's token, rows that are not whole,
        // a plan of other tokens, a failing step: errors, not panics.
        let rows = |n: usize| {
            move |ids: &[u32], _: bool, all: bool| {
                Ok::<_, &str>(if all {
                    vec![0.0; ids.len() * n]
                } else {
                    vec![]
                })
            }
        };
        let e = evaluate(&tokens, &plan, None, 2, rows(2), |_, _, _| Ok(())).unwrap_err();
        assert!(e.to_string().starts_with("chunk 1: token 5 is past"), "{e}");
        let odd = |ids: &[u32], _: bool, all: bool| {
            Ok::<_, &str>(if all {
                vec![0.0; ids.len() * 30 + 1]
            } else {
                vec![]
            })
        };
        let e = evaluate(&tokens, &plan, None, 2, odd, |_, _, _| Ok(())).unwrap_err();
        assert!(e.to_string().contains("61 logits for 2 positions"), "{e}");
        let e = evaluate(&tokens[..10], &plan, None, 2, rows(V), |_, _, _| Ok(())).unwrap_err();
        assert!(matches!(e, EvalError::Logits { chunk: 1, .. }), "{e}");
        let failing = |_: &[u32], _: bool, _: bool| Err::<Vec<f32>, _>("no");
        let e = evaluate(&tokens, &plan, None, 2, failing, |_, _, _| Ok(())).unwrap_err();
        assert!(matches!(e, EvalError::Caller("no")));
        // Plans made by hand that do not fit: errors, not overflows.
        for (n_ctx, first, chunks) in [(0, 1, 1), (4, 3, 1), (usize::MAX, 1, 3), (8, 0, 1)] {
            let odd = Chunks {
                n_ctx,
                chunks,
                first,
            };
            let e = evaluate(&tokens, &odd, None, 2, rows(V), |_, _, _| Ok(())).unwrap_err();
            assert!(matches!(e, EvalError::Logits { .. }), "{odd:?}: {e}");
        }
        // max_rows 0 counts as 1.
        let ppl = evaluate(&tokens, &plan, None, 0, rows(V), |_, _, _| Ok(())).unwrap();
        assert_eq!(ppl.count(), 6);
    }
}
