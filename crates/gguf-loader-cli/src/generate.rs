//! `gguf-loader generate`: the loaded weights drive a forward pass
//! (gguf-loader-llm) and continue a prompt. Only the generation goes to
//! standard output; load time, prompt and generation speed and peak memory
//! go to standard error.

use std::io::{self, BufRead, IsTerminal, Read, Write};
use std::path::Path;
use std::time::Instant;

use gguf_loader::{f16, Device, ElementKind, GgufWriter, LoadOptions, MmapGGUFLoader, ModelConfig};
use gguf_loader_cli::memory;
use gguf_loader_cli::CliError;
use gguf_loader_llm::chat;
use gguf_loader_llm::forward::{ForwardError, KvCache, Sampler, Transformer, WeightElement};
use gguf_loader_llm::tokenizer::{StreamDecoder, Tokenizer};

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
    /// The context (KV cache) in tokens, prompt included: `None` for the
    /// model's own, at most [`DEFAULT_CONTEXT`]; `Some(0)` for the model's
    /// own, all of it.
    pub ctx: Option<usize>,
    /// Weights as f16 or f32.
    pub dtype: ElementKind,
    /// Sampling temperature (0: greedy).
    pub temp: f32,
    /// Nucleus mass.
    pub top_p: f32,
    /// Most likely tokens kept (0: all).
    pub top_k: usize,
    /// Least probability kept, against the most likely's (0: all).
    pub min_p: f32,
    /// Sampler seed.
    pub seed: u64,
    /// Where the forward pass runs (a GPU needs the `cuda` feature; f16).
    pub device: Device,
    /// Render the prompt as a user turn of the file's chat template.
    pub chat: bool,
    /// With `chat`: a system turn before the user's.
    pub system: Option<&'a str>,
    /// Ids in and out, one per line: no tokenizer needed.
    pub ids: bool,
    /// A conversation: user turns from standard input, one a line, each
    /// answered through the file's chat template, the KV cache kept
    /// between turns (`prompt` and `tokens` are then `None`).
    pub interactive: bool,
    /// Take the layers from a lazy model as the forward pass reaches them
    /// (next layer prefetched), instead of decoding the model first.
    pub lazy: bool,
    /// On a GPU: whether matrices are multiplied in the CPU's order
    /// (`Some(true)`) or by cuBLAS; `None` where not asked.
    pub ggml_order: Option<bool>,
    /// Skip the check of the decoded weights' size against the available
    /// memory (an eager load on the CPU).
    pub no_memory_check: bool,
    /// Copy the matrices the file holds as `dtype` already into memory of
    /// their own, instead of views of the file's mapping (the CPU).
    pub own_memory: bool,
    /// The prompt's KV cache kept in this file (see [`PromptCache`]).
    pub prompt_cache: Option<&'a Path>,
}

impl<'a> Args<'a> {
    /// Arguments that name the model alone: its file, the context, the
    /// weights' float and the device (what [`with_model`] reads, with the
    /// fields on how it is loaded, here the defaults); no prompt, greedy,
    /// nothing else asked.
    pub(crate) fn model_only(
        file: &'a Path,
        ctx: Option<usize>,
        dtype: ElementKind,
        device: Device,
    ) -> Self {
        Args {
            file,
            prompt: None,
            tokens: None,
            n: 0,
            ctx,
            dtype,
            temp: 0.0,
            top_p: 1.0,
            top_k: 0,
            min_p: 0.0,
            seed: 0,
            device,
            chat: false,
            system: None,
            ids: false,
            interactive: false,
            lazy: false,
            ggml_order: None,
            no_memory_check: false,
            own_memory: false,
            prompt_cache: None,
        }
    }
}

/// A forward pass with its KV cache: the CPU's [`Transformer`] or, with
/// the `cuda` feature, the GPU's.
pub(crate) trait Step {
    /// A [`KvCache`] in host memory or VRAM.
    type Buffer;
    fn cache(&self, capacity: usize) -> Result<KvCache<Self::Buffer>, ForwardError>;
    /// The last position's logits.
    fn step(
        &self,
        cache: &mut KvCache<Self::Buffer>,
        tokens: &[u32],
    ) -> Result<Vec<f32>, ForwardError> {
        self.step_all(cache, tokens, false)
    }
    /// The logits of every position (`all`) or of the last.
    fn step_all(
        &self,
        cache: &mut KvCache<Self::Buffer>,
        tokens: &[u32],
        all: bool,
    ) -> Result<Vec<f32>, ForwardError>;
    /// Hands a step's logits back for the next step's (both forward passes
    /// write into it: [`KvCache::recycle`]).
    fn recycle(&self, cache: &mut KvCache<Self::Buffer>, logits: Vec<f32>) {
        cache.recycle(logits);
    }
    /// The cache as a GGUF file ([`Transformer::cache_to_gguf`]).
    fn cache_to_gguf<'c>(
        &self,
        cache: &'c KvCache<Self::Buffer>,
    ) -> Result<GgufWriter<'c>, ForwardError>;
    /// The cache a file of [`Step::cache_to_gguf`] holds.
    fn cache_from_gguf(&self, bytes: &[u8]) -> Result<KvCache<Self::Buffer>, ForwardError>;
}

