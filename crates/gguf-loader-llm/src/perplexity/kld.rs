//! The KL divergence of a model's token distributions from a base model's,
//! as llama.cpp's `llama-perplexity` computes it: a run with
//! `--kl-divergence-base FILE` writes the base model's log-probabilities of
//! every scored position to `FILE`, and a run with `--kl-divergence` reads
//! them back and compares another model's (a quantization of the base, or
//! the same weights in another engine) position by position.
//!
//! The file is llama.cpp's, byte for byte, so either side may be llama.cpp:
//!
//! | bytes | what |
//! |---|---|
//! | 8 | `_logits_` |
//! | 4 | `n_ctx` (u32) |
//! | 4, 4 | `n_vocab`, `n_chunk` (i32) |
//! | `4 · n_ctx · n_chunk` | the text's tokens (i32), BOS not put in place |
//! | then per chunk, per scored position | a row of [`row_bytes`] bytes |
//!
//! All little-endian (llama.cpp writes its host's order; every host it
//! runs on is little-endian). A row is two f32, `scale` and
//! `min_log_prob`, then a u16 `q` per token (an even count: one of padding
//! where the vocabulary is odd), the log-probability being
//! `scale · q + min_log_prob`: the row's log-probabilities from the largest
//! down to 16 nats below it in 65,535 steps, anything lower as the lowest
//! ([`encode_row`]).
//!
//! [`compare_row`] and [`Divergence`] follow llama.cpp's `log_softmax` and
//! `kl_divergence` operation for operation (f32 where it computes in f32,
//! f64 where it sums in f64), and [`Summary`] its statistics: the two
//! perplexities and their ratio, the KL divergence (mean, percentiles), the
//! change in the probability of the text's token (Δp) and how often both
//! models put the same token first.
//!
//! ```
//! use gguf_loader_llm::perplexity::kld::{compare_row, encode_row, row_bytes, Divergence};
//!
//! let base = [1.0f32, 2.0, 0.5, -3.0];
//! let mut row = vec![0u8; row_bytes(base.len())];
//! let nll = encode_row(&base, 1, &mut row).unwrap();
//! assert!((nll - 0.4686).abs() < 1e-4); // ln(1 + e^-1 + e^-1.5 + e^-5)
//!
//! // The same logits: no divergence, the same top token.
//! let mut d = Divergence::default();
//! d.add(compare_row(&base, &row, 1).unwrap());
//! let s = d.summary();
//! assert!(s.kld.0.abs() < 1e-5 && s.same_top.0 == 1.0);
//! ```

use std::fmt;

use super::PerplexityError;

/// The first 8 bytes of a log-probability file.
pub const MAGIC: &[u8; 8] = b"_logits_";

/// The bytes before the tokens: magic, `n_ctx`, `n_vocab`, `n_chunk`.
pub const HEADER_BYTES: usize = 20;

/// The bytes of a row of `n_vocab` log-probabilities: two f32 and an even
/// count of u16 (llama.cpp's `2 * ((n_vocab + 1) / 2) + 4` u16).
pub fn row_bytes(n_vocab: usize) -> usize {
    2 * (2 * n_vocab.div_ceil(2) + 4)
}

/// A malformed log-probability file: what is wrong, and at which byte.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("byte {offset}: {message}")]
pub struct FileError {
    /// Where in the file.
    pub offset: u64,
    /// What is wrong.
    pub message: String,
}

fn file_error(offset: u64, message: impl Into<String>) -> FileError {
    FileError {
        offset,
        message: message.into(),
    }
}

/// The header of a log-probability file, and the layout it implies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Tokens a chunk.
    pub n_ctx: usize,
    /// Tokens in the vocabulary: the length of a row of logits.
    pub n_vocab: usize,
    /// Chunks in the file.
    pub chunks: usize,
}

