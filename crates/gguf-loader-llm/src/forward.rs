//! The forward pass: llama and gemma3 over weights loaded by gguf-loader
//! (`Model<f16>`, or `Model<f32>`), on the CPU, with a KV cache and a
//! sampler.
//!
//! ```no_run
//! use gguf_loader::{f16, MmapGGUFLoader};
//! use gguf_loader_llm::forward::{Sampler, Transformer};
//!
//! let loader = MmapGGUFLoader::new("model.gguf")?;
//! let model = Transformer::<f16>::load(&loader)?;
//! let mut cache = model.new_cache(64)?;
//! let logits = model.forward(&mut cache, &[1, 415, 5565], false)?; // last position
//! let next = Sampler::greedy().sample(&logits);
//! # Ok::<(), gguf_loader_llm::forward::ForwardError>(())
//! ```
//!
//! Weights are matrices in `T` (f16 as the design has it); 1-D tensors
//! (norms) are read as f32, as llama.cpp keeps them. Everything else is f32:
//! activations, the KV cache, accumulation.

#[cfg(feature = "cuda")]
pub mod cuda;
mod generate;
mod matmul;
mod ops;
mod sample;
mod saved;
mod scratch;

use std::sync::Arc;

use gguf_loader::{
    f16, Device, LazyModel, LoadOptions, MetadataError, MmapGGUFLoader, Model, Tensor, Value,
    ValueType,
};
use half::slice::HalfFloatSliceExt;
use rayon::prelude::*;

pub use generate::Generate;
use matmul::{matmul_many, Kernel};
use ops::{gelu_mul, pairwise, rms_norm, silu_mul, softmax, Rope, PAR_ELEMENTWISE, SCORE_KEYS};
pub use ops::{RopeMode, WeightElement};
pub use sample::{argmax, check_logits, nmse, Sampler};
use scratch::Scratch;

/// What can go wrong building or running the forward pass.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ForwardError {
    /// Loading a tensor or the model failed.
    #[error(transparent)]
    Load(#[from] gguf_loader::Error),
    /// A hyper-parameter is missing or mistyped.
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    /// The architecture (or a feature of it) has no forward pass here.
    #[error("unsupported model: {0}")]
    Unsupported(String),
    /// A tensor the architecture needs is absent.
    #[error("tensor '{0}' is missing")]
    MissingTensor(String),
    /// A tensor's shape disagrees with the hyper-parameters (or, from
    /// [`Transformer::from_model`], a model loaded from another file than
    /// the loader's).
    #[error("tensor '{name}' has ne {found:?}, expected {}", shape_text(expected))]
    Shape {
        /// The tensor.
        name: String,
        /// Its GGUF dimensions.
        found: Vec<usize>,
        /// What the hyper-parameters call for; 0: any (`[576, any]`).
        expected: Vec<usize>,
    },
    /// A hyper-parameter is out of range (zero, or inconsistent with others).
    #[error("metadata key '{key}': {why}")]
    BadParameter {
        /// The key.
        key: String,
        /// What is wrong with it.
        why: String,
    },
    /// A tensor of settings holds a value out of range.
    #[error("tensor '{name}': {why}")]
    BadTensor {
        /// The tensor's name.
        name: String,
        /// What is wrong with it.
        why: String,
    },
    /// A token id is not below the vocabulary size.
    #[error("token id {id} is out of range (vocabulary of {n_vocab})")]
    Token {
        /// The id.
        id: u32,
        /// The vocabulary size.
        n_vocab: usize,
    },
    /// The KV cache has no room for the tokens given.
    #[error("the KV cache holds {capacity} positions; {len} are used and {more} more were given")]
    CacheFull {
        /// Positions the cache holds.
        capacity: usize,
        /// Positions used.
        len: usize,
        /// Positions asked for.
        more: usize,
    },
    /// A step would need positions a sliding-window layer's ring no
    /// longer holds: the cache was truncated back by more than
    /// [`SlidingWindow::Ring`]'s chunk plus one below the furthest position
    /// written.
    #[error(
        "the KV cache's sliding-window layers keep only the last {kept} positions written \
         (below {written}); continuing from position {start} needs position {needed}: \
         truncate back less far, or make the cache with SlidingWindow::Full"
    )]
    Forgotten {
        /// Where the step starts.
        start: usize,
        /// The first position it needs.
        needed: usize,
        /// One past the furthest position written.
        written: usize,
        /// Positions a ring keeps.
        kept: usize,
    },
    /// Memory for the cache or activations could not be had: the bytes
    /// asked for (`usize::MAX` where they are more than a `usize` counts).
    #[error("cannot allocate {}", bytes_text(*.0))]
    Alloc(usize),
    /// The KV cache was made for a model of other widths (its KV width
    /// and layer count are not this model's). A cache holds positions,
    /// not a model's identity: one made by a model of the same widths is
    /// taken.
    #[error(
        "the KV cache was made for another model ({} layers of {} KV values, this one has {} of {})",
        found.1, found.0, expected.1, expected.0
    )]
    CacheMismatch {
        /// This model's (KV width, layers).
        expected: (usize, usize),
        /// The cache's.
        found: (usize, usize),
    },
    /// A KV cache file ([`Transformer::cache_from_gguf`]) that is not
    /// one, is malformed, or was saved by a model of another architecture
    /// or vocabulary.
    #[error("not a KV cache of this model: {0}")]
    BadCache(String),
    /// The logits of a position hold NaN, or no finite value: no token can
    /// be chosen from them (NaN or Inf in the weights or the settings).
    #[error(
        "{}: the weights or the settings hold NaN or Inf (`gguf-loader verify FILE` checks the weights)",
        sample::bad_logits(*position, *nan, *n_vocab)
    )]
    BadLogits {
        /// The position (in the sequence, from 0) whose logits they are.
        position: usize,
        /// How many of them are NaN (0: none is, but none is finite).
        nan: usize,
        /// How many there are (the vocabulary size).
        n_vocab: usize,
    },
    /// The logits of a position are all one value: nothing to choose
    /// from (a setting such as a huge RMS epsilon, or weights, that leave
    /// no signal; every token would be id 0).
    #[error(
        "the {n_vocab} logits at position {position} are all {value}: nothing to choose from \
         (the settings, such as the RMS epsilon, or the weights leave no signal)"
    )]
    FlatLogits {
        /// The position (in the sequence, from 0) whose logits they are.
        position: usize,
        /// Their one value.
        value: f32,
        /// How many there are (the vocabulary size).
        n_vocab: usize,
    },
}

/// `[576, any]`: a shape whose 0s mean any length.
fn shape_text(ne: &[usize]) -> String {
    let dims: Vec<String> = ne
        .iter()
        .map(|&d| if d == 0 { "any".into() } else { d.to_string() })
        .collect();
    format!("[{}]", dims.join(", "))
}

/// `1024 bytes`, or more than a `usize` counts.
fn bytes_text(n: usize) -> String {
    if n == usize::MAX {
        format!("more than {n} bytes (the size overflows)")
    } else {
        format!("{n} bytes")
    }
}

/// The architectures with a forward pass here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// `llama` (SmolLM2, TinyLlama, Llama 2/3 shapes): RMSNorm, RoPE on
    /// adjacent pairs, grouped-query attention, SwiGLU.
    Llama,
    /// `gemma3`: embedding scale, per-head Q/K norms, post-norms, GELU,
    /// sliding-window layers with their own RoPE base.
    Gemma3,
}

/// The hyper-parameters the forward pass runs with, read from the metadata
/// and checked against the tensors.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The architecture.
    pub arch: Arch,
    /// Transformer blocks.
    pub n_layer: usize,
    /// Hidden size.
    pub n_embd: usize,
    /// Query heads.
    pub n_head: usize,
    /// Key/value heads.
    pub n_head_kv: usize,
    /// Dimensions per head (keys and values alike).
    pub head_dim: usize,
    /// Feed-forward width.
    pub n_ff: usize,
    /// Vocabulary size (rows of the output head).
    pub n_vocab: usize,
    /// RMSNorm epsilon.
    pub rms_eps: f32,
    /// Scale of the attention scores.
    pub attn_scale: f32,
    /// Sliding-window size for the layers that have one (gemma3).
    pub sliding_window: Option<usize>,
    /// Whether each layer attends through the sliding window.
    pub layer_is_swa: Vec<bool>,
    /// Final logit soft-capping (`tanh(x / c) · c`), if any.
    pub logit_softcap: Option<f32>,
    /// The context the model was trained for (`{arch}.context_length`),
    /// where the file gives one of 1 or more: a KV cache may be longer, but
    /// positions past it were never trained.
    pub context_length: Option<usize>,
    ropes: Vec<Rope>,
}

impl Config {
    /// The RoPE mode (pairing of dimensions).
    pub fn rope_mode(&self) -> RopeMode {
        match self.arch {
            Arch::Llama => RopeMode::Norm,
            Arch::Gemma3 => RopeMode::Neox,
        }
    }

    /// Layer `il`'s RoPE base frequency, or `None` past the last layer.
    pub fn rope_base(&self, il: usize) -> Option<f32> {
        self.ropes.get(il).map(|r| r.base)
    }
}

struct Mat<T> {
    /// Shared with a lazy model's layer, or the model's own.
    t: Arc<Tensor<T>>,
    rows: usize,
    cols: usize,
}

impl<T: WeightElement> Mat<T> {
    fn mul(&self, x: &[f32], n: usize, scratch: &mut Scratch) -> Result<Vec<f32>, ForwardError> {
        let [y] = Self::mul_many([self], x, n, scratch)?;
        Ok(y)
    }

    /// The products of `x` by matrices of the same width, in one parallel
    /// section (see [`matmul_many`]), in buffers taken from `scratch` (the
    /// rounded inputs' too, given back).
    fn mul_many<const M: usize>(
        mats: [&Self; M],
        x: &[f32],
        n: usize,
        scratch: &mut Scratch,
    ) -> Result<[Vec<f32>; M], ForwardError> {
        let cols = mats.first().map_or(0, |m| m.cols);
        debug_assert!(mats.iter().all(|m| m.cols == cols));
        let mut outs = [(); M].map(|_| Vec::new());
        for (o, m) in outs.iter_mut().zip(&mats) {
            *o = scratch.take(n * m.rows)?;
        }
        let mut buf = scratch.take(x.len())?;
        let y = matmul_many(
            mats.map(|m| (m.t.data(), m.rows)),
            cols,
            T::rounded(x, &mut buf),
            n,
            outs,
        );
        scratch.give([buf]);
        Ok(y)
    }
}

struct LayerWeights<T> {
    attn_norm: Vec<f32>,
    wq: Mat<T>,
    wk: Mat<T>,
    wv: Mat<T>,
    wo: Mat<T>,
    q_norm: Option<Vec<f32>>,
    k_norm: Option<Vec<f32>>,
    post_attn_norm: Option<Vec<f32>>,
    ffn_norm: Vec<f32>,
    gate: Mat<T>,
    up: Mat<T>,
    down: Mat<T>,
    post_ffn_norm: Option<Vec<f32>>,
}

/// A llama or gemma3 model ready to run: matrices in `T`, norms in f32.
pub struct Transformer<T> {
    config: Config,
    tok_embd: Mat<T>,
    /// `None`: tied to the embeddings.
    output: Option<Mat<T>>,
    output_norm: Vec<f32>,
    /// Every layer, or none when they come from `lazy`.
    layers: Vec<LayerWeights<T>>,
    dims: Dims,
    lazy: Option<LazyModel<T>>,
}