impl<T: WeightElement> Step for Transformer<T> {
    type Buffer = Vec<f16>;
    fn cache(&self, capacity: usize) -> Result<KvCache, ForwardError> {
        self.new_cache(capacity)
    }
    fn step_all(
        &self,
        cache: &mut KvCache,
        tokens: &[u32],
        all: bool,
    ) -> Result<Vec<f32>, ForwardError> {
        self.forward(cache, tokens, all)
    }
    fn cache_to_gguf<'c>(&self, cache: &'c KvCache) -> Result<GgufWriter<'c>, ForwardError> {
        Transformer::cache_to_gguf(self, cache)
    }
    fn cache_from_gguf(&self, bytes: &[u8]) -> Result<KvCache, ForwardError> {
        Transformer::cache_from_gguf(self, bytes)
    }
}

#[cfg(feature = "cuda")]
impl Step for gguf_loader_llm::forward::cuda::CudaTransformer {
    type Buffer = gguf_loader::cudarc::driver::CudaSlice<f16>;
    fn cache(&self, capacity: usize) -> Result<KvCache<Self::Buffer>, ForwardError> {
        self.new_cache(capacity)
    }
    fn step_all(
        &self,
        cache: &mut KvCache<Self::Buffer>,
        tokens: &[u32],
        all: bool,
    ) -> Result<Vec<f32>, ForwardError> {
        self.forward(cache, tokens, all)
    }
    fn cache_to_gguf<'c>(
        &self,
        _: &'c KvCache<Self::Buffer>,
    ) -> Result<GgufWriter<'c>, ForwardError> {
        Err(ForwardError::Unsupported(
            "a KV cache in VRAM is not saved".into(),
        ))
    }
    fn cache_from_gguf(&self, _: &[u8]) -> Result<KvCache<Self::Buffer>, ForwardError> {
        Err(ForwardError::Unsupported(
            "a KV cache in VRAM is not read from a file".into(),
        ))
    }
}

/// What runs on the model `load` gives (`weights` names its float):
/// `generate`'s conversation or continuation, or `perplexity`. Both load
/// the model as [`Args`] ask: device, float, eager or lazy.
pub(crate) trait Job {
    fn run<M: Step>(
        &self,
        a: &Args<'_>,
        weights: &str,
        load: impl FnOnce(&MmapGGUFLoader) -> Result<M, ForwardError>,
    ) -> Result<(), CliError>;
}

/// `generate` itself.
struct Generate;

impl Job for Generate {
    fn run<M: Step>(
        &self,
        a: &Args<'_>,
        weights: &str,
        load: impl FnOnce(&MmapGGUFLoader) -> Result<M, ForwardError>,
    ) -> Result<(), CliError> {
        run_on(a, weights, load)
    }
}

/// How the prompt becomes ids and ends generation: the GGUF's own
/// tokenizer, or (`--ids` with `--tokens`) none, ids in and out.
enum Text {
    Tokenizer(Box<Tokenizer>),
    /// No text: ids only; generation ends at `tokenizer.ggml.eos_token_id`.
    Ids {
        eos: Option<u64>,
    },
}

impl Text {
    /// The tokenizer of `loader` (`ids`: none, `--ids` with `--tokens`), or
    /// why there is none.
    fn new(loader: &MmapGGUFLoader, ids: bool, file: &Path) -> Result<Text, CliError> {
        if ids {
            let eos = loader.metadata().get("tokenizer.ggml.eos_token_id");
            return Ok(Text::Ids {
                eos: eos.and_then(|v| v.as_u64()),
            });
        }
        let tok = Tokenizer::from_loader(loader).map_err(|e| {
            CliError::Message(format!(
                "{}: no usable tokenizer ({e}); give --tokens IDS with --ids",
                file.display()
            ))
        })?;
        for w in tok.warnings() {
            gguf_loader_cli::warn(format_args!("{}: warning: {w}", file.display()));
        }
        // llama.cpp sizes the embedding by the vocabulary and refuses a file
        // whose table differs; ids past the vocabulary would have no text.
        if let Some(rows) = loader
            .tensor_info("token_embd.weight")
            .and_then(|t| t.ne().get(1).copied())
        {
            if rows != tok.vocab_size() as u64 {
                return Err(CliError::Message(format!(
                    "{}: the tokenizer has {} tokens but token_embd.weight has {rows} rows \
                     (one per token); give --tokens IDS with --ids to run the model alone",
                    file.display(),
                    tok.vocab_size()
                )));
            }
        }
        Ok(Text::Tokenizer(Box::new(tok)))
    }

    fn is_eog(&self, id: u32) -> bool {
        match self {
            Text::Tokenizer(t) => t.is_eog(id),
            Text::Ids { eos } => *eos == Some(u64::from(id)),
        }
    }