impl Header {
    /// Reads and checks the header from the file's first bytes (at least
    /// [`HEADER_BYTES`]): the magic, a context of at least 3 (as
    /// [`super::chunks`] asks), a vocabulary and a chunk count above 0 that
    /// fit an i32, and a layout whose size fits a u64.
    pub fn parse(bytes: &[u8]) -> Result<Header, FileError> {
        let Some(head) = bytes.get(..HEADER_BYTES) else {
            return Err(file_error(
                bytes.len() as u64,
                format!(
                    "the file ends in its header ({} bytes of {HEADER_BYTES})",
                    bytes.len()
                ),
            ));
        };
        if &head[..8] != MAGIC {
            return Err(file_error(
                0,
                "not a file of log-probabilities (no \"_logits_\" first): \
                 one written by --kl-divergence-base is wanted",
            ));
        }
        let word =
            |at: usize| u32::from_le_bytes([head[at], head[at + 1], head[at + 2], head[at + 3]]);
        let (n_ctx, n_vocab, chunks) = (word(8), word(12), word(16));
        if n_ctx < 3 {
            return Err(file_error(
                8,
                format!("a context of {n_ctx} tokens scores none; at least 3 are needed"),
            ));
        }
        for (at, what, v) in [(12, "vocabulary", n_vocab), (16, "chunk count", chunks)] {
            if v == 0 || v > i32::MAX as u32 {
                return Err(file_error(at, format!("a {what} of {} (as i32)", v as i32)));
            }
        }
        let h = Header {
            n_ctx: n_ctx as usize,
            n_vocab: n_vocab as usize,
            chunks: chunks as usize,
        };
        if h.file_bytes().is_none() {
            return Err(file_error(
                8,
                format!(
                    "{} chunks of {} tokens over a vocabulary of {} would take more \
                     than 2^64 bytes",
                    h.chunks, h.n_ctx, h.n_vocab
                ),
            ));
        }
        Ok(h)
    }

    /// The header's 20 bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_BYTES] {
        let mut b = [0u8; HEADER_BYTES];
        b[..8].copy_from_slice(MAGIC);
        for (at, v) in [(8, self.n_ctx), (12, self.n_vocab), (16, self.chunks)] {
            b[at..at + 4].copy_from_slice(&(v as u32).to_le_bytes());
        }
        b
    }

    /// The plan the file was written with: its chunks of `n_ctx`, the
    /// second half of each scored.
    pub fn plan(&self) -> super::Chunks {
        super::Chunks {
            n_ctx: self.n_ctx,
            chunks: self.chunks,
            first: self.n_ctx / 2,
        }
    }

    /// The bytes of the tokens (after the header).
    pub fn token_bytes(&self) -> Option<u64> {
        (self.n_ctx as u64)
            .checked_mul(self.chunks as u64)?
            .checked_mul(4)
    }

    /// The bytes of a chunk's rows.
    pub fn chunk_bytes(&self) -> Option<u64> {
        let rows = (self.n_ctx - 1 - self.n_ctx / 2) as u64;
        rows.checked_mul(row_bytes(self.n_vocab) as u64)
    }

    /// The whole file's bytes; `None` past a u64.
    pub fn file_bytes(&self) -> Option<u64> {
        (HEADER_BYTES as u64)
            .checked_add(self.token_bytes()?)?
            .checked_add(self.chunk_bytes()?.checked_mul(self.chunks as u64)?)
    }

    /// Reads the tokens from their bytes (the [`token_bytes`](Self::token_bytes)
    /// after the header), each checked to be in the vocabulary.
    pub fn tokens(&self, bytes: &[u8]) -> Result<Vec<u32>, FileError> {
        let want = self.token_bytes().unwrap_or(u64::MAX);
        if bytes.len() as u64 != want {
            return Err(file_error(
                HEADER_BYTES as u64,
                format!("{} bytes of tokens, not {want}", bytes.len()),
            ));
        }
        bytes
            .chunks_exact(4)
            .enumerate()
            .map(|(i, b)| {
                let t = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                if (t as usize) < self.n_vocab {
                    Ok(t)
                } else {
                    Err(file_error(
                        (HEADER_BYTES + 4 * i) as u64,
                        format!(
                            "token {} is not in the vocabulary of {}",
                            t as i32, self.n_vocab
                        ),
                    ))
                }
            })
            .collect()
    }
}

/// llama.cpp's `nearest_int`: the nearest integer, ties to even, by adding
/// 1.5 · 2^23 (exact for |x| < 2^22), then stored as a u16 (as llama.cpp's
/// `uint16_t`).
fn nearest_u16(x: f32) -> u16 {
    let bits = (x + 12_582_912.0).to_bits() as i32;
    ((bits & 0x007f_ffff) - 0x0040_0000) as u16
}

