//! The forward pass on an NVIDIA GPU (feature `cuda`), over the weights the
//! loader put in VRAM: nothing goes back to the host but the logits.
//!
//! The same computation as [`Transformer::forward`](super::Transformer::forward)
//! step for step: matrix products by cuBLAS (`cublasGemmEx`, f16 weights
//! and f16-rounded inputs as ggml rounds them, f32 accumulation and
//! output), small NVRTC kernels for the rest (embedding rows, RMSNorm with
//! an f64 sum, RoPE from the CPU's own angle table, the f16 KV cache (its
//! sliding-window layers in a ring of their window plus a chunk, as on the
//! CPU: [`SlidingWindow`]), causal and sliding-window grouped-query
//! attention, SiLU / GELU, residual
//! adds, logit soft-capping). The matrices are the loader's own
//! `CudaSlice<f16>`s, used in place. The attention holds a query's scores
//! in shared memory up to 8192 positions, and takes a longer span tile by
//! tile with a running maximum and sum, so the context is bounded by VRAM
//! only.
//!
//! ```no_run
//! use gguf_loader::MmapGGUFLoader;
//! use gguf_loader_llm::forward::cuda::CudaTransformer;
//! use gguf_loader_llm::forward::Sampler;
//!
//! let loader = MmapGGUFLoader::new("model.gguf")?;
//! let model = CudaTransformer::load(&loader, 0)?;
//! let mut cache = model.new_cache(64)?;
//! let logits = model.forward(&mut cache, &[1, 415, 5565], false)?;
//! let next = Sampler::greedy().sample(&logits);
//! # Ok::<(), gguf_loader_llm::forward::ForwardError>(())
//! ```

use std::sync::Arc;

use gguf_loader::cudarc::cublas::{result as blas, sys as blas_sys, CudaBlas};
use gguf_loader::cudarc::driver::{
    CudaFunction, CudaModule, CudaSlice, CudaStream, DevicePtr, LaunchConfig, PushKernelArg,
};
use gguf_loader::cudarc::nvrtc::{compile_ptx_with_opts, CompileOptions, Ptx};
use gguf_loader::{f16, Device, MmapGGUFLoader};

use super::{Arch, Config, ForwardError, KvCache, Mat, RopeMode, SlidingWindow, Transformer};

/// The kernels: no header (f16 conversions by PTX `cvt`), one thread block
/// of [`THREADS`] per row, head or query.
const SOURCE: &str = include_str!("kernels.cu");

const THREADS: u32 = 256;

/// Positions whose scores the attention kernel holds in shared memory at
/// once (`ATT_TILE` in kernels.cu): a longer span is taken tile by tile.
const ATT_TILE: usize = 8192;

/// The largest head the attention's shared memory takes beside a tile of
/// scores (its outputs, one f32 a dimension: 48 KiB in all, what every
/// device gives a block).
const MAX_ATT_HEAD: usize = 4096;

/// How the GPU forward pass multiplies matrices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GpuMatmul {
    /// cuBLAS (`cublasGemmEx`, f16 in, f32 accumulation): the fastest. Its
    /// summation order is its own, and where a model amplifies rounding
    /// (SmolLM2's first position) its logits can stray from llama.cpp's
    /// beyond NMSE 1e-4.
    #[default]
    Cublas,
    /// A warp per dot product, summed in exactly the CPU's (and ggml's
    /// AVX2) order, so that the GPU's logits follow the CPU's, and
    /// llama.cpp's, as closely as the CPU's do; slower.
    GgmlOrder,
}

struct Kernels {
    _module: Arc<CudaModule>,
    matmul_ggml: CudaFunction,
    embed: CudaFunction,
    rms_norm: CudaFunction,
    to_f16: CudaFunction,
    rope: CudaFunction,
    attention: CudaFunction,
    act_mul: CudaFunction,
    add: CudaFunction,
    softcap: CudaFunction,
    count_nonfinite: CudaFunction,
}