    /// `prompt` as ids: rendered as a user turn of the file's chat
    /// template first with `chat` (after a system turn with `system`).
    fn encode(
        &self,
        prompt: &str,
        chat: bool,
        system: Option<&str>,
        file: &Path,
    ) -> Result<Vec<u32>, CliError> {
        let Text::Tokenizer(tok) = self else {
            return Err(
                "a text prompt needs the tokenizer, which --ids with --tokens leaves out".into(),
            );
        };
        if chat {
            if tok.chat_template().is_none() && tok.chat_template_error().is_none() {
                let built_in = if tok.token_id("<start_of_turn>").is_some() {
                    "Gemma's turn format (its vocabulary has <start_of_turn>; llama.cpp would use ChatML)"
                } else {
                    "ChatML, as llama.cpp does"
                };
                gguf_loader_cli::warn(format_args!(
                    "{}: no tokenizer.chat_template: --chat uses {built_in}",
                    file.display()
                ));
            }
            let mut turns = Vec::new();
            if let Some(system) = system {
                turns.push(chat::Message::new("system", system));
            }
            turns.push(chat::Message::new("user", prompt));
            return encode_turns(tok, &turns, file);
        }
        Ok(tok.encode(prompt, true, true))
    }
}

/// `turns` rendered through the file's chat template (the model's turn
/// to answer next) and tokenized, BOS added unless the template wrote it.
fn encode_turns(
    tok: &Tokenizer,
    turns: &[chat::Message],
    file: &Path,
) -> Result<Vec<u32>, CliError> {
    let text = crate::chat_render::render(tok, turns, true, file)?;
    Ok(tok.encode(&text, chat::add_special(tok, &text), true))
}

/// Streams generated ids out as text (whole characters only) or as ids.
enum Out<'t> {
    Text(StreamDecoder<'t>),
    Ids,
}

impl Out<'_> {
    fn piece(&mut self, id: u32) -> String {
        match self {
            Out::Text(d) => d.push(id),
            Out::Ids => format!("{id}\n"),
        }
    }

    fn finish(&mut self) -> String {
        match self {
            Out::Text(d) => d.finish(),
            Out::Ids => String::new(),
        }
    }
}

/// Loads the model with `T` weights, runs the prompt, then samples up to
/// `n` tokens, streaming them to standard output. Errs (naming the file) on
/// a model that cannot be loaded or run, an empty or out-of-range prompt,
/// or a failed write to standard output.
pub fn run(a: &Args<'_>) -> Result<(), CliError> {
    with_model(a, &Generate)
}

/// Runs `job` on the model `a` asks for: on its device, with its weights'
/// float, eager or lazy, refused in one line where that cannot be.
pub(crate) fn with_model(a: &Args<'_>, job: &impl Job) -> Result<(), CliError> {
    if a.ggml_order.is_some() && !matches!(a.device, Device::Cuda(_)) {
        return Err("--gpu-matmul is for a GPU (--device cuda)".into());
    }
    if let Device::Cuda(ordinal) = a.device {
        if a.prompt_cache.is_some() {
            return Err("--prompt-cache runs on the CPU (a GPU's cache stays in VRAM)".into());
        }
        if a.lazy {
            return Err(
                "--lazy runs on the CPU (the GPU forward pass holds the whole model)".into(),
            );
        }
        if a.dtype != ElementKind::F16 {
            return Err("on a GPU the weights are f16 (--dtype f16)".into());
        }
        #[cfg(feature = "cuda")]
        {
            use gguf_loader_llm::forward::cuda::{CudaTransformer, GpuMatmul};
            let matmul = if a.ggml_order == Some(true) {
                GpuMatmul::GgmlOrder
            } else {
                GpuMatmul::Cublas
            };
            return job.run(a, "f16 weights", |loader| {
                let mut m = CudaTransformer::load(loader, ordinal)?;
                m.set_matmul(matmul);
                Ok(m)
            });
        }
        #[cfg(not(feature = "cuda"))]
        {
            let _ = ordinal;
            return Err(gguf_loader::Error::UnsupportedDevice(a.device).into());
        }
    }
    match a.dtype {
        ElementKind::F16 => run_with::<f16>(a, job),
        ElementKind::F32 => run_with::<f32>(a, job),
        other => Err(format!("--dtype {} is not supported here (f16, f32)", other.name()).into()),
    }
}

fn run_with<T: WeightElement>(a: &Args<'_>, job: &impl Job) -> Result<(), CliError> {
    if a.lazy {
        let what = format!("{} weights, lazy", T::KIND.name());
        return job.run(a, &what, |_| {
            let loader = MmapGGUFLoader::new(a.file).map_err(ForwardError::from)?;
            let opts = LoadOptions::default().own_memory(a.own_memory);
            Transformer::<T>::load_lazy_with(std::sync::Arc::new(loader), opts)
        });
    }
    let what = format!("{} weights", T::KIND.name());
    if !a.no_memory_check {
        // Refused in one line before the load, as `load` does, rather than
        // ended by the kernel's out-of-memory killer.
        let loader = MmapGGUFLoader::new(a.file)?;
        let what = format!("{} with {what}", a.file.display());
        let needed = weight_bytes::<T>(&loader, a.own_memory);
        gguf_loader_cli::host::check_memory(needed, &what)?;
    }
    let opts = LoadOptions::default().own_memory(a.own_memory);
    job.run(a, &what, |loader| Transformer::<T>::load_with(loader, opts))
}

