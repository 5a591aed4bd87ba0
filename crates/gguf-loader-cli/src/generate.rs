//! `gguf-loader generate`: the loaded weights drive a forward pass
//! (gguf-loader-llm) and continue a prompt. Only the generation goes to
//! standard output; load time, prompt and generation speed and peak memory
//! go to standard error.

use std::io::{self, Write};
use std::path::Path;
use std::time::Instant;

use gguf_loader::{f16, Device, ElementKind, MmapGGUFLoader};
use gguf_loader_cli::load::status_bytes;
use gguf_loader_cli::CliError;
use gguf_loader_llm::forward::{ForwardError, Sampler, Transformer, WeightElement};

/// What `generate` was asked for.
pub struct Args<'a> {
    /// The model.
    pub file: &'a Path,
    /// The prompt as text (needs the tokenizer).
    pub prompt: Option<&'a str>,
    /// The prompt as token ids.
    pub tokens: Option<&'a [u32]>,
    /// Tokens to generate at most.
    pub n: usize,
    /// Weights as f16 or f32.
    pub dtype: ElementKind,
    /// Sampling temperature (0: greedy).
    pub temp: f32,
    /// Nucleus mass.
    pub top_p: f32,
    /// Sampler seed.
    pub seed: u64,
    /// Where the forward pass runs (a GPU needs the `cuda` feature; f16).
    pub device: Device,
}

/// A forward pass with its KV cache: the CPU's [`Transformer`] or, with
/// the `cuda` feature, the GPU's.
trait Step {
    type Cache;
    fn cache(&self, capacity: usize) -> Result<Self::Cache, ForwardError>;
    fn step(&self, cache: &mut Self::Cache, tokens: &[u32]) -> Result<Vec<f32>, ForwardError>;
}

impl<T: WeightElement> Step for Transformer<T> {
    type Cache = gguf_loader_llm::forward::KvCache;
    fn cache(&self, capacity: usize) -> Result<Self::Cache, ForwardError> {
        self.new_cache(capacity)
    }
    fn step(&self, cache: &mut Self::Cache, tokens: &[u32]) -> Result<Vec<f32>, ForwardError> {
        self.forward(cache, tokens, false)
    }
}

#[cfg(feature = "cuda")]
impl Step for gguf_loader_llm::forward::cuda::CudaTransformer {
    type Cache = gguf_loader_llm::forward::cuda::CudaKvCache;
    fn cache(&self, capacity: usize) -> Result<Self::Cache, ForwardError> {
        self.new_cache(capacity)
    }
    fn step(&self, cache: &mut Self::Cache, tokens: &[u32]) -> Result<Vec<f32>, ForwardError> {
        self.forward(cache, tokens, false)
    }
}

/// The prompt as token ids, generated ids as text, and the end of
/// generation.
///
/// TODO(h-tok): encode `--prompt` and decode (streaming, partial UTF-8)
/// with `gguf_loader_llm::tokenizer::Tokenizer` once it lands, stop on its
/// `is_eog`, and add `--chat` through `chat::render`. Until then a text
/// prompt is refused, the generated ids are printed one per line, and
/// generation stops at `tokenizer.ggml.eos_token_id`.
struct Text {
    eos: Option<u64>,
}

impl Text {
    fn from_loader(loader: &MmapGGUFLoader) -> Text {
        let eos = loader.metadata().get("tokenizer.ggml.eos_token_id");
        Text {
            eos: eos.and_then(|v| v.as_u64()),
        }
    }

    fn is_eog(&self, id: u32) -> bool {
        self.eos == Some(u64::from(id))
    }

    fn encode(&self, prompt: &str) -> Result<Vec<u32>, CliError> {
        let _ = prompt;
        Err("--prompt needs the tokenizer, not built yet; give --tokens IDS".into())
    }

    fn piece(&self, id: u32) -> String {
        format!("{id}\n")
    }
}