/// Writes the log-probabilities of a row of `logits` to `out` (of
/// [`row_bytes`]`(logits.len())` bytes) as llama.cpp's `log_softmax` does
/// for `--kl-divergence-base`, and returns the negative log likelihood of
/// `token` as it computes it there (in f32). Errs where `out` is not a
/// row's size, and as [`super::log_prob`] does.
pub fn encode_row(logits: &[f32], token: u32, out: &mut [u8]) -> Result<f32, PerplexityError> {
    let (lt, max) = super::checked_row(logits, token)?;
    if out.len() != row_bytes(logits.len()) {
        return Err(PerplexityError::BadLogits(format!(
            "a row of {} logits takes {} bytes, not {}",
            logits.len(),
            row_bytes(logits.len()),
            out.len()
        )));
    }
    let min = logits
        .iter()
        .copied()
        .fold(f32::INFINITY, f32::min)
        .max(max - 16.0);
    let sum: f64 = logits.iter().map(|&l| f64::from((l - max).exp())).sum();
    let log_sum_exp = sum.ln() as f32;
    let min_log_prob = min - max - log_sum_exp;
    let scale = (max - min) / 65535.0;
    out[..4].copy_from_slice(&scale.to_le_bytes());
    out[4..8].copy_from_slice(&min_log_prob.to_le_bytes());
    let (q, pad) = out[8..].split_at_mut(2 * logits.len());
    if scale != 0.0 {
        let inv_scale = 1.0 / scale;
        for (o, &l) in q.chunks_exact_mut(2).zip(logits) {
            let v = if l > min {
                nearest_u16(inv_scale * (l - min))
            } else {
                0
            };
            o.copy_from_slice(&v.to_le_bytes());
        }
    } else {
        q.fill(0);
    }
    pad.fill(0);
    Ok(max + log_sum_exp - lt)
}

/// One position compared with the base's: what [`Divergence::add`] sums.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RowStats {
    /// The negative log likelihood of the token under the model (f32, as
    /// llama.cpp).
    pub nll: f32,
    /// ... and under the base.
    pub nll_base: f32,
    /// KL(base ‖ model) over the tokens the base gives more than e^-16.
    pub kld: f64,
    /// The token's probability under the model less the base's.
    pub p_diff: f32,
    /// Whether both put the same token first (the first such, in
    /// vocabulary order).
    pub same_top: bool,
}

/// Compares a row of `logits` with the base's row `base` (as
/// [`encode_row`] writes it) at the position whose next token is `token`:
/// llama.cpp's `log_softmax` of `kl_divergence`. Errs where the row sizes
/// differ, and as [`super::log_prob`] does.
pub fn compare_row(logits: &[f32], base: &[u8], token: u32) -> Result<RowStats, PerplexityError> {
    let (lt, _) = super::checked_row(logits, token)?;
    if base.len() != row_bytes(logits.len()) {
        return Err(PerplexityError::BadLogits(format!(
            "a base row of {} bytes against {} logits (of {} bytes): another vocabulary",
            base.len(),
            logits.len(),
            row_bytes(logits.len())
        )));
    }
    let mut max = logits[0];
    let mut imax = 0;
    for (i, &l) in logits.iter().enumerate().skip(1) {
        if l > max {
            max = l;
            imax = i;
        }
    }
    let sum: f64 = logits.iter().map(|&l| f64::from((l - max).exp())).sum();
    let log_sum_exp = sum.ln() as f32;
    let f = |at: usize| f32::from_le_bytes([base[at], base[at + 1], base[at + 2], base[at + 3]]);
    let (scale, min_log_prob) = (f(0), f(4));
    let q = |i: usize| f32::from(u16::from_le_bytes([base[8 + 2 * i], base[9 + 2 * i]]));
    let nll = max + log_sum_exp - lt;
    let nll_base = -(scale * q(token as usize) + min_log_prob);
    let max = max + log_sum_exp;
    let mut kld = 0f64;
    let mut imax_base = 0;
    let mut p_log_base_max = 0f32;
    for (i, &l) in logits.iter().enumerate() {
        let p_log_base = scale * q(i) + min_log_prob;
        if i == 0 || p_log_base > p_log_base_max {
            p_log_base_max = p_log_base;
            imax_base = i;
        }
        if p_log_base > -16.0 {
            let p_base = p_log_base.exp();
            kld += f64::from(p_base * (p_log_base - l + max));
        }
    }
    Ok(RowStats {
        nll,
        nll_base,
        kld,
        p_diff: (-nll).exp() - (-nll_base).exp(),
        same_top: imax == imax_base,
    })
}

/// The running sums of a comparison (llama.cpp's `kl_divergence_result`),
/// and every position's KL divergence and Δp for the percentiles.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Divergence {
    sum_nll: f64,
    sum_nll2: f64,
    sum_nll_base: f64,
    sum_nll_base2: f64,
    sum_nll_nll_base: f64,
    sum_kld: f64,
    sum_kld2: f64,
    sum_p_diff: f64,
    sum_p_diff2: f64,
    sum_p_diff4: f64,
    max_p_diff: f32,
    same_top: usize,
    kld: Vec<f32>,
    p_diff: Vec<f32>,
}