/// Bytes of the decoded weights: matrices as `T`, 1-D tensors (norms) as
/// f32, as the forward pass keeps them; nothing for the matrices the file
/// holds as `T` already (views of its mapping, in the page cache) unless
/// `own_memory`.
fn weight_bytes<T: gguf_loader::Element>(loader: &MmapGGUFLoader, own_memory: bool) -> u64 {
    loader
        .tensors()
        .map(|t| match t.ne().len() {
            0 | 1 => t.n_elements.saturating_mul(4),
            _ if !own_memory && loader.loads_as_view::<T>(t.name) => 0,
            _ => t.n_elements.saturating_mul(T::KIND.size() as u64),
        })
        .fold(0, u64::saturating_add)
}

/// The model as `load` gave it, with the figures of its load.
pub(crate) struct Loaded<M> {
    pub(crate) model: M,
    /// Seconds since the command started.
    pub(crate) load_s: f64,
    /// Resident memory once loaded.
    pub(crate) rss: Option<u64>,
    /// VRAM in use before the load (on a GPU).
    vram_before: Option<usize>,
}

impl<M> Loaded<M> {
    pub(crate) fn new(
        a: &Args<'_>,
        loader: &MmapGGUFLoader,
        t0: Instant,
        load: impl FnOnce(&MmapGGUFLoader) -> Result<M, ForwardError>,
    ) -> Result<Self, CliError> {
        let vram_before = vram_used(a.device);
        let model = load(loader).map_err(|e| named(a, e))?;
        // Loaded once: the loader's staging ring is of no more use.
        gguf_loader_cli::gpu::release_staging(a.device);
        Ok(Self {
            model,
            load_s: t0.elapsed().as_secs_f64(),
            rss: memory::resident(),
            vram_before,
        })
    }

    /// "; VRAM … MiB (model and cache)" on a GPU, else nothing.
    pub(crate) fn vram(&self, a: &Args<'_>) -> String {
        match (self.vram_before, vram_used(a.device)) {
            (Some(b), Some(after)) => format!(
                "; VRAM {:.1} MiB (model and cache)",
                after.saturating_sub(b) as f64 / (1 << 20) as f64
            ),
            _ => String::new(),
        }
    }
}

/// A forward pass's error, naming the file.
pub(crate) fn named(a: &Args<'_>, e: ForwardError) -> CliError {
    CliError::Message(format!("{}: {e}", a.file.display()))
}

/// A rate, or "no rate" where nothing was timed.
pub(crate) fn rate(n: usize, s: f64) -> String {
    if n > 0 && s > 0.0 {
        format!("{:.1} tokens/s", n as f64 / s)
    } else {
        "no rate".to_string()
    }
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
    // --ids prints ids; the tokenizer is left out only where nothing needs
    // it (the prompt as ids too).
    let text = Text::new(&loader, a.ids && a.tokens.is_some(), a.file)?;
    if a.interactive {
        let Text::Tokenizer(tok) = &text else {
            return Err("--interactive needs the tokenizer".into());
        };
        return converse(a, weights, &loader, tok, t0, load);
    }
    let prompt = match (a.prompt, a.tokens) {
        (_, Some(ids)) => ids.to_vec(),
        (Some(p), None) => text.encode(p, a.chat, a.system, a.file)?,
        (None, None) if a.chat => {
            return Err(
                "--chat needs --prompt TEXT or --prompt-file FILE (or --interactive)".into(),
            )
        }
        (None, None) => return Err("give --prompt TEXT, --prompt-file FILE or --tokens IDS".into()),
    };
    let mut stream = match &text {
        Text::Tokenizer(t) if !a.ids => Out::Text(t.stream_decoder(false).continuing()),
        _ => Out::Ids,
    };
    if prompt.is_empty() {
        return Err(format!("{}: the prompt has no tokens", a.file.display()).into());
    }
    // The KV cache holds the prompt and the generation, up to the context
    // (as llama.cpp's): -n past it stops there. A prompt that fills it
    // still gives one token (which is never run).
    let context = Context::of(&loader, a.ctx, a.file)?;
    if prompt.len() > context.tokens {
        return Err(CliError::Message(format!(
            "{}: the prompt has {} tokens; {}",
            a.file.display(),
            prompt.len(),
            context.holds()
        )));
    }
    let wanted = prompt.len().saturating_add(a.n);
    // A kept cache is the whole context, so that every run of it (and
    // prompt) can take it.
    let capacity = if a.prompt_cache.is_some() {
        context.tokens
    } else {
        wanted.min(context.tokens)
    };
    // The last token generated is never run, so it needs no room.
    let n = a.n.min(capacity - prompt.len() + 1);
    let loaded = Loaded::new(a, &loader, t0, load)?;
    let model = &loaded.model;

    let mut cache = model.cache(capacity).map_err(|e| named(a, e))?;
    let read = match a.prompt_cache {
        Some(path) => PromptCache::read(a, model, path, &mut cache)?,
        None => false,
    };
    // Its temporary file now: an unwritable place shows before the work.
    let cache_out = match a.prompt_cache {
        Some(path) => {
            let inputs: Vec<&Path> = loader.paths().collect();
            Some(crate::output::Output::create(path, &inputs, true)?)
        }
        None => None,
    };
    let mut sampler = sampler(a);
    let t1 = Instant::now();
    let (logits, kept) = step_reusing(model, &mut cache, &prompt).map_err(|e| named(a, e))?;
    let prompt_s = t1.elapsed().as_secs_f64();
    if let (Some(path), true) = (a.prompt_cache, read) {
        gguf_loader_cli::note(format_args!(
            "prompt cache: {kept} of the prompt's {} tokens reused from {}",
            prompt.len(),
            path.display()
        ));
    }
    if let Some(out) = cache_out {
        PromptCache::write(a, model, out, &cache)?;
    }
    let first_token_s = t0.elapsed().as_secs_f64();

    let mut out = io::stdout().lock();
    let t2 = Instant::now();
    let answer = answer(
        a,
        model,
        &mut cache,
        logits,
        n,
        &mut sampler,
        |id| text.is_eog(id),
        &mut stream,
        &mut out,
    )?;
    let generated = answer.ids.len();
    let gen_s = t2.elapsed().as_secs_f64();
    // A rate needs a step timed: the first generated token comes from the
    // prompt's pass, so one token alone has none.
    gguf_loader_cli::note(format_args!(
        "load: {:.2} s ({weights} on {}, RSS {}); first token after {first_token_s:.2} s; \
         prompt: {} tokens{}, {}; generation: {generated} tokens, {}; \
         peak RSS {}{}",
        loaded.load_s,
        a.device,
        memory::mib(loaded.rss),
        prompt.len(),
        if kept > 0 {
            format!(" ({kept} from the prompt cache)")
        } else {
            String::new()
        },
        rate(prompt.len() - kept, prompt_s),
        rate(generated.saturating_sub(1), gen_s),
        memory::mib(memory::peak_resident()),
        loaded.vram(a),
    ));
    if n < a.n && generated == n && !answer.ended {
        gguf_loader_cli::warn(format_args!(
            "{}: stopped at the end of the context: {} (prompt included)",
            a.file.display(),
            context.holds()
        ));
    }
    Ok(())
}