/// Finds a matrix by name: `Ok(None)` when the file has none of that name;
/// an error when it has one that cannot be loaded (out of memory…).
type Find<'a, T> = dyn FnMut(&str) -> Result<Option<Arc<Tensor<T>>>, ForwardError> + 'a;

/// Where a model's matrices come from.
enum Source<T> {
    /// Moved out of a loaded model.
    Model(Model<T>),
    /// Taken from a lazy model, layer by layer as the forward pass goes.
    Lazy(LazyModel<T>),
}

/// The widths a layer's tensors are checked against.
#[derive(Debug, Clone, Copy)]
struct Dims {
    n_embd: usize,
    q_dim: usize,
    kv_dim: usize,
    head_dim: usize,
    gemma: bool,
}

/// Layer `il`'s matrices from `find` (checked against `d`) and its norms
/// read as f32 from `loader`.
fn layer_weights<T: WeightElement>(
    find: &mut Find<'_, T>,
    loader: &MmapGGUFLoader,
    il: usize,
    d: &Dims,
) -> Result<LayerWeights<T>, ForwardError> {
    let p = |s: &str| format!("blk.{il}.{s}.weight");
    let mut take = |name: &str, cols, rows| take_mat(find, name, cols, rows);
    let wq = take(&p("attn_q"), d.n_embd, Some(d.q_dim))?;
    let wk = take(&p("attn_k"), d.n_embd, Some(d.kv_dim))?;
    let wv = take(&p("attn_v"), d.n_embd, Some(d.kv_dim))?;
    let wo = take(&p("attn_output"), d.q_dim, Some(d.n_embd))?;
    let gate = take(&p("ffn_gate"), d.n_embd, None)?;
    let n_ff = gate.rows;
    let up = take(&p("ffn_up"), d.n_embd, Some(n_ff))?;
    let down = take(&p("ffn_down"), n_ff, Some(d.n_embd))?;
    let gemma_norm = |name: &str, len| d.gemma.then(|| norm(loader, &p(name), len)).transpose();
    Ok(LayerWeights {
        attn_norm: norm(loader, &p("attn_norm"), d.n_embd)?,
        q_norm: gemma_norm("attn_q_norm", d.head_dim)?,
        k_norm: gemma_norm("attn_k_norm", d.head_dim)?,
        post_attn_norm: gemma_norm("post_attention_norm", d.n_embd)?,
        ffn_norm: norm(loader, &p("ffn_norm"), d.n_embd)?,
        post_ffn_norm: gemma_norm("post_ffw_norm", d.n_embd)?,
        wq,
        wk,
        wv,
        wo,
        gate,
        up,
        down,
    })
}

impl<T> Transformer<T> {
    /// Every matrix: embeddings, output head, each layer's seven.
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    fn mats(&self) -> impl Iterator<Item = &Mat<T>> {
        std::iter::once(&self.tok_embd)
            .chain(self.output.as_ref())
            .chain(
                self.layers
                    .iter()
                    .flat_map(|l| [&l.wq, &l.wk, &l.wv, &l.wo, &l.gate, &l.up, &l.down]),
            )
    }
}

/// The keys and values of every layer at the positions seen so far, in f16
/// (llama.cpp's default cache type).
///
/// `B` is one layer's buffer: host memory here; the GPU forward pass keeps
/// the same cache in VRAM (`forward::cuda::CudaKvCache`).
///
/// The CPU forward pass also keeps its activations' buffers here from one
/// step to the next (sixteen at most, of the largest step's sizes), so
/// that a step does not fault in fresh memory page by page; they go with
/// the cache (not with [`KvCache::clear`], nor into a copy).
///
/// A sliding-window layer (gemma3) sees only the last positions of its
/// window: made with [`SlidingWindow::Ring`] (what
/// [`Transformer::new_cache`] makes), such a layer keeps only the last
/// `window + chunk` positions, in a ring written twice over (position `p`
/// at rows `p % r` and `p % r + r`, `r` the ring's positions) so that any
/// `r` consecutive positions lie in consecutive rows; a step then runs at
/// most `chunk` tokens at a time.
#[derive(Clone)]
pub struct KvCache<B = Vec<f16>> {
    k: Vec<B>,
    v: Vec<B>,
    kv_dim: usize,
    len: usize,
    capacity: usize,
    /// Per layer, the positions its ring keeps (`None`, or no entry: every
    /// position, at its own row).
    rings: Vec<Option<usize>>,
    /// Tokens a step runs at once where a layer has a ring (0: any).
    chunk: usize,
    /// One past the furthest position written since the last clear.
    written: usize,
    /// The token at each filled position (`len` of them; room reserved
    /// for the capacity).
    tokens: Vec<u32>,
    /// The CPU forward pass's activation buffers, kept for its next step.
    scratch: Scratch,
    /// A step's logits handed back ([`KvCache::recycle`]) for the next's.
    spare_logits: Vec<f32>,
}

/// How a KV cache keeps the positions of the sliding-window layers (see
/// [`KvCache`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SlidingWindow {
    /// A ring of the last `window + chunk` positions in each such layer,
    /// where that is smaller than the cache: a step (a prompt) of more
    /// than `chunk` tokens runs `chunk` at a time, and a step after
    /// [`KvCache::truncate`] back by more than `chunk + 1` positions below
    /// the furthest written is [`ForwardError::Forgotten`]. With a chunked
    /// step, an error leaves the chunks before it in the cache.
    Ring {
        /// Tokens a step runs at once (at least 1).
        chunk: usize,
    },
    /// Every position in every layer: truncate anywhere.
    Full,
}

impl SlidingWindow {
    /// The ring [`Transformer::new_cache`] makes: chunks of 512 tokens
    /// (llama.cpp's default micro-batch).
    pub const DEFAULT: SlidingWindow = SlidingWindow::Ring { chunk: 512 };
}

/// The positions each layer's ring keeps (`None`: every position, at its
/// own row) and the tokens a step runs at once (0: any), for a cache of
/// `capacity` positions kept as `sliding` says: a sliding-window layer
/// gets a ring of its window plus the chunk where that holds fewer rows
/// (twice its positions) than the capacity. The CPU's cache and the GPU's.
pub(crate) fn ring_layout(
    c: &Config,
    capacity: usize,
    sliding: SlidingWindow,
) -> (Vec<Option<usize>>, usize) {
    let chunk = match sliding {
        SlidingWindow::Ring { chunk } => chunk.max(1),
        SlidingWindow::Full => 0,
    };
    let rings: Vec<Option<usize>> = (0..c.n_layer)
        .map(|il| {
            let w = c
                .sliding_window
                .filter(|_| chunk > 0 && c.layer_is_swa[il])?;
            let r = w.checked_add(chunk)?;
            (r.checked_mul(2)? < capacity).then_some(r)
        })
        .collect();
    let chunk = if rings.iter().any(Option::is_some) {
        chunk
    } else {
        0
    };
    (rings, chunk)
}

/// Errs where `rings` and `chunk` are not the layout a model of config
/// `c` makes for a cache of `capacity` ([`ring_layout`]); else the
/// [`SlidingWindow`] that makes it.
fn check_rings(
    c: &Config,
    rings: &[Option<usize>],
    chunk: usize,
    capacity: usize,
) -> Result<SlidingWindow, ForwardError> {
    let sliding = if chunk > 0 {
        SlidingWindow::Ring { chunk }
    } else {
        SlidingWindow::Full
    };
    let (want, want_chunk) = ring_layout(c, capacity, sliding);
    if rings == want && chunk == want_chunk {
        return Ok(sliding);
    }
    Err(ForwardError::BadCache(format!(
        "its sliding-window rings {rings:?} (chunk {chunk}) are not this model's for a capacity of {capacity}"
    )))
}

impl<B> KvCache<B> {
    /// Positions filled.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no position is filled.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Positions the cache can hold.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The token at each filled position, in order ([`len`](Self::len) of
    /// them): a prompt's common prefix with them is what the cache can
    /// keep ([`truncate`](Self::truncate) to it) for the next prompt.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Forgets every position (keeps the memory).
    pub fn clear(&mut self) {
        self.len = 0;
        self.written = 0;
        self.tokens.clear();
    }

    /// Errs where the cache's sliding-window rings are not those a model
    /// of config `c` makes for its capacity (a cache of a model of the same
    /// widths but another window, or none): its layers would be read as
    /// this model's.
    fn check_layout(&self, c: &Config) -> Result<(), ForwardError> {
        check_rings(c, &self.rings, self.chunk, self.capacity).map(|_| ())
    }

    /// Marks `tokens`, run from position `start`, as filled.
    fn filled(&mut self, start: usize, tokens: &[u32]) {
        self.tokens.truncate(start);
        self.tokens.extend_from_slice(tokens);
        self.len = start + tokens.len();
    }

    /// Hands a step's logits back, for the next step of the forward pass
    /// (the CPU's, or the GPU's copy to the host) to write its own into
    /// (where they fit): the logits of many
    /// positions over a large vocabulary (perplexity's steps: 128 MiB) are
    /// otherwise a fresh allocation each step, whose pages the system
    /// zeroes and faults in one by one (13% of a Gemma-3 perplexity run).
    pub fn recycle(&mut self, logits: Vec<f32>) {
        if logits.capacity() > self.spare_logits.capacity() {
            self.spare_logits = logits;
        }
    }

    /// Keeps the first `len` positions and forgets the rest (nothing when
    /// `len` is not below [`len`](Self::len)): the next forward pass
    /// continues from position `len`. With a copy ([`KvCache::try_clone`],
    /// or `Clone`), a prompt's common prefix is computed once: copy the
    /// cache after it, or truncate back to it, for each continuation.
    /// Where sliding-window layers keep a ring ([`SlidingWindow::Ring`]),
    /// back by at most its chunk plus one below the furthest position
    /// written (else the next step is [`ForwardError::Forgotten`]).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
        self.tokens.truncate(self.len);
    }

    /// Rows of layer `il`'s buffers: the capacity, or twice its ring.
    fn rows(&self, il: usize) -> usize {
        match self.rings.get(il).copied().flatten() {
            Some(r) => 2 * r,
            None => self.capacity,
        }
    }

    /// Bytes held (host memory, or VRAM for the GPU's cache).
    pub fn n_bytes(&self) -> usize {
        (0..self.k.len())
            .map(|il| 2 * self.rows(il) * self.kv_dim * 2)
            .sum()
    }

    /// Before a step of `n` tokens from [`len`](Self::len) of a model with
    /// a sliding window of `window`: errs where a ring no longer holds a
    /// position the step needs (the first position it needs must be among
    /// the last `r` written; every ring is the same); `Some(chunk)` where
    /// the step must run `chunk` tokens at a time (each part calls this
    /// again); else marks its positions written (whatever befalls the
    /// step: the rows of older positions it overwrites in a ring are gone)
    /// and `None`.
    fn begin_step(
        &mut self,
        window: Option<usize>,
        n: usize,
    ) -> Result<Option<usize>, ForwardError> {
        let start = self.len;
        let ring = self.rings.iter().flatten().next().copied();
        if let Some((r, window)) = ring.zip(window) {
            let needed = start.saturating_sub(window.saturating_sub(1));
            if start > needed && needed < self.written.saturating_sub(r) {
                return Err(ForwardError::Forgotten {
                    start,
                    needed,
                    written: self.written,
                    kept: r,
                });
            }
        }
        if self.chunk > 0 && n > self.chunk {
            return Ok(Some(self.chunk));
        }
        self.written = self.written.max(start + n);
        Ok(None)
    }

    /// Where layer `il`'s step from `start` finds its positions: the first
    /// position its queries see (the window's start for the first query,
    /// 0 without a window) and the row that position is at (in a ring, its
    /// first row; the rest follow it, at most `r` of them).
    fn seen_from(&self, il: usize, start: usize, window: Option<usize>) -> (usize, usize) {
        let base = window.map_or(0, |w| (start + 1).saturating_sub(w));
        let ring = self.rings.get(il).copied().flatten();
        (base, ring.map_or(base, |r| base % r))
    }
}