/// A mean and its uncertainty (standard error), as llama.cpp's
/// `mean_and_uncertainty` gives them: 0 for the uncertainty up to 10
/// values or without spread.
fn mean_and_uncertainty(sum: f64, sum2: f64, count: usize) -> (f64, f64) {
    if count < 1 {
        return (0.0, 0.0);
    }
    let n = count as f64;
    let f = sum / n;
    let df = sum2 / n - f * f;
    let df = if df > 0.0 && count > 10 {
        (df / (n - 1.0)).sqrt()
    } else {
        0.0
    };
    (f, df)
}

/// llama.cpp's `covariance` (of the two means): 0 under 10 values.
fn covariance(suma: f64, sumb: f64, sumab: f64, count: usize) -> f64 {
    if count < 10 {
        return 0.0;
    }
    let n = count as f64;
    (sumab / n - (suma / n) * (sumb / n)) / (n - 1.0)
}

/// llama.cpp's `percentile` of sorted values (interpolated, in f32).
fn percentile(sorted: &[f32], fraction: f32) -> f32 {
    let (Some(&first), Some(&last)) = (sorted.first(), sorted.last()) else {
        return f32::NAN;
    };
    if fraction <= 0.0 {
        return first;
    }
    if fraction >= 1.0 {
        return last;
    }
    let p = fraction * (sorted.len() - 1) as f32;
    // (Within the values for any length: f32 rounding cannot carry it past.)
    let ip = (p as usize).min(sorted.len() - 1);
    let p = p - ip as f32;
    (1.0 - p) * sorted[ip] + p * sorted[(ip + 1).min(sorted.len() - 1)]
}

fn median(sorted: &[f32]) -> f32 {
    let n = sorted.len();
    match n {
        0 => f32::NAN,
        _ if n.is_multiple_of(2) => 0.5 * (sorted[n / 2] + sorted[n / 2 - 1]),
        _ => sorted[n / 2],
    }
}

/// The percentiles llama.cpp prints of the KL divergence (and, with 0.75,
/// 0.5 and 0.25 added, of Δp), highest first.
pub const KLD_PERCENTILES: [f32; 8] = [0.999, 0.99, 0.95, 0.90, 0.10, 0.05, 0.01, 0.001];

/// ... and of Δp.
pub const P_DIFF_PERCENTILES: [f32; 10] =
    [0.999, 0.99, 0.95, 0.90, 0.75, 0.25, 0.10, 0.05, 0.01, 0.001];

/// What a comparison found: each value a mean and its uncertainty where
/// a pair, as llama.cpp prints them.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Positions compared.
    pub count: usize,
    /// The model's perplexity, ±.
    pub ppl: (f64, f64),
    /// The base's perplexity (from its stored log-probabilities), ±.
    pub ppl_base: (f64, f64),
    /// The correlation of the two mean log likelihoods.
    pub ln_ppl_correlation: f64,
    /// ln(PPL / PPL(base)), ±.
    pub ln_ppl_ratio: (f64, f64),
    /// PPL / PPL(base), ±.
    pub ppl_ratio: (f64, f64),
    /// PPL - PPL(base), ±.
    pub ppl_diff: (f64, f64),
    /// The mean KL divergence, ±.
    pub kld: (f64, f64),
    /// The largest, the median and the smallest KL divergence.
    pub kld_max: f32,
    /// ...
    pub kld_median: f32,
    /// ...
    pub kld_min: f32,
    /// The KL divergence at each of [`KLD_PERCENTILES`].
    pub kld_percentiles: Vec<(f32, f32)>,
    /// The mean Δp (the token's probability under the model less the
    /// base's), ±.
    pub p_diff: (f64, f64),
    /// The largest, the median and the smallest Δp.
    pub p_diff_max: f32,
    /// ...
    pub p_diff_median: f32,
    /// ...
    pub p_diff_min: f32,
    /// Δp at each of [`P_DIFF_PERCENTILES`].
    pub p_diff_percentiles: Vec<(f32, f32)>,
    /// The root mean square of Δp, ±.
    pub p_diff_rms: (f64, f64),
    /// The largest |Δp|.
    pub p_diff_abs_max: f32,
    /// The share of positions where both put the same token first, ±.
    pub same_top: (f64, f64),
}