/// `--prompt-cache FILE`: a prompt's KV cache kept in a file between runs
/// (as llama.cpp's `--prompt-cache`), a GGUF of its own
/// ([`Transformer::cache_to_gguf`]).
struct PromptCache;

impl PromptCache {
    /// Reads the cache kept at `path` into `cache` (a fresh one of this
    /// run's capacity), where there is one; whether it did. Not where the
    /// file does not exist yet, or was kept for another context (it is
    /// written anew).
    /// Errs where it is not a regular file, is larger than a cache of this
    /// model and context can be, or holds no such cache.
    fn read<M: Step>(
        a: &Args<'_>,
        model: &M,
        path: &Path,
        cache: &mut KvCache<M::Buffer>,
    ) -> Result<bool, CliError> {
        let shown = path.display();
        let meta = match std::fs::metadata(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                gguf_loader_cli::note(format_args!(
                    "prompt cache: {shown} does not exist yet; written once the prompt has run"
                ));
                return Ok(false);
            }
            Err(e) => return Err(CliError::Message(format!("{shown}: {e}"))),
            Ok(m) => m,
        };
        if !meta.is_file() {
            return Err(CliError::Message(format!(
                "{shown}: --prompt-cache needs a regular file"
            )));
        }
        // A file of this model's cache holds at most every row of it and
        // a token a position, besides its header.
        let most = (cache.n_bytes() as u64)
            .saturating_add(8 * cache.capacity() as u64)
            .saturating_add(1 << 20);
        if meta.len() > most {
            return Err(CliError::Message(format!(
                "{shown}: {} bytes, more than a KV cache of this model for a context of {} tokens takes",
                meta.len(),
                cache.capacity()
            )));
        }
        let bytes = std::fs::read(path).map_err(|e| CliError::Message(format!("{shown}: {e}")))?;
        let refused = |e: ForwardError| {
            CliError::Message(format!(
                "{shown}: {e} (--prompt-cache takes a file it wrote for {})",
                a.file.display()
            ))
        };
        // No larger a cache than --ctx could ask for is made of it.
        let capacity = gguf_loader::GgufFile::parse(&bytes)
            .ok()
            .and_then(|f| f.metadata.get("kv_cache.capacity")?.as_u64());
        let most = MAX_CONTEXT.max(cache.capacity());
        if capacity.is_some_and(|c| c > most as u64) {
            return Err(CliError::Message(format!(
                "{shown}: a KV cache of more positions than --ctx takes ({most})"
            )));
        }
        let kept = model.cache_from_gguf(&bytes).map_err(refused)?;
        if kept.capacity() != cache.capacity() {
            gguf_loader_cli::note(format_args!(
                "prompt cache: {shown} was kept for a context of {} tokens, this run's is {}: \
                 not used, and written anew",
                kept.capacity(),
                cache.capacity()
            ));
            return Ok(false);
        }
        *cache = kept;
        Ok(true)
    }

    /// Writes `cache` (the prompt's) to `out`, a temporary file renamed
    /// over the kept one (never one of the model's own files: see
    /// [`Output::create`](crate::output::Output::create)).
    fn write<M: Step>(
        a: &Args<'_>,
        model: &M,
        mut out: crate::output::Output,
        cache: &KvCache<M::Buffer>,
    ) -> Result<(), CliError> {
        let writer = model.cache_to_gguf(cache).map_err(|e| named(a, e))?;
        writer.write_to(&mut out).map_err(|e| out.error(e))?;
        out.commit()?;
        Ok(())
    }
}