impl KvCache {
    /// A copy of the cache, or [`ForwardError::Alloc`] where its memory
    /// cannot be had (`Clone` aborts the process then, as every failed
    /// allocation of a `Vec` does; the GPU cache's `Clone` panics).
    pub fn try_clone(&self) -> Result<KvCache, ForwardError> {
        let copy = |layers: &[Vec<f16>]| {
            layers
                .iter()
                .map(|l| {
                    let mut c =
                        try_zeros(l.len()).map_err(|_| ForwardError::Alloc(self.n_bytes()))?;
                    c.copy_from_slice(l);
                    Ok(c)
                })
                .collect::<Result<Vec<_>, ForwardError>>()
        };
        self.with_layers(copy(&self.k)?, copy(&self.v)?)
    }
}

impl<B> KvCache<B> {
    /// A cache of the same positions over the layers' keys `k` and values
    /// `v` (a copy's buffers), with a scratch of its own.
    fn with_layers<C>(&self, k: Vec<C>, v: Vec<C>) -> Result<KvCache<C>, ForwardError> {
        let tokens = reserved_tokens(self.capacity)?;
        let mut cache = KvCache {
            k,
            v,
            kv_dim: self.kv_dim,
            len: self.len,
            capacity: self.capacity,
            rings: self.rings.clone(),
            chunk: self.chunk,
            written: self.written,
            tokens,
            scratch: Scratch::default(),
            spare_logits: Vec::new(),
        };
        cache.tokens.extend_from_slice(&self.tokens);
        Ok(cache)
    }
}

impl<B> std::fmt::Debug for KvCache<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvCache")
            .field("len", &self.len)
            .field("capacity", &self.capacity)
            .field("layers", &self.k.len())
            .field("kv_dim", &self.kv_dim)
            .finish()
    }
}

impl<T: gguf_loader::Element> std::fmt::Debug for Transformer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transformer")
            .field("config", &self.config)
            .field("device", &self.tok_embd.t.device())
            .field("lazy", &self.lazy.is_some())
            .finish_non_exhaustive()
    }
}

/// One activation shown to the observer of [`Transformer::forward_observed`].
#[derive(Debug, Clone, Copy)]
pub struct Activation<'a> {
    /// What it is (`"attn_norm"`, `"q"`, `"attn_out"`, `"ffn_out"`,
    /// `"l_out"`, `"logits"`…).
    pub name: &'static str,
    /// The layer, or `None` outside the layers.
    pub layer: Option<usize>,
    /// The values, every position of the call.
    pub values: &'a [f32],
}

/// An empty list of a cache's tokens with room for `capacity` (so that a
/// step never grows it), or [`ForwardError::Alloc`].
fn reserved_tokens(capacity: usize) -> Result<Vec<u32>, ForwardError> {
    let mut t = Vec::new();
    t.try_reserve_exact(capacity)
        .map_err(|_| ForwardError::Alloc(capacity.saturating_mul(4)))?;
    Ok(t)
}

/// `n` zeros, or [`ForwardError::Alloc`]. Allocated zeroed (`calloc`), not
/// written: a large buffer's pages (a KV cache sized for a long generation)
/// take memory only once they are used.
fn try_zeros<X: bytemuck::Zeroable>(n: usize) -> Result<Vec<X>, ForwardError> {
    bytemuck::allocation::try_zeroed_vec(n)
        .map_err(|()| ForwardError::Alloc(n.saturating_mul(std::mem::size_of::<X>())))
}