impl Divergence {
    /// Counts a position (from [`compare_row`]).
    pub fn add(&mut self, r: RowStats) {
        // The sums as llama.cpp's: the squares of f32 values in f32.
        self.sum_nll += f64::from(r.nll);
        self.sum_nll2 += f64::from(r.nll * r.nll);
        self.sum_nll_base += f64::from(r.nll_base);
        self.sum_nll_base2 += f64::from(r.nll_base * r.nll_base);
        self.sum_nll_nll_base += f64::from(r.nll * r.nll_base);
        self.sum_kld += r.kld;
        self.sum_kld2 += r.kld * r.kld;
        self.sum_p_diff += f64::from(r.p_diff);
        let p_diff2 = f64::from(r.p_diff * r.p_diff);
        self.sum_p_diff2 += p_diff2;
        self.sum_p_diff4 += p_diff2 * p_diff2;
        self.max_p_diff = self.max_p_diff.max(r.p_diff.abs());
        self.same_top += usize::from(r.same_top);
        self.kld.push(r.kld as f32);
        self.p_diff.push(r.p_diff);
    }

    /// Positions counted.
    pub fn count(&self) -> usize {
        self.kld.len()
    }

    /// The figures of llama.cpp's line per chunk: the model's perplexity,
    /// ln(PPL / PPL(base)), the mean KL divergence, the RMS of Δp and the
    /// share of the same top token, each with its uncertainty.
    pub fn running(&self) -> [(f64, f64); 5] {
        let s = self.summary_means();
        [s.ppl, s.ln_ppl_ratio, s.kld, s.p_diff_rms, s.same_top]
    }

    fn summary_means(&self) -> Summary {
        let n = self.count();
        let log_ppl = mean_and_uncertainty(self.sum_nll, self.sum_nll2, n);
        let ppl = log_ppl.0.exp();
        let ppl_unc = ppl * log_ppl.1;
        let log_base = mean_and_uncertainty(self.sum_nll_base, self.sum_nll_base2, n);
        let ppl_base = log_base.0.exp();
        let ppl_base_unc = ppl_base * log_base.1;
        let cov = covariance(self.sum_nll, self.sum_nll_base, self.sum_nll_nll_base, n);
        let ratio = log_ppl.0 - log_base.0;
        let ratio_unc = (log_ppl.1 * log_ppl.1 + log_base.1 * log_base.1 - 2.0 * cov).sqrt();
        let ppl_cov = ppl * ppl_base * cov;
        let mse = mean_and_uncertainty(self.sum_p_diff2, self.sum_p_diff4, n);
        let rms = mse.0.sqrt();
        let top = self.same_top as f64 / n as f64;
        Summary {
            count: n,
            ppl: (ppl, ppl_unc),
            ppl_base: (ppl_base, ppl_base_unc),
            ln_ppl_correlation: cov / (log_ppl.1 * log_base.1),
            ln_ppl_ratio: (ratio, ratio_unc),
            ppl_ratio: (ratio.exp(), ratio.exp() * ratio_unc),
            ppl_diff: (
                ppl - ppl_base,
                (ppl_unc * ppl_unc + ppl_base_unc * ppl_base_unc - 2.0 * ppl_cov).sqrt(),
            ),
            kld: mean_and_uncertainty(self.sum_kld, self.sum_kld2, n),
            kld_max: f32::NAN,
            kld_median: f32::NAN,
            kld_min: f32::NAN,
            kld_percentiles: Vec::new(),
            p_diff: mean_and_uncertainty(self.sum_p_diff, self.sum_p_diff2, n),
            p_diff_max: f32::NAN,
            p_diff_median: f32::NAN,
            p_diff_min: f32::NAN,
            p_diff_percentiles: Vec::new(),
            p_diff_rms: (rms, 0.5 / rms * mse.1),
            p_diff_abs_max: self.max_p_diff,
            same_top: (top, (top * (1.0 - top) / (n as f64 - 1.0)).sqrt()),
        }
    }

    /// Every statistic llama.cpp prints at the end of a comparison
    /// (it prints them from 100 positions on; they are given from 1).
    pub fn summary(&self) -> Summary {
        let mut s = self.summary_means();
        let sorted = |v: &[f32]| {
            let mut v = v.to_vec();
            v.sort_by(f32::total_cmp);
            v
        };
        let (kld, p_diff) = (sorted(&self.kld), sorted(&self.p_diff));
        s.kld_max = kld.last().copied().unwrap_or(f32::NAN);
        s.kld_median = median(&kld);
        s.kld_min = kld.first().copied().unwrap_or(f32::NAN);
        s.kld_percentiles = KLD_PERCENTILES
            .iter()
            .map(|&f| (f, percentile(&kld, f)))
            .collect();
        s.p_diff_max = p_diff.last().copied().unwrap_or(f32::NAN);
        s.p_diff_median = median(&p_diff);
        s.p_diff_min = p_diff.first().copied().unwrap_or(f32::NAN);
        s.p_diff_percentiles = P_DIFF_PERCENTILES
            .iter()
            .map(|&f| (f, percentile(&p_diff, f)))
            .collect();
        s
    }
}