/// Runs `ids` through `cache`, keeping the positions whose tokens begin
/// them (at most all but the last, which runs for its logits); where a
/// sliding-window layer's ring no longer holds the point where they part,
/// all of `ids` again from an empty cache. The last position's logits,
/// and the positions kept.
fn step_reusing<M: Step>(
    model: &M,
    cache: &mut KvCache<M::Buffer>,
    ids: &[u32],
) -> Result<(Vec<f32>, usize), ForwardError> {
    let keep = cache
        .tokens()
        .iter()
        .zip(ids)
        .take_while(|(h, i)| h == i)
        .count()
        .min(ids.len() - 1);
    cache.truncate(keep);
    match model.step(cache, &ids[keep..]) {
        Err(ForwardError::Forgotten { .. }) => {
            cache.clear();
            Ok((model.step(cache, ids)?, 0))
        }
        r => Ok((r?, keep)),
    }
}

/// The sampler `--temp`, `--top-p`, `--top-k`, `--min-p` and `--seed` ask for.
fn sampler(a: &Args<'_>) -> Sampler {
    Sampler::new(a.temp, a.top_p, a.seed)
        .with_top_k(a.top_k)
        .with_min_p(a.min_p)
}

/// What [`answer`] sampled.
struct Answer {
    /// Every token sampled, the end of generation included.
    ids: Vec<u32>,
    /// Whether it stopped at the end of generation.
    ended: bool,
    /// The text streamed out (with `--ids`, the ids' lines).
    text: String,
}

/// Samples up to `n` tokens after `logits` (the last step's), streaming
/// each to `out` as `stream` writes it and running each but the last
/// through `model`; stops at the end of generation (printed as an id with
/// `--ids`, never as text). Ends text with a line break.
#[allow(clippy::too_many_arguments)]
fn answer<M: Step>(
    a: &Args<'_>,
    model: &M,
    cache: &mut KvCache<M::Buffer>,
    mut logits: Vec<f32>,
    n: usize,
    sampler: &mut Sampler,
    is_eog: impl Fn(u32) -> bool,
    stream: &mut Out<'_>,
    out: &mut impl Write,
) -> Result<Answer, CliError> {
    let mut answer = Answer {
        ids: Vec::new(),
        ended: false,
        text: String::new(),
    };
    let is_text = matches!(stream, Out::Text(_));
    for i in 0..n {
        let Some(next) = sampler.sample(&logits) else {
            break;
        };
        answer.ids.push(next);
        let eog = is_eog(next);
        answer.ended |= eog;
        if eog && is_text {
            break;
        }
        let piece = stream.piece(next);
        out.write_all(piece.as_bytes())
            .and_then(|()| out.flush())
            .map_err(CliError::stdout)?;
        answer.text.push_str(&piece);
        if eog {
            break;
        }
        if i + 1 < n {
            logits = model.step(cache, &[next]).map_err(|e| named(a, e))?;
        }
    }
    let tail = stream.finish();
    if !tail.is_empty() || is_text {
        out.write_all(tail.as_bytes())
            .and_then(|()| out.write_all(if is_text { b"\n" } else { b"" }))
            .and_then(|()| out.flush())
            .map_err(CliError::stdout)?;
        answer.text.push_str(&tail);
    }
    Ok(answer)
}