/// A layer's norm weights on the device.
struct Norms {
    attn: CudaSlice<f32>,
    q: Option<CudaSlice<f32>>,
    k: Option<CudaSlice<f32>>,
    post_attn: Option<CudaSlice<f32>>,
    ffn: CudaSlice<f32>,
    post_ffn: Option<CudaSlice<f32>>,
}

/// A llama or gemma3 model whose matrices are in VRAM (f16), run there.
pub struct CudaTransformer {
    inner: Transformer<f16>,
    device: Device,
    stream: Arc<CudaStream>,
    blas: CudaBlas,
    k: Kernels,
    norms: Vec<Norms>,
    output_norm: CudaSlice<f32>,
    matmul: GpuMatmul,
}

/// The keys and values of every layer in VRAM, in f16: the CPU's
/// [`KvCache`] over device buffers.
pub type CudaKvCache = KvCache<CudaSlice<f16>>;

fn cuda_err(
    what: &str,
) -> impl FnOnce(gguf_loader::cudarc::driver::DriverError) -> ForwardError + '_ {
    move |e| ForwardError::Unsupported(format!("CUDA: {what}: {e:?}"))
}

fn blas_err(e: blas::CublasError) -> ForwardError {
    ForwardError::Unsupported(format!("cuBLAS: {e:?}"))
}

impl CudaKvCache {
    /// A copy of the cache in VRAM (on its own buffers' streams), or
    /// [`ForwardError::Alloc`] where the VRAM cannot be had (`Clone`
    /// panics then, as cudarc's `CudaSlice::clone` does).
    pub fn try_clone(&self) -> Result<CudaKvCache, ForwardError> {
        let copy = |layers: &[CudaSlice<f16>]| {
            layers
                .iter()
                .map(|l| {
                    l.try_clone()
                        .map_err(|_| ForwardError::Alloc(self.n_bytes()))
                })
                .collect::<Result<Vec<_>, ForwardError>>()
        };
        self.with_layers(copy(&self.k)?, copy(&self.v)?)
    }
}