impl fmt::Display for Summary {
    /// llama.cpp's closing statistics, line for line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pm = |(v, u): (f64, f64)| format!("{v:10.6} ± {u:10.6}");
        // A run of percentile lines: " 5.0%   KLD:   0.000123".
        let percentiles = |f: &mut fmt::Formatter<'_>,
                           rows: &[(f32, f32)],
                           what: &str,
                           value: &dyn Fn(f32) -> String| {
            rows.iter().try_for_each(|&(p, v)| {
                writeln!(
                    f,
                    "{:>5}   {what}: {}",
                    format!("{:.1}%", 100.0 * p),
                    value(v)
                )
            })
        };
        let kld = |v: f32| format!("{v:10.6}");
        let p_diff = |v: f32| format!("{:6.3}%", 100.0 * v);
        writeln!(f, "====== Perplexity statistics ======")?;
        writeln!(f, "Mean PPL(Q)                   : {}", pm(self.ppl))?;
        writeln!(f, "Mean PPL(base)                : {}", pm(self.ppl_base))?;
        writeln!(
            f,
            "Cor(ln(PPL(Q)), ln(PPL(base))): {:6.2}%",
            100.0 * self.ln_ppl_correlation
        )?;
        writeln!(
            f,
            "Mean ln(PPL(Q)/PPL(base))     : {}",
            pm(self.ln_ppl_ratio)
        )?;
        writeln!(f, "Mean PPL(Q)/PPL(base)         : {}", pm(self.ppl_ratio))?;
        writeln!(f, "Mean PPL(Q)-PPL(base)         : {}", pm(self.ppl_diff))?;
        writeln!(f)?;
        writeln!(f, "====== KL divergence statistics ======")?;
        writeln!(f, "Mean    KLD: {}", pm(self.kld))?;
        writeln!(f, "Maximum KLD: {}", kld(self.kld_max))?;
        percentiles(f, &self.kld_percentiles[..4], "KLD", &kld)?;
        writeln!(f, "Median  KLD: {}", kld(self.kld_median))?;
        percentiles(f, &self.kld_percentiles[4..], "KLD", &kld)?;
        writeln!(f, "Minimum KLD: {}", kld(self.kld_min))?;
        writeln!(f)?;
        writeln!(f, "====== Token probability statistics ======")?;
        writeln!(
            f,
            "Mean    Δp: {:6.3} ± {:5.3} %",
            100.0 * self.p_diff.0,
            100.0 * self.p_diff.1
        )?;
        writeln!(f, "Maximum Δp: {}", p_diff(self.p_diff_max))?;
        percentiles(f, &self.p_diff_percentiles[..5], "Δp", &p_diff)?;
        writeln!(f, "Median  Δp: {}", p_diff(self.p_diff_median))?;
        percentiles(f, &self.p_diff_percentiles[5..], "Δp", &p_diff)?;
        writeln!(f, "Minimum Δp: {}", p_diff(self.p_diff_min))?;
        writeln!(
            f,
            "RMS Δp    : {:6.3} ± {:5.3} %",
            100.0 * self.p_diff_rms.0,
            100.0 * self.p_diff_rms.1
        )?;
        write!(
            f,
            "Same top p: {:6.3} ± {:5.3} %",
            100.0 * self.same_top.0,
            100.0 * self.same_top.1
        )
    }
}

/// llama.cpp's header over the lines of a comparison, chunk by chunk.
pub const CHUNK_HEADER: &str = "chunk             PPL               ln(PPL(Q)/PPL(base))          KL Divergence              Δp RMS            Same top p";