/// An optional `{arch}.{key}` read with `get` (absent: `None`).
fn opt<X>(
    loader: &MmapGGUFLoader,
    key: &str,
    get: impl Fn(&gguf_loader::Metadata<'_>, &str) -> Result<X, MetadataError>,
) -> Result<Option<X>, ForwardError> {
    let m = loader.metadata();
    let full = m.arch_key(key)?;
    if m.get(&full).is_none() {
        return Ok(None);
    }
    Ok(Some(get(m, key)?))
}

/// A float hyper-parameter that must be finite and above 0 (an epsilon, a
/// RoPE base, a scaling factor): NaN, infinite, 0 or negative would make
/// every logit NaN.
/// Subnormal values count as 0: a soft-cap of 1e-42 made every logit the
/// same.
fn positive_f32(key: &str, v: f32) -> Result<f32, ForwardError> {
    if !(v.is_normal() && v > 0.0) {
        return Err(ForwardError::BadParameter {
            key: key.into(),
            why: not_positive(v),
        });
    }
    Ok(v)
}

/// The positions RoPE is checked to: 2^24, past which an f32 no longer
/// counts them one by one.
const ROPE_CHECKED_TO: usize = 1 << 24;

/// Refuses RoPE settings whose angles are not finite at some position up
/// to [`ROPE_CHECKED_TO`] (their cosine and sine NaN, and so every logit),
/// naming what makes them so: a `rope_freqs.weight` element that is not a
/// finite number above 0, or else the base (`base_key`) and the scaling
/// factor (`factor_key`, `""` where it does not apply). Each is finite and
/// above 0 alone, but a base of 1e-38 grows the angle past f32's range
/// within a few pairs, and a factor of 1e-38 multiplies it by 1e38.
fn usable_rope(rope: &Rope, base_key: &str, factor_key: &str) -> Result<(), ForwardError> {
    if let Some(f) = &rope.factors {
        if let Some((i, v)) = f
            .iter()
            .enumerate()
            .find(|(_, v)| !(v.is_normal() && **v > 0.0))
        {
            return Err(ForwardError::BadTensor {
                name: "rope_freqs.weight".into(),
                why: format!(
                    "element {i} is {v:e}: each pair's frequency is divided by it, so it \
                     must be a normal number above 0"
                ),
            });
        }
    }
    let Some((i, t)) = rope.first_unusable_pair(ROPE_CHECKED_TO) else {
        return Ok(());
    };
    let unscaled = Rope {
        scale: 1.0,
        ..rope.clone()
    };
    let at = format!("pair {i}'s angle is {t} at position {ROPE_CHECKED_TO} (no cosine or sine)");
    Err(
        if !factor_key.is_empty() && unscaled.first_unusable_pair(ROPE_CHECKED_TO).is_none() {
            ForwardError::BadParameter {
                key: factor_key.into(),
                why: format!(
                    "{:e} scales RoPE's angles by {:e}: {at}",
                    1.0 / rope.scale,
                    rope.scale
                ),
            }
        } else {
            ForwardError::BadParameter {
                key: base_key.into(),
                why: format!("a RoPE base of {:e}: {at}", rope.base),
            }
        },
    )
}

/// Why `v` is refused by [`positive_f32`].
fn not_positive(v: f32) -> String {
    if v.is_subnormal() && v > 0.0 {
        format!("{v:e} is subnormal, too small to use (it must be a normal number above 0)")
    } else {
        format!("{v} is not a finite number above 0")
    }
}

fn positive(key: &str, v: u32) -> Result<usize, ForwardError> {
    if v == 0 {
        return Err(ForwardError::BadParameter {
            key: key.into(),
            why: "must not be 0".into(),
        });
    }
    Ok(v as usize)
}

impl<T: WeightElement> Transformer<T> {
    /// Loads every tensor of the file as `T` on the CPU and builds the
    /// model; errs as [`Transformer::from_model`] does, or when loading
    /// fails.
    pub fn load(loader: &MmapGGUFLoader) -> Result<Transformer<T>, ForwardError> {
        Self::load_with(loader, LoadOptions::default())
    }

    /// [`Transformer::load`] with the loader's options: threads, progress
    /// and cancel, and whether the matrices the file holds as `T` already
    /// are views of its mapping (the default) or copies
    /// ([`LoadOptions::own_memory`]).
    pub fn load_with(
        loader: &MmapGGUFLoader,
        opts: LoadOptions<'_>,
    ) -> Result<Transformer<T>, ForwardError> {
        let model = loader.load_model_with::<T>(Device::Cpu, opts)?;
        Transformer::from_model(loader, model)
    }

    /// Builds the model from tensors already loaded (its matrices move out
    /// of `model`; norms are read again from `loader` as f32). Errs when
    /// the architecture is neither `llama` nor `gemma3`, a hyper-parameter
    /// is missing or out of range, a tensor is missing, has the wrong shape
    /// or the RoPE scaling is one not implemented. The matrices may be on a
    /// GPU (`Model` loaded on `Device::Cuda`): `forward::cuda::CudaTransformer` runs
    /// those (feature `cuda`); [`Transformer::forward`] wants them on the CPU.
    pub fn from_model(
        loader: &MmapGGUFLoader,
        model: Model<T>,
    ) -> Result<Transformer<T>, ForwardError> {
        Self::build(loader, Source::Model(model))
    }

    /// A model over a [`LazyModel`] of `loader` (phase 5 of the design):
    /// only the embeddings, the output head and the norms are decoded now;
    /// each forward pass takes every layer from the lazy model as it comes
    /// to it, the next one prefetched (decoded on another thread) while this
    /// one computes, and drops it after. Memory holds about two layers; the
    /// first token comes as soon as the first layers are decoded, not after
    /// the whole model. Errs as [`Transformer::from_model`].
    pub fn load_lazy(loader: Arc<MmapGGUFLoader>) -> Result<Transformer<T>, ForwardError> {
        Self::load_lazy_with(loader, LoadOptions::default())
    }

    /// [`Transformer::load_lazy`] with the lazy model's options (threads,
    /// [`LoadOptions::own_memory`]).
    pub fn load_lazy_with(
        loader: Arc<MmapGGUFLoader>,
        opts: LoadOptions<'_>,
    ) -> Result<Transformer<T>, ForwardError> {
        let lazy = LazyModel::<T>::with_options(loader.clone(), opts)?;
        Self::build(&loader, Source::Lazy(lazy))
    }

    fn build(
        loader: &MmapGGUFLoader,
        mut source: Source<T>,
    ) -> Result<Transformer<T>, ForwardError> {
        let m = loader.metadata();
        let arch = match m.architecture()? {
            "llama" => Arch::Llama,
            "gemma3" => Arch::Gemma3,
            other => {
                return Err(ForwardError::Unsupported(format!(
                    "architecture '{}' (this forward pass knows llama and gemma3)",
                    gguf_loader::Escaped(other)
                )))
            }
        };
        // Keys in errors as the file spells them (`llama.block_count`).
        let full = |k: &str| m.arch_key(k).unwrap_or_else(|_| k.to_string());
        let n_layer = positive(&full("block_count"), m.arch_u32("block_count")?)?;
        // Each block has tensors of its own, so a count beyond the file's
        // tensors is not a model (and would size allocations from the file).
        if n_layer > loader.tensor_count() {
            return Err(ForwardError::BadParameter {
                key: full("block_count"),
                why: format!(
                    "{n_layer} blocks, but the file holds only {} tensors",
                    loader.tensor_count()
                ),
            });
        }
        let n_embd = positive(&full("embedding_length"), m.arch_u32("embedding_length")?)?;
        let n_head = positive(
            &full("attention.head_count"),
            m.arch_u32("attention.head_count")?,
        )?;
        let n_head_kv = match opt(loader, "attention.head_count_kv", |m, k| m.arch_u32(k))? {
            Some(v) => positive(&full("attention.head_count_kv"), v)?,
            None => n_head,
        };
        if n_head % n_head_kv != 0 {
            return Err(ForwardError::BadParameter {
                key: full("attention.head_count_kv"),
                why: format!("{n_head_kv} does not divide the {n_head} query heads"),
            });
        }
        let head_dim = match opt(loader, "attention.key_length", |m, k| m.arch_u32(k))? {
            Some(v) => positive(&full("attention.key_length"), v)?,
            None => {
                if n_embd % n_head != 0 {
                    return Err(ForwardError::BadParameter {
                        key: full("attention.head_count"),
                        why: format!("{n_head} heads do not divide the hidden size {n_embd}"),
                    });
                }
                n_embd / n_head
            }
        };
        if let Some(v) = opt(loader, "attention.value_length", |m, k| m.arch_u32(k))? {
            if v as usize != head_dim {
                return Err(ForwardError::Unsupported(format!(
                    "value length {v} differs from key length {head_dim}"
                )));
            }
        }
        let rms_eps = positive_f32(
            &full("attention.layer_norm_rms_epsilon"),
            m.arch_f32("attention.layer_norm_rms_epsilon")?,
        )?;
        let n_rot = match opt(loader, "rope.dimension_count", |m, k| m.arch_u32(k))? {
            Some(v) => v as usize,
            None => head_dim,
        };
        if n_rot % 2 != 0 || n_rot > head_dim {
            return Err(ForwardError::BadParameter {
                key: full("rope.dimension_count"),
                why: format!("{n_rot} is odd or above the head dimension {head_dim}"),
            });
        }
        let base = match opt(loader, "rope.freq_base", |m, k| m.arch_f32(k))? {
            Some(b) => positive_f32(&full("rope.freq_base"), b)?,
            None => 10_000.0,
        };
        let scaling = opt(loader, "rope.scaling.type", |m, k| {
            m.arch_str(k).map(str::to_owned)
        })?;
        let factor = opt(loader, "rope.scaling.factor", |m, k| m.arch_f32(k))?;
        // As llama.cpp reads them: no type is linear, and a factor of 0 is
        // no scaling.
        let scale = match (scaling.as_deref(), factor) {
            (Some("none"), _) | (None | Some("linear"), None | Some(0.0)) => 1.0,
            (None | Some("linear"), Some(f)) => {
                1.0 / positive_f32(&full("rope.scaling.factor"), f)?
            }
            (Some(other), _) => {
                return Err(ForwardError::Unsupported(format!(
                    "RoPE scaling '{}' (linear only)",
                    gguf_loader::Escaped(other)
                )))
            }
        };
        if let Source::Model(model) = &mut source {
            // Read as f32 below; not a matrix.
            model.take_shared("rope_freqs.weight");
        }
        let factors = match loader.tensor_info("rope_freqs.weight") {
            Some(_) => {
                let f = loader.load_tensor::<f32>("rope_freqs.weight", Device::Cpu)?;
                if f.len() != n_rot / 2 {
                    return Err(ForwardError::Shape {
                        name: "rope_freqs.weight".into(),
                        found: f.ne().to_vec(),
                        expected: vec![n_rot / 2],
                    });
                }
                Some(f.into_vec())
            }
            None => None,
        };
        let mode = match arch {
            Arch::Llama => RopeMode::Norm,
            Arch::Gemma3 => RopeMode::Neox,
        };
        let global = Rope {
            mode,
            n_rot,
            base,
            scale,
            factors,
        };

        // Sliding windows (gemma3): every layer but each sixth by default,
        // with RoPE base `rope.freq_base_swa` (10000) and no scaling.
        let mut layer_is_swa = vec![false; n_layer];
        let mut sliding_window = None;
        let mut attn_scale = 1.0 / (head_dim as f32).sqrt();
        let mut logit_softcap = None;
        let mut swa_rope = global.clone();
        if arch == Arch::Gemma3 {
            if let Some(w) = opt(loader, "attention.sliding_window", |m, k| m.arch_u32(k))? {
                if w > 0 {
                    sliding_window = Some(w as usize);
                    let key = m.arch_key("attention.sliding_window_pattern")?;
                    match m.get(&key) {
                        None => set_pattern(&mut layer_is_swa, 6),
                        Some(Value::Array(a)) => {
                            if a.elem_type() != ValueType::Bool {
                                return Err(ForwardError::BadParameter {
                                    key,
                                    why: format!(
                                        "an array of {}, not of bool (one flag per layer)",
                                        a.elem_type()
                                    ),
                                });
                            }
                            let flags: Vec<bool> =
                                a.iter().map(|v| matches!(v, Value::Bool(true))).collect();
                            if flags.len() != n_layer {
                                return Err(ForwardError::BadParameter {
                                    key,
                                    why: format!("{} flags for {n_layer} layers", flags.len()),
                                });
                            }
                            layer_is_swa = flags;
                        }
                        Some(_) => {
                            let p = m.arch_u32("attention.sliding_window_pattern")?;
                            set_pattern(&mut layer_is_swa, p as usize);
                        }
                    }
                    swa_rope.base = match opt(loader, "rope.freq_base_swa", |m, k| m.arch_f32(k))? {
                        Some(b) => positive_f32(&full("rope.freq_base_swa"), b)?,
                        None => 10_000.0,
                    };
                    swa_rope.scale = 1.0;
                }
            }
            // Gemma 3 27B scales by the hidden size per head, the others by
            // the key length (llama.cpp, after gemma_pytorch).
            if n_layer == 62 {
                if n_embd < n_head {
                    return Err(ForwardError::BadParameter {
                        key: full("attention.head_count"),
                        why: format!(
                            "{n_head} heads leave no hidden size per head in {n_embd} \
                             (a 62-layer Gemma 3 scales attention by it)"
                        ),
                    });
                }
                attn_scale = 1.0 / ((n_embd / n_head) as f32).sqrt();
            }
            // 0: none.
            logit_softcap = match opt(loader, "final_logit_softcapping", |m, k| m.arch_f32(k))? {
                None | Some(0.0) => None,
                Some(c) if c.is_normal() && c > 0.0 => Some(c),
                Some(c) => {
                    return Err(ForwardError::BadParameter {
                        key: full("final_logit_softcapping"),
                        why: if c.is_subnormal() && c > 0.0 {
                            format!("{c:e} is subnormal, too small to cap with (0 means none)")
                        } else {
                            format!("{c} is neither 0 (none) nor a finite number above 0")
                        },
                    })
                }
            };
        }
        usable_rope(
            &global,
            &full("rope.freq_base"),
            &full("rope.scaling.factor"),
        )?;
        if layer_is_swa.contains(&true) {
            usable_rope(&swa_rope, &full("rope.freq_base_swa"), "")?;
        }
        let ropes = layer_is_swa
            .iter()
            .map(|&s| if s { swa_rope.clone() } else { global.clone() })
            .collect();

        let dims = Dims {
            n_embd,
            q_dim: n_head * head_dim,
            kv_dim: n_head_kv * head_dim,
            head_dim,
            gemma: arch == Arch::Gemma3,
        };
        let is_lazy = matches!(source, Source::Lazy(_));
        let mut find: Box<Find<'_, T>> = match &mut source {
            // Shared, not copied out of the model's arena: every matrix is
            // taken, so the arena is not held for a few.
            Source::Model(model) => Box::new(move |n: &str| Ok(model.take_shared(n).map(Arc::new))),
            // A tensor that cannot be decoded is that error, not "missing".
            Source::Lazy(lazy) => Box::new(move |n: &str| match lazy.tensor(n) {
                Ok(t) => Ok(Some(t)),
                Err(gguf_loader::Error::TensorNotFound(_)) => Ok(None),
                Err(e) => Err(e.into()),
            }),
        };
        let tok_embd = take_mat(&mut *find, "token_embd.weight", n_embd, None)?;
        let n_vocab = tok_embd.rows;
        let output = match take_mat(&mut *find, "output.weight", n_embd, Some(n_vocab)) {
            Err(ForwardError::MissingTensor(_)) => None,
            other => Some(other?),
        };
        // Every layer held to the hyper-parameters now, by the tensors'
        // infos, lazy or not: a cache or scratch sized from them is then
        // sized by tensors the file holds.
        let n_ff = check_layers(loader, n_layer, &dims)?;
        check_ff_length(loader, n_layer, n_ff)?;
        let mut layers = Vec::with_capacity(if is_lazy { 0 } else { n_layer });
        if !is_lazy {
            for il in 0..n_layer {
                layers.push(layer_weights(&mut *find, loader, il, &dims)?);
            }
        }
        drop(find);
        let output_norm = norm(loader, "output_norm.weight", n_embd)?;
        Ok(Transformer {
            config: Config {
                arch,
                n_layer,
                n_embd,
                n_head,
                n_head_kv,
                head_dim,
                n_ff,
                n_vocab,
                rms_eps,
                attn_scale,
                sliding_window,
                layer_is_swa,
                logit_softcap,
                context_length: gguf_loader::ModelConfig::from_metadata(m)
                    .context_length
                    .filter(|&n| n > 0),
                ropes,
            },
            tok_embd,
            output,
            output_norm,
            layers,
            dims,
            lazy: match source {
                Source::Lazy(l) => Some(l),
                Source::Model(_) => None,
            },
        })
    }

    /// Layer `il` from the lazy model (waiting for its prefetch if one is
    /// running), the next one (after the last: the first, for the next
    /// token) prefetched.
    fn lazy_layer(&self, lazy: &LazyModel<T>, il: usize) -> Result<LayerWeights<T>, ForwardError> {
        let layer = lazy.layer(il)?;
        lazy.prefetch_layer((il + 1) % self.config.n_layer);
        let mut find = |name: &str| {
            let suffix = name
                .split_once('.')
                .and_then(|(_, r)| r.split_once('.'))
                .map(|(_, s)| s);
            Ok(suffix.and_then(|s| layer.get(s).cloned()))
        };
        layer_weights(&mut find, lazy.loader(), il, &self.dims)
    }

    /// Whether the layers come from a lazy model ([`Transformer::load_lazy`]).
    pub fn is_lazy(&self) -> bool {
        self.lazy.is_some()
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// An empty KV cache for up to `capacity` positions (f16 keys and
    /// values of every layer: [`KvCache::n_bytes`]); errs with
    /// [`ForwardError::Alloc`], naming the whole cache's bytes, when its
    /// memory cannot be had. A capacity past the model's own context
    /// ([`Config::context_length`]) is allowed: positions past it were
    /// never trained.
    pub fn new_cache(&self, capacity: usize) -> Result<KvCache, ForwardError> {
        self.new_cache_with(capacity, SlidingWindow::DEFAULT)
    }

    /// [`Self::new_cache`] keeping the sliding-window layers' positions as
    /// `sliding` says (a ring's chunk of 0 counts as 1).
    pub fn new_cache_with(
        &self,
        capacity: usize,
        sliding: SlidingWindow,
    ) -> Result<KvCache, ForwardError> {
        let c = &self.config;
        let kv_dim = c.n_head_kv * c.head_dim;
        let (rings, chunk) = ring_layout(c, capacity, sliding);
        let rows = |il: usize| rings[il].map_or(capacity, |r| 2 * r);
        let total = (0..c.n_layer)
            .try_fold(0usize, |a, il| {
                rows(il)
                    .checked_mul(kv_dim)?
                    .checked_mul(2 * std::mem::size_of::<f16>())?
                    .checked_add(a)
            })
            .unwrap_or(usize::MAX);
        let mut k = Vec::with_capacity(c.n_layer);
        let mut v = Vec::with_capacity(c.n_layer);
        let whole = |_| ForwardError::Alloc(total);
        for il in 0..c.n_layer {
            let per = rows(il)
                .checked_mul(kv_dim)
                .ok_or(ForwardError::Alloc(total))?;
            k.push(try_zeros(per).map_err(whole)?);
            v.push(try_zeros(per).map_err(whole)?);
        }
        Ok(KvCache {
            k,
            v,
            kv_dim,
            len: 0,
            capacity,
            chunk,
            rings,
            written: 0,
            tokens: reserved_tokens(capacity)?,
            scratch: Scratch::default(),
            spare_logits: Vec::new(),
        })
    }

    /// Runs `tokens` at the next positions of `cache` (which they then
    /// fill) and returns the logits: of every position (`all`, row after
    /// row of `n_vocab`) or of the last one only. Errs when a token id is
    /// out of range, the cache has no room, memory runs out, or the logits
    /// hold NaN or no finite value ([`ForwardError::BadLogits`], see
    /// [`check_logits`]; the cache is then left as it was). An empty
    /// `tokens` gives no logits.
    pub fn forward(
        &self,
        cache: &mut KvCache,
        tokens: &[u32],
        all: bool,
    ) -> Result<Vec<f32>, ForwardError> {
        self.forward_observed(cache, tokens, all, &mut |_| {})
    }

    /// [`Transformer::forward`], showing every intermediate activation to
    /// `observe` as it is made (for stability checks: no NaN or Inf).
    ///
    /// A step runs on a thread of rayon's pool: the caller's, when it is
    /// one, else the global pool's, the caller waiting (so `observe` is
    /// called there, and must be `Send`). The step's many
    /// parallel sections (a few a layer) are then shared out from a thread
    /// of the pool, which works on them too and wakes no one to wait on;
    /// shared out from a thread outside, each cost two hand-overs between
    /// threads (a generated token of SmolLM2-135M at 90 tokens/s on two
    /// threads, 114 on a thread of the pool).
    pub fn forward_observed(
        &self,
        cache: &mut KvCache,
        tokens: &[u32],
        all: bool,
        observe: &mut (dyn FnMut(Activation<'_>) + Send),
    ) -> Result<Vec<f32>, ForwardError> {
        if rayon::current_thread_index().is_none() {
            return rayon::scope(|_| self.forward_observed(cache, tokens, all, observe));
        }
        let c = &self.config;
        let n = tokens.len();
        if self.tok_embd.t.device() != Device::Cpu {
            return Err(ForwardError::Unsupported(format!(
                "the weights are on {}: run them with the GPU forward pass (feature cuda)",
                self.tok_embd.t.device()
            )));
        }
        if n == 0 {
            return Ok(Vec::new());
        }
        check_step(
            c,
            tokens,
            (cache.kv_dim, cache.k.len()),
            cache.capacity,
            cache.len,
        )?;
        cache.check_layout(c)?;
        let start = cache.len;
        if let Some(chunk) = cache.begin_step(c.sliding_window, n)? {
            // A ring holds the window and one chunk: the step a chunk at a
            // time (each gives the logits it would in one step).
            let mut logits = Vec::new();
            for part in tokens.chunks(chunk) {
                let l = self.forward_observed(cache, part, all, observe)?;
                if all {
                    logits.extend(l);
                } else {
                    logits = l;
                }
            }
            return Ok(logits);
        }
        let (d, hd) = (c.n_embd, c.head_dim);
        let kv_dim = c.n_head_kv * hd;

        // The buffers of the last step, and of each layer for the next.
        let mut ws = std::mem::take(&mut cache.scratch);

        // Embeddings.
        let mut x = ws.take(n * d)?;
        for (row, &t) in x.chunks_exact_mut(d).zip(tokens) {
            let t = t as usize;
            T::widen(&self.tok_embd.t.data()[t * d..(t + 1) * d], row);
        }
        if c.arch == Arch::Gemma3 {
            let s = (d as f32).sqrt();
            x.iter_mut().for_each(|v| *v *= s);
        }
        observe(Activation {
            name: "inp_embd",
            layer: None,
            values: &x,
        });

        // The cached keys and values each layer's queries see: for a batch,
        // widened to f32 once, into one pair of buffers for every layer (a
        // pair of its own for each took a fresh zeroed allocation, page by
        // page, per layer per step); a step of a few tokens reads the f16
        // cache itself, a row at a time, instead of a pass over all of it.
        let batch = n > FEW_QUERIES;
        let most = if batch { (start + n) * kv_dim } else { 0 };
        let (mut kf, mut vf) = (ws.take(most)?, ws.take(most)?);
        // With AVX-512, AVX2 or NEON, the keys transposed too (`kt[c * tp +
        // t]`, padded past the last position for whole vectors of keys),
        // for the lane scores (`ops::lane_scores`).
        let tp = (start + n).next_multiple_of(SCORE_KEYS) + SCORE_KEYS;
        let lane_keys = batch && ops::Vector::of(Kernel::detect()).is_some();
        let mut kt = ws.take(if lane_keys { kv_dim * tp } else { 0 })?;
        kt.fill(0.0);
        // Each RoPE's angles at the step's positions, once a step for all
        // the layers that share it (ggml's rope cache, once a layer).
        let mut angles: Vec<(&Rope, Vec<(f32, f32)>)> = Vec::new();
        for il in 0..c.n_layer {
            let taken;
            let l = match &self.lazy {
                None => &self.layers[il],
                Some(lazy) => {
                    taken = self.lazy_layer(lazy, il)?;
                    &taken
                }
            };
            let obs = |observe: &mut dyn FnMut(Activation<'_>), name, values: &[f32]| {
                observe(Activation {
                    name,
                    layer: Some(il),
                    values,
                })
            };
            let mut h = ws.copy_of(&x)?;
            rms_norm(&mut h, &l.attn_norm, c.rms_eps);
            obs(observe, "attn_norm", &h);
            let [mut q, mut k, v] = Mat::mul_many([&l.wq, &l.wk, &l.wv], &h, n, &mut ws)?;
            if let Some(w) = &l.q_norm {
                rms_norm(&mut q, w, c.rms_eps);
            }
            if let Some(w) = &l.k_norm {
                rms_norm(&mut k, w, c.rms_eps);
            }
            let rope = &c.ropes[il];
            let at = match angles.iter().position(|(r, _)| *r == rope) {
                Some(at) => at,
                None => {
                    angles.push((rope, rope.angles_from(start, n)?));
                    angles.len() - 1
                }
            };
            let (angles, pairs) = (&angles[at].1, rope.n_rot / 2);
            let rotate = |(i, (q, k)): (usize, (&mut [f32], &mut [f32]))| {
                let angles = &angles[i * pairs..][..pairs];
                for head in q.chunks_exact_mut(hd).chain(k.chunks_exact_mut(hd)) {
                    rope.apply(head, angles);
                }
            };
            let q_dim = c.n_head * hd;
            if q.len() >= PAR_ELEMENTWISE {
                q.par_chunks_mut(q_dim)
                    .zip(k.par_chunks_mut(kv_dim))
                    .enumerate()
                    .for_each(rotate);
            } else {
                q.chunks_mut(q_dim)
                    .zip(k.chunks_mut(kv_dim))
                    .enumerate()
                    .for_each(rotate);
            }
            obs(observe, "q", &q);
            obs(observe, "k", &k);
            obs(observe, "v", &v);
            let ring = cache.rings.get(il).copied().flatten();
            match ring {
                None => {
                    to_f16(&mut cache.k[il][start * kv_dim..(start + n) * kv_dim], &k);
                    to_f16(&mut cache.v[il][start * kv_dim..(start + n) * kv_dim], &v);
                }
                Some(r) => {
                    // Each position at both of its rows.
                    for (i, (kr, vr)) in k
                        .chunks_exact(kv_dim)
                        .zip(v.chunks_exact(kv_dim))
                        .enumerate()
                    {
                        let row = (start + i) % r;
                        for at in [row, row + r] {
                            let span = at * kv_dim..(at + 1) * kv_dim;
                            cache.k[il][span.clone()].convert_from_f32_slice(kr);
                            cache.v[il][span].convert_from_f32_slice(vr);
                        }
                    }
                }
            }
            let window = if c.layer_is_swa[il] {
                c.sliding_window
            } else {
                None
            };
            // The positions these queries see, widened to f32.
            let (base, first) = cache.seen_from(il, start, window);
            let seen = first * kv_dim..(first + start + n - base) * kv_dim;
            let (kr, vr) = if batch {
                let (kf, vf) = (&mut kf[..seen.len()], &mut vf[..seen.len()]);
                to_f32(kf, &cache.k[il][seen.clone()]);
                to_f32(vf, &cache.v[il][seen]);
                if lane_keys {
                    transpose_keys(kf, kv_dim, &mut kt, tp);
                }
                (Rows::F32(kf), Rows::F32(vf))
            } else {
                (
                    Rows::F16(&cache.k[il][seen.clone()]),
                    Rows::F16(&cache.v[il][seen]),
                )
            };
            let keys_t = lane_keys.then_some((&kt[..], tp));
            let attn = ws.take(q.len())?;
            let attn = attention(&q, (kr, keys_t), vr, c, (start, base), window, attn);
            obs(observe, "kqv_out", &attn);
            let mut o = l.wo.mul(&attn, n, &mut ws)?;
            if let Some(w) = &l.post_attn_norm {
                rms_norm(&mut o, w, c.rms_eps);
            }
            obs(observe, "attn_out", &o);
            add_into(&mut x, &o);
            ws.give([h, q, k, v, attn, o]);

            let mut h = ws.copy_of(&x)?;
            rms_norm(&mut h, &l.ffn_norm, c.rms_eps);
            obs(observe, "ffn_norm", &h);
            let [mut g, u] = Mat::mul_many([&l.gate, &l.up], &h, n, &mut ws)?;
            let act: fn(&mut [f32], &[f32]) = match c.arch {
                Arch::Llama => silu_mul,
                Arch::Gemma3 => gelu_mul,
            };
            // On every thread for a batch (libm's exp, a call a value, was
            // a tenth of a prompt's time on one).
            pairwise(&mut g, &u, act);
            obs(observe, "ffn_act", &g);
            let mut f = l.down.mul(&g, n, &mut ws)?;
            if let Some(w) = &l.post_ffn_norm {
                rms_norm(&mut f, w, c.rms_eps);
            }
            obs(observe, "ffn_out", &f);
            add_into(&mut x, &f);
            obs(observe, "l_out", &x);
            ws.give([h, g, u, f]);
        }
        ws.give([kf, vf, kt]);

        let mut x = if all {
            x
        } else {
            let last = x[(n - 1) * d..].to_vec();
            ws.give([x]);
            last
        };
        let rows = x.len() / d;
        rms_norm(&mut x, &self.output_norm, c.rms_eps);
        observe(Activation {
            name: "result_norm",
            layer: None,
            values: &x,
        });
        let head = self.output.as_ref().unwrap_or(&self.tok_embd);
        // The logits leave with the caller: in a buffer of their own.
        // (Into the last step's, where handed back and large enough.)
        let mut out = Scratch::default();
        out.give([std::mem::take(&mut cache.spare_logits)]);
        let mut logits = head.mul(&x, rows, &mut out)?;
        ws.give([x]);
        cache.scratch = ws;
        if let Some(cap) = c.logit_softcap {
            logits.iter_mut().for_each(|v| *v = (*v / cap).tanh() * cap);
        }
        observe(Activation {
            name: "logits",
            layer: None,
            values: &logits,
        });
        // NaN here would be sampled as some token: an error instead, and
        // the cache left as it was.
        check_logits(&logits, c.n_vocab, if all { start } else { start + n - 1 })?;
        cache.filled(start, tokens);
        Ok(logits)
    }
}

/// ggml's `set_swa_pattern` (dense last): layer `il` slides unless
/// `il % n == n - 1`; a pattern of 0 makes every layer slide.
fn set_pattern(flags: &mut [bool], n: usize) {
    for (il, f) in flags.iter_mut().enumerate() {
        *f = n == 0 || il % n < n - 1;
    }
}

/// The matrix `name` (`ne = [cols, rows]`; any `rows` when `None`), as
/// `find` gives it (moved out of a model, or shared with a lazy layer).
fn take_mat<T: WeightElement>(
    find: &mut Find<'_, T>,
    name: &str,
    cols: usize,
    rows: Option<usize>,
) -> Result<Mat<T>, ForwardError> {
    let t = find(name)?.ok_or_else(|| ForwardError::MissingTensor(name.into()))?;
    let rows = mat_rows(name, Tensor::ne(&t), cols, rows)?;
    Ok(Mat { rows, cols, t })
}

/// The rows of matrix `name` whose `ne` is `[cols, rows]` (any `rows`
/// when `None`); a [`ForwardError::Shape`] when it is not.
fn mat_rows(
    name: &str,
    ne: &[usize],
    cols: usize,
    rows: Option<usize>,
) -> Result<usize, ForwardError> {
    match *ne {
        [c, r] if c == cols && rows.is_none_or(|rows| r == rows) => Ok(r),
        _ => Err(ForwardError::Shape {
            name: name.into(),
            found: ne.to_vec(),
            expected: vec![cols, rows.unwrap_or(0)],
        }),
    }
}

/// Holds every layer's tensors to the hyper-parameters by their infos
/// alone (nothing is decoded), as [`layer_weights`] holds the tensors:
/// the matrices' widths, one feed-forward width for all layers (the GPU
/// pass sizes its scratch by it) and the norms' lengths. Returns that
/// width.
fn check_layers(loader: &MmapGGUFLoader, n_layer: usize, d: &Dims) -> Result<usize, ForwardError> {
    let mut n_ff = None;
    for il in 0..n_layer {
        let ne = |s: &str| {
            let name = format!("blk.{il}.{s}.weight");
            let info = loader
                .tensor_info(&name)
                .ok_or_else(|| ForwardError::MissingTensor(name.clone()))?;
            let ne: Vec<usize> = info
                .ne()
                .iter()
                .map(|&v| usize::try_from(v).unwrap_or(usize::MAX))
                .collect();
            Ok::<_, ForwardError>((name, ne))
        };
        let mat = |s: &str, cols, rows| {
            let (name, ne) = ne(s)?;
            mat_rows(&name, &ne, cols, rows)
        };
        mat("attn_q", d.n_embd, Some(d.q_dim))?;
        mat("attn_k", d.n_embd, Some(d.kv_dim))?;
        mat("attn_v", d.n_embd, Some(d.kv_dim))?;
        mat("attn_output", d.q_dim, Some(d.n_embd))?;
        let ff = mat("ffn_gate", d.n_embd, n_ff)?;
        n_ff = Some(ff);
        mat("ffn_up", d.n_embd, Some(ff))?;
        mat("ffn_down", ff, Some(d.n_embd))?;
        let mut norms = vec![("attn_norm", d.n_embd), ("ffn_norm", d.n_embd)];
        if d.gemma {
            norms.extend([
                ("attn_q_norm", d.head_dim),
                ("attn_k_norm", d.head_dim),
                ("post_attention_norm", d.n_embd),
                ("post_ffw_norm", d.n_embd),
            ]);
        }
        for (s, len) in norms {
            let (name, ne) = ne(s)?;
            if ne != [len] {
                return Err(ForwardError::Shape {
                    name,
                    found: ne,
                    expected: vec![len],
                });
            }
        }
    }
    // `n_layer` is positive.
    Ok(n_ff.unwrap_or(0))
}

/// `{arch}.feed_forward_length`, where the file has it, held to the
/// width of the feed-forward tensors, `n_ff`: one count, or one per layer
/// (as llama.cpp reads it). llama.cpp sizes those tensors by it, so a file
/// whose tensors say otherwise does not load there either.
fn check_ff_length(
    loader: &MmapGGUFLoader,
    n_layer: usize,
    n_ff: usize,
) -> Result<(), ForwardError> {
    let m = loader.metadata();
    let key = m.arch_key("feed_forward_length")?;
    let bad = |why: String| ForwardError::BadParameter {
        key: key.clone(),
        why,
    };
    let counts: Vec<Option<u64>> = match m.get(&key) {
        None => return Ok(()),
        Some(Value::Array(a)) => {
            if usize::try_from(a.len()).ok() != Some(n_layer) {
                return Err(bad(format!("{} counts for {n_layer} layers", a.len())));
            }
            a.iter().map(|v| v.as_u64()).collect()
        }
        Some(v) => vec![v.as_u64()],
    };
    for c in counts {
        match c {
            Some(c) if c == n_ff as u64 => {}
            Some(c) => {
                return Err(bad(format!(
                    "{c}, but the feed-forward tensors are {n_ff} wide"
                )))
            }
            None => return Err(bad("not a count (an unsigned integer)".into())),
        }
    }
    Ok(())
}

/// A 1-D tensor read as f32, of length `len`.
fn norm(loader: &MmapGGUFLoader, name: &str, len: usize) -> Result<Vec<f32>, ForwardError> {
    if loader.tensor_info(name).is_none() {
        return Err(ForwardError::MissingTensor(name.into()));
    }
    let t = loader.load_tensor::<f32>(name, Device::Cpu)?;
    if t.ne() != [len] {
        return Err(ForwardError::Shape {
            name: name.into(),
            found: t.ne().to_vec(),
            expected: vec![len],
        });
    }
    Ok(t.into_vec())
}

/// `x += y`, value by value; a batch's on every thread.
fn add_into(x: &mut [f32], y: &[f32]) {
    pairwise(x, y, |x, y| x.iter_mut().zip(y).for_each(|(a, b)| *a += b));
}

/// `src` rounded to f16 into `dst` (as long); a batch's on every thread.
fn to_f16(dst: &mut [f16], src: &[f32]) {
    pairwise(dst, src, |d, s| d.convert_from_f32_slice(s));
}

/// `src` widened to f32 into `dst` (as long); a batch's on every thread.
fn to_f32(dst: &mut [f32], src: &[f16]) {
    pairwise(dst, src, |d, s| s.convert_to_f32_slice(d));
}

/// Keys as `kt[c * tp + t]` (column `c` of position `t` of `kf`'s rows of
/// `kv_dim`), for the lane scores: sixteen columns a task, their rows read
/// in order.
fn transpose_keys(kf: &[f32], kv_dim: usize, kt: &mut [f32], tp: usize) {
    const COLS: usize = 16;
    let rows = kf.len() / kv_dim;
    debug_assert!(rows <= tp && kt.len() >= kv_dim * tp);
    kt[..kv_dim * tp]
        .par_chunks_mut(COLS * tp)
        .enumerate()
        .for_each(|(b, out)| {
            let c0 = b * COLS;
            let width = out.len() / tp;
            for (t, row) in kf.chunks_exact(kv_dim).enumerate() {
                for (j, &v) in row[c0..c0 + width].iter().enumerate() {
                    out[j * tp + t] = v;
                }
            }
        });
}

/// Queries at most in a step whose attention reads the f16 cache row by
/// row; more widen it to f32 once (each row is then read by many).
const FEW_QUERIES: usize = 4;

/// The cached keys or values attention reads: widened to f32 beforehand,
/// or the cache's f16 rows, widened one at a time (exactly: every f16 is
/// an f32).
#[derive(Clone, Copy)]
enum Rows<'a> {
    F32(&'a [f32]),
    F16(&'a [f16]),
}

impl Rows<'_> {
    /// The `len` values from `at`, widened into `buf` where they are f16:
    /// by F16C in line where `simd` is an x86 SIMD kernel (whose callers
    /// are compiled with F16C), by `fcvtl` where it is NEON, else by `half`
    /// (a call per eight values).
    #[inline(always)]
    fn row<'b>(&'b self, at: usize, len: usize, buf: &'b mut [f32], simd: Kernel) -> &'b [f32] {
        match *self {
            Rows::F32(r) => &r[at..][..len],
            Rows::F16(r) => {
                let (src, dst) = (&r[at..][..len], &mut buf[..len]);
                #[cfg(target_arch = "x86_64")]
                if simd != Kernel::Portable {
                    use ops::sealed::Sealed;
                    let body = len - len % 8;
                    for (s, d) in src.chunks_exact(8).zip(dst.chunks_exact_mut(8)) {
                        // SAFETY: the CPU has AVX and F16C (a SIMD kernel
                        // was detected); eight halves are read and eight
                        // floats written.
                        unsafe {
                            core::arch::x86_64::_mm256_storeu_ps(
                                d.as_mut_ptr(),
                                f16::load8(s.as_ptr()),
                            )
                        };
                    }
                    for (d, s) in dst[body..].iter_mut().zip(&src[body..]) {
                        *d = s.to_f32();
                    }
                    return dst;
                }
                #[cfg(target_arch = "aarch64")]
                if simd == Kernel::Neon {
                    use ops::sealed::Sealed;
                    let body = len - len % 4;
                    for (s, d) in src.chunks_exact(4).zip(dst.chunks_exact_mut(4)) {
                        // SAFETY: four halves are read and four floats
                        // written (NEON is in every aarch64 CPU).
                        unsafe {
                            core::arch::aarch64::vst1q_f32(d.as_mut_ptr(), f16::load4(s.as_ptr()))
                        };
                    }
                    for (d, s) in dst[body..].iter_mut().zip(&src[body..]) {
                        *d = s.to_f32();
                    }
                    return dst;
                }
                #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
                let _ = simd;
                src.convert_to_f32_slice(dst);
                dst
            }
        }
    }

    fn from(self, at: usize) -> Self {
        match self {
            Rows::F32(r) => Rows::F32(&r[at..]),
            Rows::F16(r) => Rows::F16(&r[at..]),
        }
    }
}

/// Query rows a task of a batch's attention takes at most (with the keys
/// transposed): each vector of keys the lane scores load, and each chunk of
/// value rows, then serves every head of those rows from the L1 / L2 cache,
/// where a task of one row read a long context's keys and values from
/// memory for its few heads.
const BLOCK_ROWS: usize = 8;

/// Causal (optionally sliding-window) grouped-query attention of `n` new
/// queries at positions `start..start + n` over the cached keys/values of
/// positions `base..start + n` (`k` and `v` begin at position `base`, the
/// first any query sees; with the keys, for a batch where the CPU has
/// batch kernels ([`ops::Vector`]), the same transposed and the distance
/// between their rows, for the lane scores, [`ops::lane_scores`]).
/// Returns `n` rows of `n_head * head_dim`, written over `out` (as long as
/// `q`; whatever it held).
fn attention(
    q: &[f32],
    (k, kt): (Rows<'_>, Option<(&[f32], usize)>),
    v: Rows<'_>,
    c: &Config,
    (start, base): (usize, usize),
    window: Option<usize>,
    mut out: Vec<f32>,
) -> Vec<f32> {
    let hd = c.head_dim;
    let kv_dim = c.n_head_kv * hd;
    let group = c.n_head / c.n_head_kv;
    let q_dim = c.n_head * hd;
    let n = q.len() / q_dim;
    // (llama.cpp folds gemma3's scale into the queries: the same product.)
    let scale = c.attn_scale;
    /// Some query rows and some heads of one KV group: their queries (row
    /// by row, each row's heads one after the other), the keys and values
    /// from their KV head on (rows `kv_dim` apart), the positions each row
    /// sees.
    struct Heads<'a> {
        q: Vec<f32>,
        /// Heads a row.
        per: usize,
        k: Rows<'a>,
        v: Rows<'a>,
        /// Each row's positions: the first and the last rise row by row.
        spans: Vec<std::ops::RangeInclusive<usize>>,
        /// The position of the first key and value in `k` and `v`.
        base: usize,
        /// The KV head's keys transposed (from position `base`, rows `tp`
        /// apart) and `tp`: only where the CPU has batch kernels
        /// ([`ops::Vector`]).
        kt: Option<(&'a [f32], usize)>,
        kv_dim: usize,
        scale: f32,
    }
    // Each head's scores against every key its rows see, their softmax
    // over its own row's span, the weighted sum of the values into its
    // part of `o`. The heads share each key and value as it is read (and
    // widened); each head's own operations come in the same order as
    // alone, so the same bits: the scores are of one key each, whatever
    // the other keys; the values are added position by position in order,
    // a stretch of positions at a time (each stretch for the rows that see
    // all of it).
    //
    // `simd`: the kernel the caller is compiled for. Where it has batch
    // kernels (AVX-512's, AVX2's, NEON's), the scores and weighted values
    // take them: the lane scores from the keys transposed, else the row
    // scores from the cache's rows.
    #[inline(always)]
    fn some(h: Heads<'_>, hd: usize, o: &mut [f32], simd: Kernel) {
        let vector = ops::Vector::of(simd);
        // Queries meet the f16 keys as f16, as in llama.cpp.
        let mut qh = h.q;
        <f16 as WeightElement>::round_inputs(&mut qh);
        // Every position a row sees: the scores are of all of them, each
        // row's softmax and values of its own.
        let (lo, hi) = match (h.spans.first(), h.spans.last()) {
            (Some(a), Some(b)) => (*a.start(), *b.end()),
            _ => return,
        };
        let span = hi - lo + 1;
        // Plain loops: the closure of a `map` over the span was compiled
        // apart, without AVX2 (a quarter of a step's time at a long
        // context).
        let mut buf = vec![0f32; hd];
        // Rows of whole vectors of keys (the lane scores write them).
        let stride = span.next_multiple_of(SCORE_KEYS);
        let mut scores = vec![0f32; qh.len() / hd * stride];
        match (h.kt, vector) {
            (Some((kt, tp)), Some(vec)) => {
                let kt = (&kt[lo - h.base..], tp);
                let (q, out) = ((&qh[..], hd, h.scale), (&mut scores[..], stride));
                // SAFETY: `simd` is a kernel of this CPU's (the caller's),
                // so it has `vec`'s features.
                unsafe { ops::lane_scores(vec, kt, span, q, out) }
            }
            // A few tokens' keys from the cache's rows, by the row kernel.
            (None, Some(vec)) => {
                let at = (lo - h.base) * h.kv_dim;
                let (q, out) = ((&qh[..], hd, h.scale), (&mut scores[..], stride));
                // SAFETY: as above.
                unsafe {
                    match h.k {
                        Rows::F32(k) => ops::row_scores(vec, (&k[at..], h.kv_dim), span, q, out),
                        Rows::F16(k) => ops::row_scores(vec, (&k[at..], h.kv_dim), span, q, out),
                    }
                }
            }
            _ => {
                for (t, j) in (lo..=hi).enumerate() {
                    let kj = h.k.row((j - h.base) * h.kv_dim, hd, &mut buf, simd);
                    for (qr, sr) in qh.chunks_exact(hd).zip(scores.chunks_exact_mut(stride)) {
                        sr[t] = ops::dot(qr, kj) * h.scale;
                    }
                }
            }
        }
        let row_scores = h.per * stride;
        for (sp, rs) in h.spans.iter().zip(scores.chunks_exact_mut(row_scores)) {
            for sr in rs.chunks_exact_mut(stride) {
                softmax(&mut sr[sp.start() - lo..=sp.end() - lo], simd);
            }
        }
        // The values a stretch of positions at a time, between the firsts
        // and past-the-lasts of the rows' spans, each for the rows that see
        // all of it (consecutive rows: the ends rise row by row).
        let mut ends: Vec<usize> = h
            .spans
            .iter()
            .flat_map(|sp| [*sp.start(), sp.end() + 1])
            .collect();
        ends.sort_unstable();
        ends.dedup();
        for w in ends.windows(2) {
            let (a, b) = (w[0], w[1]);
            let sees =
                |sp: &std::ops::RangeInclusive<usize>| *sp.start() <= a && *sp.end() >= b - 1;
            let Some(first) = h.spans.iter().position(sees) else {
                continue;
            };
            let rows = h.spans[first..].iter().take_while(|sp| sees(sp)).count();
            let heads = first * h.per..(first + rows) * h.per;
            let p = &scores[heads.start * stride + (a - lo)..];
            let o = &mut o[heads.start * hd..heads.end * hd];
            // The weighted values by the batch kernel wherever the CPU has
            // one: from the widened rows of a batch, or from the cache's
            // f16 rows (a few-token step), widened as they are read.
            if let Some(vec) = vector.filter(|v| hd.is_multiple_of(v.value_block())) {
                let at = (a - h.base) * h.kv_dim;
                // SAFETY: `simd` is a kernel of this CPU's (the caller's),
                // so it has `vec`'s features.
                unsafe {
                    match h.v {
                        Rows::F32(v) => ops::weighted_values(
                            vec,
                            (p, stride),
                            b - a,
                            (&v[at..], h.kv_dim),
                            hd,
                            o,
                        ),
                        Rows::F16(v) => ops::weighted_values(
                            vec,
                            (p, stride),
                            b - a,
                            (&v[at..], h.kv_dim),
                            hd,
                            o,
                        ),
                    }
                }
                continue;
            }
            for (t, j) in (a..b).enumerate() {
                let vj = h.v.row((j - h.base) * h.kv_dim, hd, &mut buf, simd);
                for (or, sr) in o.chunks_exact_mut(hd).zip(p.chunks(stride)) {
                    let p = sr[t];
                    for (a, b) in or.iter_mut().zip(vj) {
                        *a = ops::fma32(p, *b, *a);
                    }
                }
            }
        }
    }
    // The same code compiled for AVX2 where the CPU has it: wider vectors,
    // the same operations in the same order (the products fused into the
    // sums by `mul_add`, an FMA instruction here), so the same bits. F16C
    // too, for the f16 cache's rows (`Rows::row`).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn some_avx2(h: Heads<'_>, hd: usize, o: &mut [f32]) {
        some(h, hd, o, Kernel::Avx2)
    }
    // And for AVX-512, for a batch (whose scores and values take the lane
    // kernels): a step of a few tokens ran 12% slower so at 3000
    // positions of SmolLM2 than with the AVX2 code.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx2")]
    fn some_avx512(h: Heads<'_>, hd: usize, o: &mut [f32]) {
        some(h, hd, o, Kernel::Avx512)
    }
    // The matrix kernels' choice (AVX2 with FMA and F16C, AVX-512F besides,
    // under `GGUF_LOADER_SIMD`'s cap; NEON on aarch64).
    let simd = Kernel::detect();
    let threads = rayon::current_num_threads();
    // One query at a long context: shared out by positions and dimensions.
    if let Some(vec) = ops::Vector::of(simd).map(ops::Vector::for_steps) {
        let first = window.map_or(0, |w| (start + 1).saturating_sub(w));
        if n == 1
            && kt.is_none()
            && threads > 1
            && start + 1 - first >= SPLIT_SPAN
            && hd.is_multiple_of(vec.value_block())
        {
            let (positions, threads) = ((first..=start, base), threads);
            // SAFETY: `simd`, detected, is a kernel of this CPU's.
            return unsafe { one_query(vec, q, (k, v), c, positions, threads, out) };
        }
    }
    // Heads a task takes together: the most of a group that still leaves
    // a task for every thread.
    let per = (1..=group)
        .rev()
        .find(|&p| group.is_multiple_of(p) && n * c.n_head / p >= threads)
        .unwrap_or(1);
    let chunks = c.n_head / per;
    // Rows a task takes: with the keys transposed (a batch), up to
    // BLOCK_ROWS while eight tasks a thread are left; else one.
    let rows_per = match kt {
        Some(_) => (n * chunks / (8 * threads)).clamp(1, BLOCK_ROWS),
        None => 1,
    };
    let parts: Vec<Vec<f32>> = (0..n.div_ceil(rows_per) * chunks)
        .into_par_iter()
        .map(|task| {
            let (block, h) = (task / chunks, task % chunks * per);
            let rows = block * rows_per..((block + 1) * rows_per).min(n);
            let kvh = (h / group) * hd;
            let heads = Heads {
                q: rows
                    .clone()
                    .flat_map(|i| &q[i * q_dim + h * hd..][..per * hd])
                    .copied()
                    .collect(),
                per,
                k: k.from(kvh),
                v: v.from(kvh),
                spans: rows
                    .clone()
                    .map(|i| {
                        let pos = start + i;
                        window.map_or(0, |w| (pos + 1).saturating_sub(w))..=pos
                    })
                    .collect(),
                base,
                kt: kt.map(|(kt, tp)| (&kt[kvh * tp..], tp)),
                kv_dim,
                scale,
            };
            let mut o = vec![0f32; rows.len() * per * hd];
            #[cfg(target_arch = "x86_64")]
            if simd.is_avx512() && heads.kt.is_some() {
                // SAFETY: the CPU has AVX-512F and AVX2 (detected above).
                unsafe { some_avx512(heads, hd, &mut o) };
                return o;
            }
            #[cfg(target_arch = "x86_64")]
            if simd != Kernel::Portable {
                // SAFETY: the CPU has AVX2, FMA and F16C (detected above).
                unsafe { some_avx2(heads, hd, &mut o) };
                return o;
            }
            // On aarch64 with NEON's kernels (every aarch64 CPU has NEON, so
            // `some` needs no features of its own); elsewhere portable.
            #[cfg(target_arch = "aarch64")]
            some(heads, hd, &mut o, simd);
            #[cfg(not(target_arch = "aarch64"))]
            some(heads, hd, &mut o, Kernel::Portable);
            o
        })
        .collect();
    // Every value written.
    assert_eq!(out.len(), q.len());
    out.par_chunks_mut(q_dim).enumerate().for_each(|(i, row)| {
        let (block, r) = (i / rows_per, i % rows_per);
        for (g, o) in row.chunks_exact_mut(per * hd).enumerate() {
            o.copy_from_slice(&parts[block * chunks + g][r * per * hd..][..per * hd]);
        }
    });
    out
}

/// Positions from which [`attention`] shares a step's one query out by
/// [`one_query`] (below them its three parallel sections cost more than
/// the balance they buy).
const SPLIT_SPAN: usize = 256;

/// [`attention`] of one query (at the last of `positions`, whose keys and
/// values `k` and `v` hold from position `base`, rows of the cache) by
/// `vec`'s kernels, shared out so that every thread has work whatever the
/// number of KV heads: the scores by runs of positions, each task every
/// head of a group against its run of keys; each head's softmax; the
/// weighted values by runs of dimensions, each task every head of a group
/// over every position for its dimensions. (A task a
/// group left one of two threads idle a third of the time on SmolLM2's
/// three groups; a task a head read its group's keys again for each.)
/// Each score is of one key, each value's sum runs over the positions in
/// order, whatever the split: the same kernels, the same bits as
/// [`attention`]'s tasks. Returns the query's `n_head * head_dim` outputs
/// over `out`.
///
/// # Safety
/// The CPU has `vec`'s features.
unsafe fn one_query(
    vec: ops::Vector,
    q: &[f32],
    (k, v): (Rows<'_>, Rows<'_>),
    c: &Config,
    (positions, base): (std::ops::RangeInclusive<usize>, usize),
    threads: usize,
    mut out: Vec<f32>,
) -> Vec<f32> {
    let (hd, kv_heads) = (c.head_dim, c.n_head_kv);
    let group = c.n_head / kv_heads;
    let kv_dim = kv_heads * hd;
    let (first, span) = (*positions.start(), positions.count());
    // The position of each run's first key in the rows.
    let at = (first - base) * kv_dim;
    // Queries meet the f16 keys as f16, as in llama.cpp.
    let mut q = q.to_vec();
    <f16 as WeightElement>::round_inputs(&mut q);
    let stride = span.next_multiple_of(SCORE_KEYS);
    let mut scores = vec![0f32; c.n_head * stride];
    // Two tasks a thread; runs of whole vectors of keys.
    let runs = (2 * threads).div_ceil(kv_heads);
    let width = span.div_ceil(runs).next_multiple_of(SCORE_KEYS);
    let jobs = group_blocks(&mut scores, group, stride, width);
    jobs.into_par_iter().for_each(|(g, from, mut o)| {
        // Every block starts inside the span (`width` and `stride` are
        // whole vectors of keys, and the span ends in the last).
        let len = o.width().min(span - from);
        let mut local = vec![0f32; group * len];
        let q = (&q[g * group * hd..][..group * hd], hd, c.attn_scale);
        let at = at + from * kv_dim + g * hd;
        // SAFETY: the CPU has `vec`'s features (the caller's word).
        unsafe {
            match k {
                Rows::F32(k) => ops::row_scores(vec, (&k[at..], kv_dim), len, q, (&mut local, len)),
                Rows::F16(k) => ops::row_scores(vec, (&k[at..], kv_dim), len, q, (&mut local, len)),
            }
        }
        for (h, l) in local.chunks_exact(len).enumerate() {
            o.row(h)[..len].copy_from_slice(l);
        }
    });
    scores.par_chunks_mut(stride).for_each(|row| {
        // SAFETY: as above.
        unsafe { softmax_by(vec, &mut row[..span]) }
    });
    // Runs of whole vectors of values: the fewest that leave two tasks a
    // thread.
    let block = vec.value_block();
    let mut runs = 1;
    while kv_heads * runs < 2 * threads && hd.is_multiple_of(2 * runs * block) {
        runs *= 2;
    }
    let width = hd / runs;
    assert_eq!(out.len(), c.n_head * hd);
    let jobs = group_blocks(&mut out, group, hd, width);
    jobs.into_par_iter().for_each(|(g, from, mut o)| {
        let mut local = vec![0f32; group * width];
        let p = (&scores[g * group * stride..], stride);
        let at = at + g * hd + from;
        // SAFETY: as above; `width` is a multiple of `vec`'s value block.
        unsafe {
            match v {
                Rows::F32(v) => {
                    ops::weighted_values(vec, p, span, (&v[at..], kv_dim), width, &mut local)
                }
                Rows::F16(v) => {
                    ops::weighted_values(vec, p, span, (&v[at..], kv_dim), width, &mut local)
                }
            }
        }
        for (h, l) in local.chunks_exact(width).enumerate() {
            o.row(h).copy_from_slice(l);
        }
    });
    out
}

/// `y` (the KV groups one after the other, each `group` rows of `stride`)
/// lent out by group in blocks of `width` columns: `(group, first column,
/// block)` for each, a task's share of [`one_query`]'s scores or outputs.
fn group_blocks(
    y: &mut [f32],
    group: usize,
    stride: usize,
    width: usize,
) -> Vec<(usize, usize, matmul::Outputs<'_>)> {
    y.chunks_exact_mut(group * stride)
        .enumerate()
        .flat_map(|(g, y)| {
            matmul::Outputs::blocks(y, group, stride, width)
                .enumerate()
                .map(move |(i, o)| (g, i * width, o))
        })
        .collect()
}

/// [`softmax`] by `vec`'s kernels: compiled with AVX2, FMA and F16C, by
/// AVX2's (as a step's other tasks take them), for either x86 kind; by
/// NEON's on aarch64.
///
/// # Safety
/// The CPU has `vec`'s features.
#[cfg_attr(
    not(any(target_arch = "x86_64", target_arch = "aarch64")),
    allow(unused_variables)
)]
unsafe fn softmax_by(vec: ops::Vector, x: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn avx2(x: &mut [f32]) {
        softmax(x, Kernel::Avx2)
    }
    match vec {
        // SAFETY: either x86 kind's CPU has AVX2, FMA and F16C (the
        // caller's word).
        #[cfg(target_arch = "x86_64")]
        ops::Vector::Avx2 | ops::Vector::Avx512 => unsafe { avx2(x) },
        #[cfg(target_arch = "aarch64")]
        ops::Vector::Neon => softmax(x, Kernel::Neon),
    }
}

/// What a forward step checks before it touches anything, on the CPU and on
/// the GPU: every token in the vocabulary, a cache made for this model
/// (`cache_shape`: its KV width and layer count) with room for the tokens.
fn check_step(
    c: &Config,
    tokens: &[u32],
    cache_shape: (usize, usize),
    capacity: usize,
    len: usize,
) -> Result<(), ForwardError> {
    if let Some(&id) = tokens.iter().find(|&&t| t as usize >= c.n_vocab) {
        return Err(ForwardError::Token {
            id,
            n_vocab: c.n_vocab,
        });
    }
    let expected = (c.n_head_kv * c.head_dim, c.n_layer);
    if cache_shape != expected {
        return Err(ForwardError::CacheMismatch {
            expected,
            found: cache_shape,
        });
    }
    if capacity - len < tokens.len() {
        return Err(ForwardError::CacheFull {
            capacity,
            len,
            more: tokens.len(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{usable_rope, Rope, RopeMode};

    /// The attention, whichever way it is shared out and by whichever of
    /// the CPU's kernels (the batch kernels from the transposed keys, the
    /// row kernels from the cache's f16 rows, a long context's one query
    /// split by positions and dimensions), gives the plain loops' bits:
    /// each score `dot(q, k) * scale` of the f16-rounded query, a softmax,
    /// each value's sum over the positions in order, fused.
    #[test]
    fn attention_is_the_plain_loops_bits_however_shared() {
        use super::{attention, ops, Arch, Config, Kernel, Rows, SCORE_KEYS};
        use gguf_loader::f16;
        let (n_head, n_head_kv, hd) = (6, 2, 64);
        let kv_dim = n_head_kv * hd;
        let c = Config {
            arch: Arch::Llama,
            n_layer: 1,
            n_embd: n_head * hd,
            n_head,
            n_head_kv,
            head_dim: hd,
            n_ff: 1,
            n_vocab: 1,
            rms_eps: 1e-6,
            attn_scale: 0.125,
            sliding_window: None,
            layer_is_swa: vec![false],
            logit_softcap: None,
            context_length: None,
            ropes: Vec::new(),
        };
        let mut next = ops::test_values(0x2545_f491_4f6c_dd1d);
        // 300 positions: past the span from which one query is split.
        let positions = 300;
        assert!(positions > super::SPLIT_SPAN);
        let k: Vec<f16> = (0..positions * kv_dim)
            .map(|_| f16::from_f32(next()))
            .collect();
        let v: Vec<f16> = (0..positions * kv_dim)
            .map(|_| f16::from_f32(next()))
            .collect();
        let (k32, v32): (Vec<f32>, Vec<f32>) = (
            k.iter().map(|x| x.to_f32()).collect(),
            v.iter().map(|x| x.to_f32()).collect(),
        );
        let tp = positions.next_multiple_of(SCORE_KEYS) + SCORE_KEYS;
        let mut kt = vec![0f32; kv_dim * tp];
        for (t, row) in k32.chunks_exact(kv_dim).enumerate() {
            for (d, &x) in row.iter().enumerate() {
                kt[d * tp + t] = x;
            }
        }
        let pool = |threads| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
        };
        for window in [None, Some(280), Some(40)] {
            // One query at the last position; a batch of 9 before it.
            for n in [1usize, 9] {
                let start = positions - n;
                let q: Vec<f32> = (0..n * n_head * hd).map(|_| next()).collect();
                let mut want = vec![0f32; q.len()];
                for (i, (qr, or)) in q
                    .chunks_exact(n_head * hd)
                    .zip(want.chunks_exact_mut(n_head * hd))
                    .enumerate()
                {
                    let pos = start + i;
                    let first = window.map_or(0, |w| (pos + 1).saturating_sub(w));
                    for (h, (qh, oh)) in
                        qr.chunks_exact(hd).zip(or.chunks_exact_mut(hd)).enumerate()
                    {
                        let qh: Vec<f32> = qh.iter().map(|&x| f16::from_f32(x).to_f32()).collect();
                        let at = (h / (n_head / n_head_kv)) * hd;
                        let mut p: Vec<f32> = (first..=pos)
                            .map(|t| ops::dot(&qh, &k[t * kv_dim + at..][..hd]) * c.attn_scale)
                            .collect();
                        ops::softmax(&mut p, Kernel::Portable);
                        for (t, p) in (first..=pos).zip(p) {
                            for (o, x) in oh.iter_mut().zip(&v32[t * kv_dim + at..][..hd]) {
                                *o = ops::fma32(p, *x, *o);
                            }
                        }
                    }
                }
                for threads in [1, 2, 3] {
                    let got = pool(threads).install(|| {
                        let out = vec![f32::NAN; q.len()];
                        if n == 1 {
                            // A step: the cache's f16 rows.
                            let (kr, vr) = (Rows::F16(&k), Rows::F16(&v));
                            attention(&q, (kr, None), vr, &c, (start, 0), window, out)
                        } else {
                            // A batch: rows widened, the keys transposed
                            // where the CPU has batch kernels.
                            let kt = ops::Vector::of(Kernel::detect()).map(|_| (&kt[..], tp));
                            let (kr, vr) = (Rows::F32(&k32), Rows::F32(&v32));
                            attention(&q, (kr, kt), vr, &c, (start, 0), window, out)
                        }
                    });
                    let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                    assert!(
                        bits(&got) == bits(&want),
                        "window {window:?}, {n} queries, {threads} threads ({:?})",
                        Kernel::detect()
                    );
                }
            }
        }
    }

    /// SmolLM2's RoPE (64 dimensions, base 1e5) is usable; a base of 1.2e-38
    /// grows the angle past f32's range at pair 27 (every logit NaN from a
    /// 100-token prompt on), and is refused naming the base's key.
    #[test]
    fn a_tiny_rope_base_is_refused_naming_its_key() {
        let rope = |base: f32| Rope {
            mode: RopeMode::Norm,
            n_rot: 64,
            base,
            scale: 1.0,
            factors: None,
        };
        usable_rope(
            &rope(1e5),
            "llama.rope.freq_base",
            "llama.rope.scaling.factor",
        )
        .unwrap();
        let e = usable_rope(
            &rope(1.2e-38),
            "llama.rope.freq_base",
            "llama.rope.scaling.factor",
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "metadata key 'llama.rope.freq_base': a RoPE base of 1.2e-38: pair 27's angle is inf \
             at position 16777216 (no cosine or sine)"
        );
        // A gemma3 sliding-window base: no scaling factor to blame.
        let e = usable_rope(&rope(1.2e-38), "gemma3.rope.freq_base_swa", "").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("metadata key 'gemma3.rope.freq_base_swa'"),
            "{e}"
        );
    }
}