fn grid(n: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (n.div_ceil(THREADS as usize).clamp(1, 65535) as u32, 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

fn rows(n: usize, shared: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (n as u32, 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: shared,
    }
}

/// The device address of a slice (the kernels take raw addresses).
fn ptr<T>(s: &CudaSlice<T>, stream: &CudaStream) -> u64 {
    let (p, _record) = s.device_ptr(stream);
    p
}

/// [`SOURCE`] compiled by NVRTC (default options: PTX for NVRTC's default
/// target, which the driver finishes for the device at load).
fn compile_kernels() -> Result<Ptx, ForwardError> {
    compile_ptx_with_opts(
        SOURCE,
        CompileOptions {
            name: Some("gguf_loader_llm_forward.cu".into()),
            ..Default::default()
        },
    )
    .map_err(|e| ForwardError::Unsupported(format!("NVRTC: {e:?}")))
}

impl CudaTransformer {
    /// Loads every tensor of the file onto GPU `ordinal` as f16 (quantized
    /// bytes cross PCIe and are decoded there by gguf-loader) and builds
    /// the model; errs as [`Transformer::from_model`], or when the GPU
    /// cannot be used.
    pub fn load(loader: &MmapGGUFLoader, ordinal: usize) -> Result<CudaTransformer, ForwardError> {
        let model = loader.load_model::<f16>(Device::Cuda(ordinal))?;
        let inner = Transformer::from_model(loader, model)?;
        Self::from_transformer(inner)
    }

    /// Runs a [`Transformer`] whose matrices are on a GPU (built by
    /// [`Transformer::from_model`] from a model loaded there).
    pub fn from_transformer(inner: Transformer<f16>) -> Result<CudaTransformer, ForwardError> {
        if inner.is_lazy() {
            return Err(ForwardError::Unsupported(
                "a lazy model runs on the CPU here".into(),
            ));
        }
        let device = inner.tok_embd.t.device();
        let slice = inner
            .tok_embd
            .t
            .cuda_slice()
            .ok_or_else(|| ForwardError::Unsupported("the weights are not on a GPU".into()))?;
        let ctx = slice.context().clone();
        let stream = ctx.new_stream().map_err(cuda_err("creating a stream"))?;
        let blas = CudaBlas::new(stream.clone()).map_err(blas_err)?;
        let ptx = compile_kernels()?;
        let module = ctx
            .load_module(ptx)
            .map_err(cuda_err("loading the kernels"))?;
        let f = |name: &str| module.load_function(name).map_err(cuda_err("a kernel"));
        let k = Kernels {
            embed: f("embed")?,
            rms_norm: f("rms_norm")?,
            to_f16: f("to_f16")?,
            rope: f("rope")?,
            attention: f("attention")?,
            act_mul: f("act_mul")?,
            add: f("add")?,
            softcap: f("softcap")?,
            count_nonfinite: f("count_nonfinite")?,
            matmul_ggml: f("matmul_ggml")?,
            _module: module,
        };
        let up = |v: &Vec<f32>| stream.clone_htod(v).map_err(cuda_err("uploading a norm"));
        let opt = |v: &Option<Vec<f32>>| v.as_ref().map(up).transpose();
        let mut norms = Vec::with_capacity(inner.layers.len());
        for l in &inner.layers {
            norms.push(Norms {
                attn: up(&l.attn_norm)?,
                q: opt(&l.q_norm)?,
                k: opt(&l.k_norm)?,
                post_attn: opt(&l.post_attn_norm)?,
                ffn: up(&l.ffn_norm)?,
                post_ffn: opt(&l.post_ffn_norm)?,
            });
        }
        let output_norm = up(&inner.output_norm)?;
        for m in inner.mats() {
            if m.t.cuda_slice().is_none() {
                return Err(ForwardError::Unsupported(
                    "some of the weights are not on the GPU".into(),
                ));
            }
        }
        Ok(CudaTransformer {
            inner,
            device,
            stream,
            blas,
            k,
            norms,
            output_norm,
            matmul: GpuMatmul::default(),
        })
    }

    /// Chooses how matrices are multiplied from now on (default
    /// [`GpuMatmul::Cublas`]).
    pub fn set_matmul(&mut self, matmul: GpuMatmul) {
        self.matmul = matmul;
    }

    /// How matrices are multiplied.
    pub fn matmul(&self) -> GpuMatmul {
        self.matmul
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The GPU the model runs on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// An empty KV cache in VRAM for up to `capacity` positions, its
    /// sliding-window layers keeping a ring ([`SlidingWindow::DEFAULT`]),
    /// as [`Transformer::new_cache`] makes on the CPU.
    pub fn new_cache(&self, capacity: usize) -> Result<CudaKvCache, ForwardError> {
        self.new_cache_with(capacity, SlidingWindow::DEFAULT)
    }

    /// [`Self::new_cache`] keeping the sliding-window layers' positions as
    /// `sliding` says, as [`Transformer::new_cache_with`] does.
    pub fn new_cache_with(
        &self,
        capacity: usize,
        sliding: SlidingWindow,
    ) -> Result<CudaKvCache, ForwardError> {
        let c = &self.inner.config;
        let kv_dim = c.n_head_kv * c.head_dim;
        let (rings, chunk) = super::ring_layout(c, capacity, sliding);
        let mut k = Vec::with_capacity(c.n_layer);
        let mut v = Vec::with_capacity(c.n_layer);
        for ring in &rings {
            let per = ring
                .map_or(Some(capacity), |r| r.checked_mul(2))
                .and_then(|rows| rows.checked_mul(kv_dim))
                .ok_or(ForwardError::Alloc(usize::MAX))?;
            k.push(
                self.stream
                    .alloc_zeros::<f16>(per)
                    .map_err(|_| ForwardError::Alloc(per * 2))?,
            );
            v.push(
                self.stream
                    .alloc_zeros::<f16>(per)
                    .map_err(|_| ForwardError::Alloc(per * 2))?,
            );
        }
        Ok(KvCache {
            k,
            v,
            kv_dim,
            len: 0,
            capacity,
            rings,
            chunk,
            written: 0,
            tokens: super::reserved_tokens(capacity)?,
            scratch: Default::default(),
            spare_logits: Vec::new(),
        })
    }

    /// Runs `tokens` at the next positions of `cache` and returns the
    /// logits (every position with `all`, else the last), as
    /// [`Transformer::forward`] does.
    pub fn forward(
        &self,
        cache: &mut CudaKvCache,
        tokens: &[u32],
        all: bool,
    ) -> Result<Vec<f32>, ForwardError> {
        self.forward_checked(cache, tokens, all, false)
            .map(|(l, _)| l)
    }

    /// [`Self::forward`], and with `check` the number of NaN or infinite
    /// values found in every intermediate activation (0 without `check`).
    pub fn forward_checked(
        &self,
        cache: &mut CudaKvCache,
        tokens: &[u32],
        all: bool,
        check: bool,
    ) -> Result<(Vec<f32>, u64), ForwardError> {
        let c = &self.inner.config;
        let n = tokens.len();
        if n == 0 {
            return Ok((Vec::new(), 0));
        }
        super::check_step(
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
            // time, as on the CPU.
            let (mut logits, mut bad) = (Vec::new(), 0);
            for part in tokens.chunks(chunk) {
                let (l, b) = self.forward_checked(cache, part, all, check)?;
                bad += b;
                if all {
                    logits.extend(l);
                } else {
                    logits = l;
                }
            }
            return Ok((logits, bad));
        }
        if c.head_dim > MAX_ATT_HEAD {
            return Err(ForwardError::Unsupported(format!(
                "the GPU attention takes heads of at most {MAX_ATT_HEAD} dimensions, not {}",
                c.head_dim
            )));
        }
        let s = &self.stream;
        let (d, hd) = (c.n_embd, c.head_dim);
        let kv_dim = c.n_head_kv * hd;
        let q_dim = c.n_head * hd;
        let e = cuda_err;
        let alloc = |len: usize| {
            s.alloc_zeros::<f32>(len)
                .map_err(|_| ForwardError::Alloc(len * 4))
        };
        let widest = d.max(c.n_ff).max(q_dim);
        let x = alloc(n * d)?;
        let mut h = alloc(n * d)?;
        let q = alloc(n * q_dim)?;
        let kk = alloc(n * kv_dim)?;
        let vv = alloc(n * kv_dim)?;
        let att = alloc(n * q_dim)?;
        let o = alloc(n * d)?;
        let g = alloc(n * c.n_ff)?;
        let u = alloc(n * c.n_ff)?;
        let f = alloc(n * d)?;
        let x16 = s
            .alloc_zeros::<f16>(n * widest)
            .map_err(|_| ForwardError::Alloc(n * widest * 2))?;
        let ids = s.clone_htod(tokens).map_err(e("uploading the tokens"))?;
        let bad = s.alloc_zeros::<u32>(1).map_err(e("a counter"))?;
        let bad_p = ptr(&bad, s);
        let x16_p = ptr(&x16, s);

        // Kernel launches over raw device addresses: the arguments in the
        // kernel's signature order.
        macro_rules! launch {
            ($func:expr, $cfg:expr; $($arg:expr),* $(,)?) => {{
                let mut b = s.launch_builder($func);
                $( b.arg($arg); )*
                // SAFETY: every kernel gets its signature's arguments, with
                // device addresses of buffers sized for the call.
                unsafe { b.launch($cfg) }.map(|_| ()).map_err(e("a kernel"))
            }};
        }
        let observe = |buf: u64, len: usize| -> Result<(), ForwardError> {
            if check {
                let n = len as u64;
                launch!(&self.k.count_nonfinite, grid(len); &buf, &n, &bad_p)?;
            }
            Ok(())
        };
        let norm = |buf: u64, w: &CudaSlice<f32>, rows_: usize, dim: usize| {
            let wp = ptr(w, s);
            let dim_i = dim as i32;
            let eps = c.rms_eps;
            launch!(&self.k.rms_norm, rows(rows_, 0); &buf, &wp, &dim_i, &eps)
        };
        // y[n][m.rows] = x[n][m.cols] · Wᵀ, the inputs rounded to f16.
        let matmul = |m: &Mat<f16>, xin: u64, y: u64, rows_n: usize| -> Result<(), ForwardError> {
            let len = (rows_n * m.cols) as u64;
            launch!(&self.k.to_f16, grid(rows_n * m.cols); &xin, &x16_p, &len)?;
            let w =
                m.t.cuda_slice()
                    .ok_or_else(|| ForwardError::Unsupported("weight not on the GPU".into()))?;
            let wp = ptr(w, s);
            if self.matmul == GpuMatmul::GgmlOrder {
                let (r, c, nn) = (m.rows as i32, m.cols as i32, rows_n as i32);
                let blocks = (m.rows * rows_n * 32).div_ceil(THREADS as usize);
                let blocks = u32::try_from(blocks)
                    .ok()
                    .filter(|&b| b <= i32::MAX as u32)
                    .ok_or_else(|| {
                        ForwardError::Unsupported(format!(
                            "{} x {} dot products in one launch",
                            m.rows, rows_n
                        ))
                    })?;
                let cfg = LaunchConfig {
                    grid_dim: (blocks, 1, 1),
                    block_dim: (THREADS, 1, 1),
                    shared_mem_bytes: 0,
                };
                return launch!(&self.k.matmul_ggml, cfg; &wp, &x16_p, &y, &r, &c, &nn);
            }
            let (alpha, beta) = (1f32, 0f32);
            // SAFETY: W is rows × cols f16 (column-major: cols × rows, ld =
            // cols, transposed), X is rows_n × cols f16 (cols × rows_n, ld
            // = cols), Y is rows_n × rows f32 (rows × rows_n, ld = rows).
            unsafe {
                blas::gemm_ex(
                    *self.blas.handle(),
                    blas_sys::cublasOperation_t::CUBLAS_OP_T,
                    blas_sys::cublasOperation_t::CUBLAS_OP_N,
                    m.rows as i32,
                    rows_n as i32,
                    m.cols as i32,
                    (&alpha) as *const f32 as *const _,
                    wp as *const _,
                    blas_sys::cudaDataType_t::CUDA_R_16F,
                    m.cols as i32,
                    x16_p as *const _,
                    blas_sys::cudaDataType_t::CUDA_R_16F,
                    m.cols as i32,
                    (&beta) as *const f32 as *const _,
                    y as *mut _,
                    blas_sys::cudaDataType_t::CUDA_R_32F,
                    m.rows as i32,
                    blas_sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                    blas_sys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
                )
            }
            .map_err(blas_err)
        };
        let add = |a: u64, b_: u64, len: usize| {
            let n = len as u64;
            launch!(&self.k.add, grid(len); &a, &b_, &n)
        };

        let (xp, hp, qp, kp, vp, attp, op, gp, up_, fp) = (
            ptr(&x, s),
            ptr(&h, s),
            ptr(&q, s),
            ptr(&kk, s),
            ptr(&vv, s),
            ptr(&att, s),
            ptr(&o, s),
            ptr(&g, s),
            ptr(&u, s),
            ptr(&f, s),
        );
        // Embeddings.
        let table = self
            .inner
            .tok_embd
            .t
            .cuda_slice()
            .ok_or_else(|| ForwardError::Unsupported("embeddings not on the GPU".into()))?;
        let (tp, idp) = (ptr(table, s), ptr(&ids, s));
        let scale = if c.arch == Arch::Gemma3 {
            (d as f32).sqrt()
        } else {
            1.0
        };
        let d_i = d as i32;
        launch!(&self.k.embed, rows(n, 0); &tp, &idp, &xp, &d_i, &scale)?;
        observe(xp, n * d)?;

        for (il, l) in self.inner.layers.iter().enumerate() {
            let nw = &self.norms[il];
            s.memcpy_dtod(&x, &mut h).map_err(e("a copy"))?;
            norm(hp, &nw.attn, n, d)?;
            matmul(&l.wq, hp, qp, n)?;
            matmul(&l.wk, hp, kp, n)?;
            matmul(&l.wv, hp, vp, n)?;
            if let Some(w) = &nw.q {
                norm(qp, w, n * c.n_head, hd)?;
            }
            if let Some(w) = &nw.k {
                norm(kp, w, n * c.n_head_kv, hd)?;
            }
            // RoPE from the CPU's own angle table.
            let rope = &c.ropes[il];
            let half = rope.n_rot / 2;
            let table: Vec<f32> = rope
                .angles_from(start, n)?
                .into_iter()
                .flat_map(|(co, si)| [co, si])
                .collect();
            let cs = s.clone_htod(&table).map_err(e("uploading RoPE angles"))?;
            let csp = ptr(&cs, s);
            let (hd_i, half_i, neox) =
                (hd as i32, half as i32, (rope.mode == RopeMode::Neox) as i32);
            let nh = c.n_head as i32;
            launch!(&self.k.rope, rows(n * c.n_head, 0); &qp, &csp, &nh, &hd_i, &half_i, &neox)?;
            let nkv = c.n_head_kv as i32;
            launch!(&self.k.rope, rows(n * c.n_head_kv, 0); &kp, &csp, &nkv, &hd_i, &half_i, &neox)?;
            observe(qp, n * q_dim)?;
            observe(kp, n * kv_dim)?;
            observe(vp, n * kv_dim)?;
            // Into the f16 cache: `count` positions from the step's `from`
            // at row `row`.
            let (ck0, cv0) = (ptr(&cache.k[il], s), ptr(&cache.v[il], s));
            let row_bytes = (kv_dim * 2) as u64;
            let put = |from: usize, row: usize, count: usize| -> Result<(), ForwardError> {
                let len = (count * kv_dim) as u64;
                let src = (from * kv_dim * 4) as u64;
                let (ck, cv) = (ck0 + row as u64 * row_bytes, cv0 + row as u64 * row_bytes);
                let (ks, vs) = (kp + src, vp + src);
                launch!(&self.k.to_f16, grid(count * kv_dim); &ks, &ck, &len)?;
                launch!(&self.k.to_f16, grid(count * kv_dim); &vs, &cv, &len)
            };
            match cache.rings.get(il).copied().flatten() {
                None => put(0, start, n)?,
                Some(r) => {
                    // Each position at both of its rows (p % r, p % r + r):
                    // the step's rows from start % r (those past r are the
                    // wrapped positions' second rows), then the first
                    // positions' second rows and the wrapped ones' first.
                    let a = start % r;
                    let m = n.min(r - a);
                    put(0, a, n)?;
                    put(0, a + r, m)?;
                    if n > m {
                        put(m, 0, n - m)?;
                    }
                }
            }
            let window = c.sliding_window.filter(|_| c.layer_is_swa[il]);
            // Position p at row p - shift.
            let (base, first) = cache.seen_from(il, start, window);
            let shift = (base - first) as i32;
            let window = window.unwrap_or(0) as i32;
            let group = (c.n_head / c.n_head_kv) as i32;
            let (kv_i, start_i, sc) = (kv_dim as i32, start as i32, c.attn_scale);
            // Scores of one query's span in shared memory (every position
            // so far), or past a tile of them, a tile and the outputs.
            let span = start + n;
            let shared = if span <= ATT_TILE {
                span * 4
            } else {
                (ATT_TILE + hd) * 4
            } as u32;
            launch!(&self.k.attention, rows(n * c.n_head, shared); &qp, &ck0, &cv0, &attp, &nh, &group, &hd_i, &kv_i, &start_i, &window, &shift, &sc)?;
            observe(attp, n * q_dim)?;
            matmul(&l.wo, attp, op, n)?;
            if let Some(w) = &nw.post_attn {
                norm(op, w, n, d)?;
            }
            observe(op, n * d)?;
            add(xp, op, n * d)?;

            s.memcpy_dtod(&x, &mut h).map_err(e("a copy"))?;
            norm(hp, &nw.ffn, n, d)?;
            matmul(&l.gate, hp, gp, n)?;
            matmul(&l.up, hp, up_, n)?;
            let gl = (n * c.n_ff) as u64;
            let gelu = (c.arch == Arch::Gemma3) as i32;
            launch!(&self.k.act_mul, grid(n * c.n_ff); &gp, &up_, &gl, &gelu)?;
            observe(gp, n * c.n_ff)?;
            matmul(&l.down, gp, fp, n)?;
            if let Some(w) = &nw.post_ffn {
                norm(fp, w, n, d)?;
            }
            observe(fp, n * d)?;
            add(xp, fp, n * d)?;
            observe(xp, n * d)?;
        }

        // The head, on every row or the last.
        let (first, rows_out) = if all { (0, n) } else { (n - 1, 1) };
        let last = xp + (first * d * 4) as u64;
        norm(last, &self.output_norm, rows_out, d)?;
        let head = self.inner.output.as_ref().unwrap_or(&self.inner.tok_embd);
        let logits = alloc(rows_out * head.rows)?;
        let lp = ptr(&logits, s);
        matmul(head, last, lp, rows_out)?;
        if let Some(cap) = c.logit_softcap {
            let len = (rows_out * head.rows) as u64;
            launch!(&self.k.softcap, grid(rows_out * head.rows); &lp, &len, &cap)?;
        }
        observe(lp, rows_out * head.rows)?;
        // Into the last step's logits where handed back
        // ([`KvCache::recycle`]), as on the CPU: a fresh buffer's pages are
        // faulted in and zeroed by the system on every step.
        let mut spare = super::Scratch::default();
        spare.give([std::mem::take(&mut cache.spare_logits)]);
        let mut out = spare.take(rows_out * head.rows)?;
        s.memcpy_dtoh(&logits, &mut out[..])
            .map_err(e("copying the logits"))?;
        let bad = s.clone_dtoh(&bad).map_err(e("reading the counter"))?;
        s.synchronize().map_err(e("running the forward pass"))?;
        // Keep the scratch alive until the stream has run.
        drop((x, h, q, kk, vv, att, o, g, u, f, x16, ids));
        // As on the CPU: NaN logits are an error, the cache left as it was.
        super::check_logits(&out, head.rows, start + first)?;
        cache.filled(start, tokens);
        Ok((out, bad.first().copied().unwrap_or(0) as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The host's tile of attention scores is the kernel's.
    #[test]
    fn the_attention_tile_is_the_kernels() {
        assert!(SOURCE.contains(&format!("#define ATT_TILE {ATT_TILE}\n")));
        assert_eq!((ATT_TILE + MAX_ATT_HEAD) * 4, 48 << 10);
    }

    /// The kernels compile with a real NVRTC (no GPU needed) with the
    /// options `from_transformer` uses, and the PTX holds every kernel it
    /// loads by name. Skipped where NVRTC cannot be loaded, unless
    /// `GGUF_LOADER_REQUIRE_NVRTC` is set (scripts/test.sh sets it after
    /// scripts/fetch-nvrtc.sh).
    #[test]
    fn kernels_compile_with_nvrtc() {
        if !gguf_loader::internals::cuda::nvrtc_present_for_test("kernels_compile_with_nvrtc") {
            return;
        }
        let ptx = compile_kernels().unwrap_or_else(|e| panic!("{e}"));
        let ptx = ptx.to_src();
        // The names `from_transformer` loads by name: every call of `f` with
        // a string literal in this file.
        let this = include_str!("cuda.rs");
        let pattern = concat!("f", "(\"");
        let names: Vec<&str> = this
            .match_indices(pattern)
            .filter_map(|(i, _)| this[i + pattern.len()..].split('"').next())
            .collect();
        assert_eq!(names.len(), 10, "{names:?}");
        for name in names {
            assert!(ptx.contains(&format!(".entry {name}(")), "{name} missing");
        }
    }
}