/// llama.cpp's line for chunk `chunk` (from 0) of a comparison, from
/// [`Divergence::running`].
pub fn chunk_line(chunk: usize, running: [(f64, f64); 5]) -> String {
    let [ppl, ratio, kld, rms, top] = running;
    format!(
        "{:4}    {:9.4} ± {:9.4}    {:10.5} ± {:10.5}    {:10.5} ± {:10.5}    {:6.3} ± {:6.3} %    {:6.3} ± {:6.3} %",
        chunk + 1,
        ppl.0,
        ppl.1,
        ratio.0,
        ratio.1,
        kld.0,
        kld.1,
        100.0 * rms.0,
        100.0 * rms.1,
        100.0 * top.0,
        100.0 * top.1
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_refusals() {
        let h = Header {
            n_ctx: 128,
            n_vocab: 49152,
            chunks: 17,
        };
        let b = h.to_bytes();
        assert_eq!(&b[..8], b"_logits_");
        assert_eq!(Header::parse(&b), Ok(h));
        assert_eq!(h.plan().per_chunk(), 63);
        assert_eq!(row_bytes(49152), 2 * 49156);
        assert_eq!(row_bytes(5), 2 * 10);
        assert_eq!(
            h.file_bytes(),
            Some(20 + 4 * 128 * 17 + 17 * 63 * 2 * 49156)
        );
        let bad = |f: &dyn Fn(&mut [u8; 20])| {
            let mut b = h.to_bytes();
            f(&mut b);
            Header::parse(&b).unwrap_err()
        };
        assert_eq!(bad(&|b| b[0] = b'X').offset, 0);
        assert_eq!(
            bad(&|b| b[8..12].copy_from_slice(&2u32.to_le_bytes())).offset,
            8
        );
        assert_eq!(bad(&|b| b[12..16].fill(0)).offset, 12);
        assert_eq!(bad(&|b| b[16..20].fill(0xff)).offset, 16);
        let huge = bad(&|b| {
            b[8..12].fill(0xff);
            b[12..16].copy_from_slice(&i32::MAX.to_le_bytes());
            b[16..20].copy_from_slice(&i32::MAX.to_le_bytes());
        });
        assert!(huge.message.contains("2^64"), "{huge}");
        assert_eq!(Header::parse(&b[..19]).unwrap_err().offset, 19);
        // Tokens: each in the vocabulary, the right count.
        let small = Header {
            n_ctx: 3,
            n_vocab: 10,
            chunks: 1,
        };
        let toks: Vec<u8> = [1u32, 9, 0].iter().flat_map(|t| t.to_le_bytes()).collect();
        assert_eq!(small.tokens(&toks), Ok(vec![1, 9, 0]));
        let mut out = toks.clone();
        out[4..8].copy_from_slice(&10u32.to_le_bytes());
        assert_eq!(small.tokens(&out).unwrap_err().offset, 24);
        out[4..8].copy_from_slice(&(-1i32).to_le_bytes());
        assert!(small.tokens(&out).unwrap_err().message.contains("token -1"));
        assert!(small.tokens(&toks[..8]).is_err());
    }

    #[test]
    fn rows_as_llama_cpp_writes_and_reads_them() {
        // nearest_int: ties to even, as llama.cpp's.
        assert_eq!(
            [0.5f32, 1.5, 2.5, 65534.6, 0.49].map(nearest_u16),
            [0, 2, 2, 65535, 0]
        );
        let logits = [2.0f32, -30.0, 1.0, 2.0, 0.0];
        let mut row = vec![0xaau8; row_bytes(5)];
        let nll = encode_row(&logits, 2, &mut row).unwrap();
        let max = 2.0f32;
        let sum: f64 = logits.iter().map(|&l| f64::from((l - max).exp())).sum();
        let lse = sum.ln() as f32;
        assert_eq!(nll.to_bits(), (max + lse - 1.0).to_bits());
        let scale = f32::from_le_bytes(row[..4].try_into().unwrap());
        let min_lp = f32::from_le_bytes(row[4..8].try_into().unwrap());
        // Lowest kept: 16 below the largest (-30 is lower: stored as 0).
        assert_eq!(scale, 16.0 / 65535.0);
        assert_eq!(min_lp, (-14.0f32 - max) - lse);
        let q: Vec<u16> = row[8..18]
            .chunks_exact(2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .collect();
        assert_eq!(
            q,
            [
                65535,
                0,
                nearest_u16(15.0 / scale),
                65535,
                nearest_u16(14.0 / scale)
            ]
        );
        assert_eq!(&row[18..], [0, 0], "the odd vocabulary's padding");
        // The row against itself: no divergence, the same top token, the
        // same likelihood to the row's precision.
        let r = compare_row(&logits, &row, 2).unwrap();
        // (16-bit log-probabilities: a few parts in a million.)
        assert!(r.kld.abs() < 1e-5, "{r:?}");
        assert!(r.same_top && (r.nll - r.nll_base).abs() < 2e-4, "{r:?}");
        // Equal logits: scale 0, every q 0.
        let flat = [1.0f32; 4];
        let mut row = vec![0xffu8; row_bytes(4)];
        let nll = encode_row(&flat, 0, &mut row).unwrap();
        assert!((nll - 4f32.ln()).abs() < 1e-6);
        assert!(row[..4].iter().all(|&b| b == 0) && row[8..].iter().all(|&b| b == 0));
        // Another model: KL(base ‖ model) as summed out by hand.
        let other = [1.0f32, -30.0, 1.0, 2.0, 0.5];
        let mut base = vec![0u8; row_bytes(5)];
        encode_row(&logits, 2, &mut base).unwrap();
        let r = compare_row(&other, &base, 2).unwrap();
        let lsm = |l: &[f32]| {
            let m = l.iter().copied().fold(f32::MIN, f32::max) as f64;
            let s: f64 = l.iter().map(|&v| (v as f64 - m).exp()).sum();
            l.iter().map(|&v| v as f64 - m - s.ln()).collect::<Vec<_>>()
        };
        let (p, q) = (lsm(&logits), lsm(&other));
        let want: f64 = (0..5)
            .filter(|&i| p[i] > -16.0)
            .map(|i| p[i].exp() * (p[i] - q[i]))
            .sum();
        assert!((r.kld - want).abs() < 1e-5, "{} vs {want}", r.kld);
        assert!(!r.same_top, "the base's first top is 0, the model's 3");
        assert!((f64::from(r.p_diff) - (q[2].exp() - p[2].exp())).abs() < 1e-4);
        // Refusals.
        assert!(encode_row(&logits, 5, &mut vec![0; row_bytes(5)]).is_err());
        assert!(encode_row(&logits, 0, &mut [0; 10]).is_err());
        assert!(encode_row(&[f32::NAN, 0.0], 0, &mut vec![0; row_bytes(2)]).is_err());
        assert!(compare_row(&other[..4], &base, 2).is_err());
        assert!(compare_row(&[f32::INFINITY; 5], &base, 2).is_err());
    }

    #[test]
    fn statistics_as_llama_cpp() {
        assert_eq!(mean_and_uncertainty(3.0, 5.0, 2), (1.5, 0.0));
        let (m, u) = mean_and_uncertainty(55.0, 385.0, 11);
        assert_eq!(m, 5.0);
        assert!((u - (10f64 / 10.0).sqrt()).abs() < 1e-12);
        assert_eq!(covariance(1.0, 1.0, 1.0, 9), 0.0);
        let v = [0.0f32, 1.0, 2.0, 3.0];
        assert_eq!(percentile(&v, 0.5), 1.5);
        assert!((percentile(&v, 0.999) - 2.997).abs() < 1e-5);
        assert_eq!((percentile(&v, 0.0), percentile(&v, 1.0)), (0.0, 3.0));
        assert_eq!((median(&v), median(&v[..3])), (1.5, 1.0));
        assert!(percentile(&[], 0.5).is_nan() && median(&[]).is_nan());

        let mut d = Divergence::default();
        for (i, kld) in [0.25f64, 0.0, 1.0].into_iter().enumerate() {
            d.add(RowStats {
                nll: 1.0 + i as f32,
                nll_base: 1.0,
                kld,
                p_diff: -0.1 * i as f32,
                same_top: i != 1,
            });
        }
        let s = d.summary();
        assert_eq!(s.count, 3);
        assert!((s.ppl.0 - 2f64.exp()).abs() < 1e-12);
        assert!((s.ppl_base.0 - 1f64.exp()).abs() < 1e-12);
        assert!((s.ln_ppl_ratio.0 - 1.0).abs() < 1e-12);
        assert!((s.kld.0 - 1.25 / 3.0).abs() < 1e-12);
        assert_eq!((s.kld_max, s.kld_median, s.kld_min), (1.0, 0.25, 0.0));
        assert_eq!((s.p_diff_max, s.p_diff_min), (0.0, -0.2));
        assert!((s.p_diff_abs_max - 0.2).abs() < 1e-7);
        assert!((s.same_top.0 - 2.0 / 3.0).abs() < 1e-12);
        let text = s.to_string();
        for line in [
            "Mean    KLD:   0.416667 ±   0.000000",
            "99.9%   KLD:   0.998500",
            " 0.1%   KLD:   0.000500",
            "Median  KLD:   0.250000",
            "75.0%   Δp: -5.000%",
            "Same top p: 66.667 ± 33.333 %",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} not in\n{text}");
        }
        assert_eq!(text.lines().count(), 39);
        let line = chunk_line(0, d.running());
        assert!(
            line.starts_with("   1       7.3891 ±    0.0000       1.00000 ±    "),
            "{line}"
        );
    }
}
