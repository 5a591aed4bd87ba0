//! Choosing the next token from logits: greedy, or temperature + top-p with
//! a seeded generator (the same seed gives the same tokens).

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::ForwardError;

/// Holds `logits` (rows of `n_vocab`, the first of position `first`, the
/// next of the positions after) to what a token can be chosen from: no
/// NaN, at least one finite value per row, and not all one value.
/// Otherwise a [`ForwardError::BadLogits`] or
/// [`ForwardError::FlatLogits`] naming the first such row's position: a
/// sampler would have made up a token (argmax skips NaN; all NaN, or all
/// equal, was id 0).
/// One pass over the values; the forward passes run it on what they return.
pub fn check_logits(logits: &[f32], n_vocab: usize, first: usize) -> Result<(), ForwardError> {
    check_rows(logits, n_vocab, first, true)
}

/// [`check_logits`], refusing rows of one value only with `flat` (a
/// forward pass's are never flat; logits a caller hands a sampler may be
/// uniform on purpose).
fn check_rows(
    logits: &[f32],
    n_vocab: usize,
    first: usize,
    flat: bool,
) -> Result<(), ForwardError> {
    if n_vocab == 0 {
        return Ok(());
    }
    let check = |(i, row): (usize, &[f32])| -> Option<ForwardError> {
        let (mut nan, mut finite) = (0usize, false);
        let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
        // (Comparisons, not f32::min / max, so that the loop vectorizes:
        // the same values, NaN passed over as they do.)
        for &v in row {
            nan += v.is_nan() as usize;
            finite |= v.abs() < f32::INFINITY;
            lo = if v < lo { v } else { lo };
            hi = if v > hi { v } else { hi };
        }
        let position = first.saturating_add(i);
        if nan > 0 || !finite {
            return Some(ForwardError::BadLogits {
                position,
                nan,
                n_vocab: row.len(),
            });
        }
        if flat && row.len() > 1 && lo == hi {
            return Some(ForwardError::FlatLogits {
                position,
                value: lo,
                n_vocab: row.len(),
            });
        }
        None
    };
    // Many rows (a perplexity step's 128 MiB) on every thread; the first
    // bad row is the one named, as one by one.
    let bad = if logits.len() > n_vocab {
        logits.par_chunks(n_vocab).enumerate().find_map_first(check)
    } else {
        logits.chunks(n_vocab).enumerate().find_map(check)
    };
    bad.map_or(Ok(()), Err)
}

/// What [`ForwardError::BadLogits`] says of the logits, before its hint.
pub(super) fn bad_logits(position: usize, nan: usize, n_vocab: usize) -> String {
    if nan > 0 {
        format!("{nan} of the {n_vocab} logits at position {position} are NaN")
    } else {
        format!("the {n_vocab} logits at position {position} are all infinite")
    }
}

/// Picks tokens from logits. Greedy (argmax) when the temperature is 0;
/// otherwise the logits are divided by the temperature, made
/// probabilities, cut by top-k, top-p and min-p in that order (as
/// transformers' samplers do, after the temperature), and one is drawn.
///
/// ```
/// use gguf_loader_llm::forward::Sampler;
///
/// let mut s = Sampler::new(0.8, 0.95, 42).with_top_k(40).with_min_p(0.05);
/// let id = s.sample(&[0.1, 2.0, 1.5]).unwrap();
/// assert!(id < 3);
/// ```
#[derive(Debug, Clone)]
pub struct Sampler {
    temperature: f32,
    top_p: f32,
    top_k: usize,
    min_p: f32,
    rng: ChaCha8Rng,
}

impl Sampler {
    /// Greedy decoding: always the highest logit (the lowest id on a tie).
    pub fn greedy() -> Sampler {
        Sampler::new(0.0, 1.0, 0)
    }