/// `--interactive`: user turns from standard input, one a line (a line
/// ending in `\` goes on to the next), each rendered with those before
/// and their answers through the file's chat template, tokenized whole,
/// and run from the first token the KV cache does not already hold; each
/// answer (up to `n` tokens) streamed to standard output and ended by a
/// line break. Ends at the end of standard input. When the conversation
/// leaves no room for an answer, its oldest turns are forgotten (see
/// [`fit_turns`]); a newest turn that does not fit even then is an error
/// naming both lengths. On a terminal, "> " on standard error asks for
/// each turn.
fn converse<M: Step>(
    a: &Args<'_>,
    weights: &str,
    loader: &MmapGGUFLoader,
    tok: &Tokenizer,
    t0: Instant,
    load: impl FnOnce(&MmapGGUFLoader) -> Result<M, ForwardError>,
) -> Result<(), CliError> {
    let context = Context::of(loader, a.ctx, a.file)?;
    let capacity = context.tokens;
    let loaded = Loaded::new(a, loader, t0, load)?;
    let model = &loaded.model;
    let mut cache = model.cache(capacity).map_err(|e| named(a, e))?;
    let mut sampler = sampler(a);
    let mut turns: Vec<chat::Message> = a
        .system
        .map(|s| chat::Message::new("system", s))
        .into_iter()
        .collect();
    // The first turn that can be forgotten: the system turn stays.
    let first = turns.len();
    let mut forgotten = 0usize;
    let (mut run, mut reused, mut generated, mut timed) = (0usize, 0usize, 0usize, 0usize);
    let (mut prompt_s, mut gen_s) = (0.0f64, 0.0f64);
    let mut input = io::stdin().lock();
    let asking = input.is_terminal();
    let mut out = io::stdout().lock();
    let mut answered = 0usize;
    while let Some(line) = read_turn(&mut input, asking)? {
        if line.trim().is_empty() {
            continue;
        }
        turns.push(chat::Message::new("user", line));
        let (ids, dropped) = fit_turns(tok, &mut turns, first, capacity, a.n, a.file)?;
        if ids.is_empty() || ids.len() > capacity {
            // Every earlier exchange is forgotten by now.
            let with = if first > 0 {
                " the system turn and"
            } else {
                ""
            };
            return Err(CliError::Message(format!(
                "{}: the newest turn needs {} tokens (with{with} the chat template); {}",
                a.file.display(),
                ids.len(),
                context.holds()
            )));
        }
        if dropped > 0 {
            forgotten += dropped;
            gguf_loader_cli::note(format_args!(
                "{}: forgot the conversation's oldest {dropped} turns ({} left, {} tokens) \
                 to leave room for an answer: {}",
                a.file.display(),
                turns.len() - first,
                ids.len(),
                context.holds()
            ));
        }
        let t = Instant::now();
        let (logits, keep) = step_reusing(model, &mut cache, &ids).map_err(|e| named(a, e))?;
        prompt_s += t.elapsed().as_secs_f64();
        run += ids.len() - keep;
        reused += keep;
        let n = a.n.min(capacity - ids.len() + 1);
        let mut stream = Out::Text(tok.stream_decoder(false).continuing());
        let t = Instant::now();
        let answer = answer(
            a,
            model,
            &mut cache,
            logits,
            n,
            &mut sampler,
            |id| tok.is_eog(id),
            &mut stream,
            &mut out,
        )?;
        gen_s += t.elapsed().as_secs_f64();
        generated += answer.ids.len();
        timed += answer.ids.len().saturating_sub(1);
        answered += 1;
        turns.push(chat::Message::new("assistant", answer.text));
        if n < a.n && answer.ids.len() == n && !answer.ended {
            gguf_loader_cli::warn(format_args!(
                "{}: an answer stopped at the end of the context: {} (the conversation \
                 included); the next turn forgets the oldest",
                a.file.display(),
                context.holds()
            ));
        }
    }
    gguf_loader_cli::note(format_args!(
        "load: {:.2} s ({weights} on {}, RSS {}); turns: {answered}; {}\
         prompts: {run} tokens run, {reused} reused from the KV cache, {}; \
         generation: {generated} tokens, {}; peak RSS {}{}",
        loaded.load_s,
        a.device,
        memory::mib(loaded.rss),
        if forgotten > 0 {
            format!("forgotten: {forgotten} turns; ")
        } else {
            String::new()
        },
        rate(run, prompt_s),
        rate(timed, gen_s),
        memory::mib(memory::peak_resident()),
        loaded.vram(a),
    ));
    Ok(())
}

/// `turns` (whose newest is a user turn) rendered and tokenized, with as
/// many of its oldest exchanges (a user turn and its answer; never a turn
/// before `first`, the system turn, nor the newest) forgotten, removed from
/// `turns`, as it takes to leave room for an answer of `n` tokens (at most
/// half the context) in a context of `capacity`. Once it must forget,
/// it forgets until the conversation fills at most half the context where
/// it can, as llama.cpp's context shift discards half, so that a long
/// conversation runs its whole prompt again once every few turns, not
/// every turn. Returns the ids and how many turns went; the ids
/// may still be longer than `capacity` when the newest turn is.
fn fit_turns(
    tok: &Tokenizer,
    turns: &mut Vec<chat::Message>,
    first: usize,
    capacity: usize,
    n: usize,
    file: &Path,
) -> Result<(Vec<u32>, usize), CliError> {
    let room = n.min(capacity / 2);
    let ids = encode_turns(tok, turns, file)?;
    if ids.len() + room <= capacity {
        return Ok((ids, 0));
    }
    let exchanges = turns.len().saturating_sub(first + 1) / 2;
    if exchanges == 0 {
        return Ok((ids, 0));
    }
    // The conversation with its oldest `k` exchanges left out, tokenized.
    let without = |k: usize| {
        let mut kept = turns[..first].to_vec();
        kept.extend_from_slice(&turns[first + 2 * k..]);
        encode_turns(tok, &kept, file)
    };
    // The fewest exchanges left out that bring it to `limit` tokens or
    // fewer: a binary search, as fewer turns never render longer (a long
    // context's conversation has thousands of exchanges, each tokenized
    // whole).
    let fewest = |limit: usize| -> Result<Option<(usize, Vec<u32>)>, CliError> {
        let (mut lo, mut hi, mut best) = (1, exchanges, None);
        while lo <= hi {
            let mid = lo + (hi - lo) / 2;
            let ids = without(mid)?;
            if ids.len() <= limit {
                best = Some((mid, ids));
                hi = mid - 1;
            } else {
                lo = mid + 1;
            }
        }
        Ok(best)
    };
    let (k, ids) = match fewest(capacity / 2)? {
        Some(half) => half,
        None => match fewest(capacity - room)? {
            Some(fits) => fits,
            // Not even the newest turn alone leaves room: the caller runs
            // it with what room there is, or says it does not fit.
            None => (exchanges, without(exchanges)?),
        },
    };
    turns.drain(first..first + 2 * k);
    Ok((ids, 2 * k))
}