/// Loads the model with `T` weights, runs the prompt, then samples up to
/// `n` tokens, streaming them to standard output. Errs (naming the file) on
/// a model that cannot be loaded or run, an empty or out-of-range prompt,
/// or a failed write to standard output.
pub fn run(a: &Args<'_>) -> Result<(), CliError> {
    if let Device::Cuda(ordinal) = a.device {
        if a.dtype != ElementKind::F16 {
            return Err("on a GPU the weights are f16 (--dtype f16)".into());
        }
        #[cfg(feature = "cuda")]
        {
            return run_on(a, "f16", |loader| {
                gguf_loader_llm::forward::cuda::CudaTransformer::load(loader, ordinal)
            });
        }
        #[cfg(not(feature = "cuda"))]
        {
            let _ = ordinal;
            return Err(gguf_loader::Error::UnsupportedDevice(a.device).into());
        }
    }
    match a.dtype {
        ElementKind::F16 => run_with::<f16>(a),
        ElementKind::F32 => run_with::<f32>(a),
        other => Err(format!("--dtype {} is not supported here (f16, f32)", other.name()).into()),
    }
}

fn run_with<T: WeightElement>(a: &Args<'_>) -> Result<(), CliError> {
    run_on(a, T::KIND.name(), |loader| Transformer::<T>::load(loader))
}

/// Loads the model with `load`, runs the prompt, then samples up to `n`
/// tokens, streaming them to standard output; the figures go to standard
/// error (`weights` names the weights' float).
fn run_on<M: Step>(
    a: &Args<'_>,
    weights: &str,
    load: impl FnOnce(&MmapGGUFLoader) -> Result<M, ForwardError>,
) -> Result<(), CliError> {
    let t0 = Instant::now();
    let loader = MmapGGUFLoader::new(a.file)?;
    let text = Text::from_loader(&loader);
    let prompt = match (a.prompt, a.tokens) {
        (_, Some(ids)) => ids.to_vec(),
        (Some(p), None) => text.encode(p)?,
        (None, None) => return Err("give --prompt TEXT or --tokens IDS".into()),
    };
    if prompt.is_empty() {
        return Err("the prompt has no tokens".into());
    }
    let named = |e: ForwardError| CliError::Message(format!("{}: {e}", a.file.display()));
    let vram_before = vram_used(a.device);
    let model = load(&loader).map_err(named)?;
    let load_s = t0.elapsed().as_secs_f64();
    let rss_loaded = status_bytes("VmRSS:");

    let capacity = prompt.len().saturating_add(a.n);
    let mut cache = model.cache(capacity).map_err(named)?;
    let mut sampler = Sampler::new(a.temp, a.top_p, a.seed);
    let t1 = Instant::now();
    let mut logits = model.step(&mut cache, &prompt).map_err(named)?;
    let prompt_s = t1.elapsed().as_secs_f64();
    let first_token_s = t0.elapsed().as_secs_f64();

    let mut out = io::stdout().lock();
    let t2 = Instant::now();
    let mut generated = 0usize;
    for i in 0..a.n {
        let Some(next) = sampler.sample(&logits) else {
            break;
        };
        out.write_all(text.piece(next).as_bytes())
            .and_then(|()| out.flush())
            .map_err(CliError::stdout)?;
        generated += 1;
        if text.is_eog(next) {
            break;
        }
        if i + 1 < a.n {
            logits = model.step(&mut cache, &[next]).map_err(named)?;
        }
    }
    let gen_s = t2.elapsed().as_secs_f64();
    let vram = match (vram_before, vram_used(a.device)) {
        (Some(b), Some(after)) => format!(
            "; VRAM {:.1} MiB (model and cache)",
            after.saturating_sub(b) as f64 / (1 << 20) as f64
        ),
        _ => String::new(),
    };
    let rate = |n: usize, s: f64| if s > 0.0 { n as f64 / s } else { 0.0 };
    eprintln!(
        "load: {load_s:.2} s ({weights} weights on {}, RSS {:.1} MiB); first token after {first_token_s:.2} s; \
         prompt: {} tokens, {:.1} tokens/s; generation: {generated} tokens, {:.1} tokens/s; \
         peak RSS {:.1} MiB{vram}",
        a.device,
        rss_loaded as f64 / (1 << 20) as f64,
        prompt.len(),
        rate(prompt.len(), prompt_s),
        rate(generated.saturating_sub(1), gen_s),
        status_bytes("VmHWM:") as f64 / (1 << 20) as f64,
    );
    drop(model);
    Ok(())
}

/// Device memory in use on `device` (a GPU), in bytes.
fn vram_used(device: Device) -> Option<usize> {
    gguf_loader_cli::gpu::used_memory(device)
}