    /// Temperature `temperature` (0 or less: greedy; NaN is taken as 0),
    /// nucleus `top_p` (clamped to `(0, 1]`; NaN is taken as 1), drawing
    /// from a ChaCha8 generator seeded with `seed`.
    pub fn new(temperature: f32, top_p: f32, seed: u64) -> Sampler {
        let temperature = if temperature.is_nan() {
            0.0
        } else {
            temperature
        };
        let top_p = if top_p.is_nan() {
            1.0
        } else {
            top_p.clamp(f32::MIN_POSITIVE, 1.0)
        };
        Sampler {
            temperature,
            top_p,
            top_k: 0,
            min_p: 0.0,
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// Keeps only the `k` most likely tokens (0: all, the default).
    #[must_use]
    pub fn with_top_k(mut self, k: usize) -> Sampler {
        self.top_k = k;
        self
    }

    /// Keeps only the tokens at least `min_p` times as likely as the most
    /// likely one (0, the default, or NaN: all; clamped to at most 1).
    #[must_use]
    pub fn with_min_p(mut self, min_p: f32) -> Sampler {
        self.min_p = if min_p.is_nan() {
            0.0
        } else {
            min_p.clamp(0.0, 1.0)
        };
        self
    }

    /// Restarts the generator from `seed`, as [`Sampler::new`] seeds it.
    pub fn reseed(&mut self, seed: u64) {
        self.rng = ChaCha8Rng::seed_from_u64(seed);
    }

    /// The next token id from one position's logits (`n_vocab` values);
    /// `None` when `logits` is empty or every value is NaN. NaN values are
    /// never chosen; see [`Sampler::try_sample`] to have them refused.
    /// Of the rows of every position (`Transformer::forward` with `all`),
    /// pass one: `&logits[i * n_vocab..][..n_vocab]` (the ids of all of
    /// them at once would run past the vocabulary).
    pub fn sample(&mut self, logits: &[f32]) -> Option<u32> {
        if self.temperature <= 0.0 {
            return argmax(logits);
        }
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        if !max.is_finite() {
            return argmax(logits);
        }
        // Probabilities at the temperature, most likely first.
        let mut probs: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .map(|(i, &l)| (i as u32, ((l - max) / self.temperature).exp()))
            .filter(|(_, p)| *p > 0.0)
            .collect();
        probs.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        if self.top_k > 0 {
            probs.truncate(self.top_k);
        }
        let total: f64 = probs.iter().map(|p| p.1 as f64).sum();
        // The smallest prefix whose mass reaches top_p.
        let mut kept = 0;
        let mut mass = 0f64;
        for p in &probs {
            kept += 1;
            mass += p.1 as f64;
            if mass >= self.top_p as f64 * total {
                break;
            }
        }
        // Min-p against the most likely (probability 1 here: exp(0)).
        if self.min_p > 0.0 {
            let floor = self.min_p * probs[0].1;
            kept = probs[..kept].iter().take_while(|p| p.1 >= floor).count();
            mass = probs[..kept].iter().map(|p| p.1 as f64).sum();
        }
        let u = (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * mass;
        let mut acc = 0f64;
        for p in &probs[..kept] {
            acc += p.1 as f64;
            if u < acc {
                return Some(p.0);
            }
        }
        probs[..kept].last().map(|p| p.0)
    }

    /// [`Sampler::sample`] on logits checked first: a
    /// [`ForwardError::BadLogits`] naming `position` (the position in the
    /// sequence whose logits they are) when they hold NaN or no finite
    /// value, instead of a token made up from them (logits all of one
    /// value are a uniform choice here; a forward pass refuses them).
    /// `Ok(None)` only when `logits` is empty.
    pub fn try_sample(
        &mut self,
        logits: &[f32],
        position: usize,
    ) -> Result<Option<u32>, ForwardError> {
        check_rows(logits, logits.len(), position, false)?;
        Ok(self.sample(logits))
    }
}

/// The index of the largest value (the first of equals; NaN never wins);
/// `None` when empty or every value is NaN (no token to pick: not id 0).
pub fn argmax(logits: &[f32]) -> Option<u32> {
    let mut best: Option<(usize, f32)> = None;
    for (i, &v) in logits.iter().enumerate() {
        if v.is_nan() {
            continue;
        }
        if best.is_none_or(|(_, b)| v > b) {
            best = Some((i, v));
        }
    }
    best.map(|(i, _)| i as u32)
}

/// The normalized mean squared error of `got` against the reference `want`
/// (mean squared error over the variance of `want`): how issue #12 holds
/// logits to llama.cpp's (≤ 1e-4). `NaN` when the lengths differ or
/// `want` is empty; infinite when `want` is constant and `got` is not.
pub fn nmse(got: &[f32], want: &[f32]) -> f64 {
    if got.len() != want.len() || want.is_empty() {
        return f64::NAN;
    }
    let n = want.len() as f64;
    let mean = want.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = want.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
    let mse = got
        .iter()
        .zip(want)
        .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
        .sum::<f64>()
        / n;
    mse / var
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_first_maximum_and_skips_nan() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, f32::NAN]), Some(1));
        assert_eq!(argmax(&[f32::NAN, 0.5]), Some(1));
        assert_eq!(argmax(&[]), None);
        assert_eq!(Sampler::greedy().sample(&[0.0, -1.0, 2.0]), Some(2));
    }

    /// Top-k 1 and min-p 1 leave the most likely token only; top-k 2
    /// draws from the two most likely; min-p keeps those within its ratio
    /// of the best; a reseeded sampler draws again what it drew.
    #[test]
    fn top_k_min_p_and_reseed() {
        let logits = [0.0, 3.0, 2.9, 2.8, -5.0];
        for s in [
            Sampler::new(5.0, 1.0, 3).with_top_k(1),
            Sampler::new(5.0, 1.0, 3).with_min_p(1.0),
        ] {
            let mut s = s;
            assert!((0..200).all(|_| s.sample(&logits) == Some(1)));
        }
        let mut s = Sampler::new(100.0, 1.0, 3).with_top_k(2);
        let drawn: std::collections::BTreeSet<u32> =
            (0..400).filter_map(|_| s.sample(&logits)).collect();
        assert_eq!(drawn.into_iter().collect::<Vec<_>>(), [1, 2]);
        // At temperature 1, exp(2.8 - 3) = 0.82 and exp(0 - 3) = 0.05:
        // min-p 0.5 keeps ids 1, 2 and 3.
        let mut s = Sampler::new(1.0, 1.0, 9).with_min_p(0.5);
        let drawn: std::collections::BTreeSet<u32> =
            (0..400).filter_map(|_| s.sample(&logits)).collect();
        assert_eq!(drawn.into_iter().collect::<Vec<_>>(), [1, 2, 3]);
        // Off, as by default: NaN min-p, top-k 0.
        let mut a = Sampler::new(1.0, 1.0, 5).with_min_p(f32::NAN).with_top_k(0);
        let mut b = Sampler::new(1.0, 1.0, 5);
        let first: Vec<_> = (0..50).map(|_| a.sample(&logits)).collect();
        assert_eq!(
            first,
            (0..50).map(|_| b.sample(&logits)).collect::<Vec<_>>()
        );
        a.reseed(5);
        assert_eq!(
            first,
            (0..50).map(|_| a.sample(&logits)).collect::<Vec<_>>()
        );
    }

    #[test]
    fn nan_logits_choose_no_token() {
        let all_nan = [f32::NAN; 4];
        assert_eq!(argmax(&all_nan), None);
        assert_eq!(Sampler::greedy().sample(&all_nan), None);
        assert_eq!(Sampler::new(0.8, 0.9, 1).sample(&all_nan), None);
    }

    #[test]
    fn try_sample_refuses_nan_and_no_finite_logit_greedy_and_at_temperature() {
        let nan1 = [0.5, f32::NAN, 2.0, -1.0];
        let all_nan = [f32::NAN; 3];
        let inf = [f32::NEG_INFINITY, f32::INFINITY, f32::NEG_INFINITY];
        let neg_inf = [f32::NEG_INFINITY; 3];
        for make in [Sampler::greedy, || Sampler::new(0.8, 0.9, 7)] {
            for (logits, said) in [
                (&nan1[..], "1 of the 4 logits at position 41 are NaN"),
                (&all_nan[..], "3 of the 3 logits at position 41 are NaN"),
                (&inf[..], "the 3 logits at position 41 are all infinite"),
                (&neg_inf[..], "the 3 logits at position 41 are all infinite"),
            ] {
                let e = make().try_sample(logits, 41).unwrap_err();
                assert!(
                    matches!(e, ForwardError::BadLogits { position: 41, .. }),
                    "{e:?}"
                );
                let e = e.to_string();
                assert!(e.starts_with(said), "{e}");
                assert!(
                    e.contains("NaN or Inf") && e.contains("gguf-loader verify"),
                    "{e}"
                );
            }
            // Usable logits: the same token as `sample`; an +Inf among
            // finite values is chosen; no logits, no token.
            let ok = [0.5, 3.0, 2.0, -1.0];
            assert_eq!(make().try_sample(&ok, 0).unwrap(), make().sample(&ok));
            let mut greedy = Sampler::greedy();
            assert_eq!(
                greedy.try_sample(&[0.0, f32::INFINITY, 1.0], 0).unwrap(),
                Some(1)
            );
            assert_eq!(make().try_sample(&[], 0).unwrap(), None);
        }
    }

    #[test]
    fn check_logits_names_the_position_of_the_first_bad_row() {
        let rows = [1.0, 2.0, 3.0, 4.0, f32::NAN, 6.0, f32::NAN, 8.0, 9.0];
        assert!(check_logits(&rows[..3], 3, 0).is_ok());
        let e = check_logits(&rows, 3, 10).unwrap_err();
        assert!(
            matches!(
                e,
                ForwardError::BadLogits {
                    position: 11,
                    nan: 1,
                    n_vocab: 3
                }
            ),
            "{e:?}"
        );
        assert!(check_logits(&[], 3, 0).is_ok());
        // A position past usize::MAX stays at the top instead of wrapping.
        let e = check_logits(&rows, 3, usize::MAX).unwrap_err();
        assert!(
            matches!(
                e,
                ForwardError::BadLogits {
                    position: usize::MAX,
                    ..
                }
            ),
            "{e:?}"
        );
    }

    /// All of a row's logits one value (a huge RMS epsilon zeroed them):
    /// an error naming the position, not id 0; a one-token vocabulary has
    /// nothing else to be.
    #[test]
    fn flat_logits_are_an_error_naming_the_position() {
        let rows = [1.0, 2.0, 0.0, 0.0, 3.0, 3.0];
        let e = check_logits(&rows, 2, 5).unwrap_err();
        assert!(
            matches!(e, ForwardError::FlatLogits { position: 6, value, n_vocab: 2 } if value == 0.0),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "the 2 logits at position 6 are all 0: nothing to choose from (the settings, such as \
             the RMS epsilon, or the weights leave no signal)"
        );
        assert!(check_logits(&[-1.0, -0.0], 2, 0).is_ok());
        assert!(check_logits(&[7.0, 7.0], 1, 0).is_ok());
        // A sampler takes them: a uniform choice.
        assert_eq!(
            Sampler::greedy().try_sample(&[3.0, 3.0], 0).unwrap(),
            Some(0)
        );
    }

    #[test]
    fn seeded_sampling_repeats_and_top_p_cuts_the_tail() {
        let logits: Vec<f32> = (0..50).map(|i| (i as f32) * 0.1).collect();
        let draw = |seed| {
            let mut s = Sampler::new(1.0, 0.9, seed);
            (0..20)
                .map(|_| s.sample(&logits).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
        // A tiny top-p keeps only the most likely token.
        let mut s = Sampler::new(1.0, 1e-6, 3);
        assert!((0..20).all(|_| s.sample(&logits) == Some(49)));
    }
}