/// The next turn of `input`: a line without its line break, lines ending
/// in `\` joined to the next (without the `\`, with a line break);
/// `None` at the end of input with nothing read. Asks with "> " on
/// standard error where `ask`. Errs on text that is not UTF-8 or longer
/// than [`crate::tokenize::MAX_TEXT`].
fn read_turn(input: &mut impl BufRead, ask: bool) -> Result<Option<String>, CliError> {
    let mut turn = Vec::new();
    let mut started = false;
    loop {
        if ask {
            eprint!("{}", if started { "  " } else { "> " });
        }
        let room = (crate::tokenize::MAX_TEXT + 1).saturating_sub(turn.len() as u64);
        let before = turn.len();
        let read = input
            .by_ref()
            .take(room)
            .read_until(b'\n', &mut turn)
            .map_err(|e| CliError::Message(format!("reading standard input: {e}")))?;
        if turn.len() as u64 > crate::tokenize::MAX_TEXT {
            return Err(CliError::Message(format!(
                "a turn on standard input is longer than {} MiB, the most text taken at once",
                crate::tokenize::MAX_TEXT >> 20
            )));
        }
        if read == 0 && !started {
            return Ok(None);
        }
        started = true;
        let ended = turn.last() == Some(&b'\n');
        if ended {
            turn.pop();
            if turn.last() == Some(&b'\r') {
                turn.pop();
            }
        }
        if ended && turn.len() > before && turn.last() == Some(&b'\\') {
            turn.pop();
            turn.push(b'\n');
            continue;
        }
        break;
    }
    String::from_utf8(turn).map(Some).map_err(|e| {
        CliError::Message(format!(
            "a turn on standard input is not UTF-8 (at byte offset {} of the turn)",
            e.utf8_error().valid_up_to()
        ))
    })
}

/// The context without `--ctx`, where the model's is longer or unknown:
/// llama.cpp's default. A file's context length is no bound on the work
/// (it may say 2^63, or nothing, and its chat template may write a prompt
/// of millions of tokens from a word; attention is quadratic in it).
pub const DEFAULT_CONTEXT: usize = 4096;

/// The largest `--ctx`.
const MAX_CONTEXT: usize = 16_777_216;

/// The KV cache's length in tokens and where it came from.
struct Context {
    tokens: usize,
    /// The model's (`{arch}.context_length`), where the file gives one.
    model: Option<usize>,
    /// Whether `--ctx` set it.
    asked: bool,
}

impl Context {
    fn of(loader: &MmapGGUFLoader, ctx: Option<usize>, file: &Path) -> Result<Self, CliError> {
        let config = ModelConfig::from_metadata(loader.metadata());
        let key = format!("{}.context_length", config.architecture);
        // A context length of another type, or of 0, is taken as none: say
        // so, not silently.
        let why = match config.context_length {
            Some(0) => Some("0, not a context length of 1 or more tokens".to_string()),
            Some(_) => None,
            None => config
                .ignored
                .iter()
                .find(|k| k.key == key)
                .map(|k| k.why.clone()),
        };
        if let Some(why) = why {
            gguf_loader_cli::warn(format_args!(
                "{}: warning: {} is {why}; taken as none",
                file.display(),
                gguf_loader::Escaped(&key),
            ));
        }
        let model = config.context_length.filter(|&c| c > 0);
        let tokens = match (ctx, model) {
            (Some(0), Some(m)) => m,
            (Some(0), None) => {
                return Err(format!(
                    "{}: --ctx 0 asks for the model's context length, and the file gives none",
                    file.display()
                )
                .into())
            }
            (Some(c), _) => c,
            (None, m) => m.unwrap_or(DEFAULT_CONTEXT).min(DEFAULT_CONTEXT),
        };
        if let Some(m) = model.filter(|&m| tokens > m) {
            gguf_loader_cli::warn(format_args!(
                "{}: warning: a context of {tokens} tokens is longer than the model's ({m}), \
                 so positions past it were never trained",
                file.display()
            ));
        }
        Ok(Self {
            tokens,
            model,
            asked: ctx.is_some(),
        })
    }

    /// "the context holds N …", saying where N came from.
    fn holds(&self) -> String {
        let n = self.tokens;
        let model = match self.model {
            Some(m) if m == n && !self.asked => return format!("the model's context holds {n}"),
            Some(m) => format!("the model's: {m}"),
            None => "the file gives the model's none".into(),
        };
        if self.asked {
            format!("the context holds {n} (--ctx; {model})")
        } else {
            format!("the context holds {n} (the default; --ctx sets it; {model})")
        }
    }
}

/// Device memory in use on `device` (a GPU), in bytes.
fn vram_used(device: Device) -> Option<usize> {
    gguf_loader_cli::gpu::used_memory(device)
}
