//! `gguf-loader`: inspect, load, convert, verify, benchmark and synthesize GGUF files, and tokenize text with a model's tokenizer.
//!
//! Argument parsing only; the subcommands (but `convert` and `synth`) and
//! their output live in the library, `gguf_loader_cli`.

mod chat_render;
mod convert;
mod generate;
mod output;
mod perplexity;
mod synth;
mod tokenize;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use gguf_loader::{Device, ElementKind, GpuStaging, LoadMode, Stores};
use gguf_loader_cli::host::parse_threads;
use gguf_loader_cli::{bench, exit_code, inspect, load, verify, CliError};

#[derive(Parser)]
#[command(
    name = "gguf-loader",
    version,
    about = "Open, inspect and decode GGUF model files"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// `generate --gpu-matmul`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum GpuMatmulArg {
    /// cuBLAS.
    Cublas,
    /// The CPU's (and ggml's) summation order.
    GgmlOrder,
}

/// The element type tensors are decoded to.
#[derive(Clone, Copy, ValueEnum)]
enum Dtype {
    F32,
    F16,
    Bf16,
}

/// `generate --dtype`: the weight types the forward pass takes.
#[derive(Clone, Copy, ValueEnum)]
enum WeightDtype {
    F32,
    F16,
}

impl From<WeightDtype> for ElementKind {
    fn from(d: WeightDtype) -> ElementKind {
        match d {
            WeightDtype::F32 => ElementKind::F32,
            WeightDtype::F16 => ElementKind::F16,
        }
    }
}

impl From<Dtype> for ElementKind {
    fn from(d: Dtype) -> ElementKind {
        match d {
            Dtype::F32 => ElementKind::F32,
            Dtype::F16 => ElementKind::F16,
            Dtype::Bf16 => ElementKind::BF16,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    Mmap,
    Read,
}

impl From<Mode> for LoadMode {
    fn from(m: Mode) -> LoadMode {
        match m {
            Mode::Mmap => LoadMode::Mmap,
            Mode::Read => LoadMode::Read,
        }
    }
}

/// How decoded outputs are written (the values are the same).
#[derive(Clone, Copy, ValueEnum)]
enum StoresArg {
    /// Streaming stores for outputs of 8 MiB or more that reuse memory
    /// (bench); ordinary stores into fresh memory (load).
    Auto,
    /// Ordinary stores.
    Cached,
    /// Streaming (non-temporal) stores.
    Streaming,
}

impl From<StoresArg> for Stores {
    fn from(s: StoresArg) -> Stores {
        match s {
            StoresArg::Auto => Stores::Auto,
            StoresArg::Cached => Stores::Cached,
            StoresArg::Streaming => Stores::Streaming,
        }
    }
}

/// How a GPU load fills its staging ring (the values are the same).
#[derive(Clone, Copy, ValueEnum)]
enum StagingArg {
    /// The fastest measured: pread.
    Auto,
    /// Positioned reads from the file into pinned buffers.
    Pread,
    /// Copies out of the memory map into pinned buffers.
    Mapping,
    /// The mapping registered with the driver; no host copy.
    Register,
}

impl From<StagingArg> for GpuStaging {
    fn from(s: StagingArg) -> GpuStaging {
        match s {
            StagingArg::Auto => GpuStaging::Auto,
            StagingArg::Pread => GpuStaging::Pread,
            StagingArg::Mapping => GpuStaging::Mapping,
            StagingArg::Register => GpuStaging::Register,
        }
    }
}

/// A temperature: a number from 0 (greedy) to 100.
fn parse_temp(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(t) if (0.0..=100.0).contains(&t) => Ok(t),
        _ => Err(format!("'{s}' is not a temperature from 0 to 100")),
    }
}

/// The text of `--prompt-file`: the file's, or standard input's for `-`.
fn read_prompt(path: &Path) -> Result<String, CliError> {
    if path == Path::new("-") {
        return tokenize::read_text(std::io::stdin().lock(), "standard input");
    }
    let what = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|e| CliError::Message(format!("{what}: {e}")))?;
    tokenize::read_text(file, &what)
}

/// A nucleus mass: above 0, at most 1 (one too small for an f32, such as
/// 1e-300, is the smallest positive f32: the most likely token alone).
fn parse_top_p(s: &str) -> Result<f32, String> {
    match s.parse::<f64>() {
        Ok(p) if p > 0.0 && p <= 1.0 => Ok((p as f32).max(f32::MIN_POSITIVE)),
        _ => Err(format!(
            "'{s}' is not a probability mass above 0 and at most 1"
        )),
    }
}

fn parse_min_p(s: &str) -> Result<f32, String> {
    match s.parse::<f64>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p as f32),
        _ => Err(format!("'{s}' is not a ratio from 0 to 1")),
    }
}

fn parse_device(s: &str) -> Result<Device, String> {
    s.parse()
        .map_err(|e: gguf_loader::ParseDeviceError| e.to_string())
}

/// How `generate` and `perplexity` run the forward pass.
#[derive(clap::Args)]
struct ForwardArgs {
    /// Decode each layer when the forward pass reaches it (the next one
    /// prefetched) instead of loading the model first: a sooner first
    /// token, a smaller footprint, slower tokens after.
    #[arg(long)]
    lazy: bool,
    /// On a GPU, how matrices are multiplied: cuBLAS (fastest), or summed
    /// in the CPU's and ggml's order (the logits llama.cpp's CPU gives, to
    /// rounding; slower).
    #[arg(long, value_enum)]
    gpu_matmul: Option<GpuMatmulArg>,
    /// Run even when the decoded weights are larger than the memory
    /// available (MemAvailable, or what the memory cgroup leaves).
    #[arg(long)]
    no_memory_check: bool,
    /// Copy the matrices the file already holds as --dtype (an F16 file's,
    /// with f16) into memory of their own, instead of using views of the
    /// file's mapping (the default, as llama.cpp maps them).
    #[arg(long)]
    own_memory: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Print the header, metadata and tensor table of a GGUF file.
    Inspect {
        /// The GGUF file (any shard of a split model opens them all).
        file: PathBuf,
        /// Print the whole structure as JSON (arrays written out whole).
        #[arg(long)]
        json: bool,
    },
    /// Decode tensors and write them as safetensors (`-o x.safetensors`) or
    /// as a GGUF of one float type (`-o x.gguf`).
    ///
    /// One tensor is decoded at a time and streamed to a temporary file
    /// beside the output, renamed into place when complete. A GGUF keeps
    /// every metadata key (with `general.file_type` set; a split model's
    /// `split.*` keys go, since the output is one file) and, as llama.cpp's
    /// converters do, its 1-D tensors (norms, biases) and norm weights in
    /// f32. Safetensors' `__metadata__` keeps every key as a string: text as
    /// itself, numbers as decimal text, arrays (tokenizer vocabularies,
    /// `general.languages`) as JSON text.
    Convert {
        /// The GGUF file (any shard of a split model opens them all).
        file: PathBuf,
        /// The output; its extension, .safetensors or .gguf, picks the format.
        #[arg(short, long)]
        output: PathBuf,
        /// The float type of the output's tensors (a GGUF keeps its 1-D and
        /// norm tensors f32).
        #[arg(long, value_enum, default_value = "f16")]
        dtype: Dtype,
        /// Only tensors whose name matches this regular expression.
        #[arg(long)]
        tensors: Option<String>,
        /// Replace the output if it exists (never an input). A link's target
        /// is replaced, the link kept; a dangling link is replaced.
        #[arg(long)]
        force: bool,
        /// Decode on this device (cpu, cuda, cuda:N; a GPU needs a build
        /// with the `cuda` feature). The file is the same byte for byte.
        #[arg(long, default_value = "cpu", value_parser = parse_device)]
        device: Device,
        /// How the input is read: mapped into memory, or read into buffers
        /// (for a file that may change meanwhile: a mapped file truncated
        /// by another process kills the reader with SIGBUS).
        #[arg(long, value_enum, default_value = "mmap")]
        mode: Mode,
    },
    /// Decode every tensor (or walk the layers lazily) and report times and memory.
    Load {
        /// The GGUF file (any shard of a split model opens them all).
        file: PathBuf,
        /// The element type of the decoded tensors.
        #[arg(long, value_enum, default_value = "f16")]
        dtype: Dtype,
        /// Load into this device's memory (cpu, cuda, cuda:N; a GPU needs a
        /// build with the `cuda` feature).
        #[arg(long, default_value = "cpu", value_parser = parse_device)]
        device: Device,
        /// Decoding threads, 1 to 4 per core (default: all cores).
        #[arg(long, value_parser = parse_threads)]
        threads: Option<usize>,
        /// How the file is read: mapped into memory, or read into buffers.
        #[arg(long, value_enum, default_value = "mmap")]
        mode: Mode,
        /// How decoded outputs are written (the values are the same).
        #[arg(long, value_enum, default_value = "auto")]
        stores: StoresArg,
        /// Only the tensors whose name matches this regular expression,
        /// loaded as a whole model is (in parallel, one progress bar).
        #[arg(long, conflicts_with = "lazy")]
        tensors: Option<String>,
        /// Walk the model layer by layer, prefetching the next.
        #[arg(long)]
        lazy: bool,
        /// With --lazy: do not prefetch the next layer.
        #[arg(long, requires = "lazy")]
        no_prefetch: bool,
        /// With --lazy: simulate this much caller work per layer (sleep), to
        /// show what prefetching hides (at most a minute).
        #[arg(long, requires = "lazy", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=60_000))]
        work_ms: u64,
        /// GPU loads: how the pinned staging ring is filled [default: auto]
        #[arg(long, value_enum)]
        staging: Option<StagingArg>,
        /// GPU loads: the staging ring's size in MiB (four slots; 0: 64 MiB)
        /// [default: 0]
        #[arg(long, value_parser = clap::value_parser!(u32).range(0..=4096))]
        ring_mib: Option<u32>,
        /// Copy the tensors the file already holds as --dtype (f16 of an
        /// F16 file) into memory of their own, instead of views of the
        /// mapping (read in, not copied: the default).
        #[arg(long)]
        own_memory: bool,
        /// Print the report as one JSON object.
        #[arg(long)]
        json: bool,
        /// Load even when the decoded model is larger than the memory
        /// available (MemAvailable, or what the memory cgroup leaves).
        #[arg(long)]
        no_memory_check: bool,
    },
    /// Write a model with real shapes and metadata and random weights.
    Synth {
        /// tinyllama-1.1b, smollm2-135m, llama2-7b or tiny-test.
        #[arg(long)]
        preset: String,
        /// Weight type: q4_0, q8_0, q6_k, f16, … (norms stay f32).
        #[arg(long = "type")]
        ty: String,
        /// The output, written to a temporary file beside it and renamed
        /// into place when complete.
        #[arg(short, long)]
        output: PathBuf,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Replace the output if it exists. A link's target is replaced, the
        /// link kept; a dangling link is replaced.
        #[arg(long)]
        force: bool,
    },
    /// Decode throughput per tensor type, next to memcpy of the same bytes.
    Bench {
        /// The GGUF file (any shard of a split model opens them all).
        file: PathBuf,
        /// The element type decoded to.
        #[arg(long, value_enum, default_value = "f16")]
        dtype: Dtype,
        /// Threads for the multithreaded figures, 1 to 4 per core (default:
        /// all cores).
        #[arg(long, value_parser = parse_threads)]
        threads: Option<usize>,
        /// How decoded outputs are written (the values are the same).
        #[arg(long, value_enum, default_value = "auto")]
        stores: StoresArg,
        /// Run even when the outputs of one tensor type are larger than the
        /// memory available (MemAvailable, or what the memory cgroup leaves).
        #[arg(long)]
        no_memory_check: bool,
        /// Print the figures as one JSON object (once all are measured).
        #[arg(long)]
        json: bool,
    },
    /// Continue a prompt with the model's own forward pass (llama, gemma3;
    /// CPU or GPU): the generation on standard output, speeds and peak
    /// memory on standard error. Greedy unless --temp is above 0.
    #[command(group(clap::ArgGroup::new("text").args(["prompt", "prompt_file"])))]
    #[command(group(clap::ArgGroup::new("turns").args(["chat", "interactive"]).multiple(true)))]
    Generate {
        /// The GGUF file (any shard of a split model opens them all).
        file: PathBuf,
        /// The prompt as text (it may start with '-').
        #[arg(long, conflicts_with = "tokens", allow_hyphen_values = true)]
        prompt: Option<String>,
        /// The prompt as the text of this file (UTF-8, at most 256 MiB; `-`:
        /// standard input).
        #[arg(long, conflicts_with = "tokens", value_name = "FILE")]
        prompt_file: Option<PathBuf>,
        /// The prompt as token ids, comma-separated.
        #[arg(long, value_delimiter = ',', num_args = 1, value_name = "IDS")]
        tokens: Option<Vec<u32>>,
        /// Tokens to generate at most (stopping sooner at the end of
        /// generation or of the context, --ctx).
        #[arg(short, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        n: u32,
        /// The context (the KV cache) in tokens, prompt included; 0: the
        /// model's context length, all of it [default: the model's, at
        /// most 4096, as llama.cpp's]
        #[arg(long, value_parser = clap::value_parser!(u32).range(0..=16_777_216))]
        ctx: Option<u32>,
        /// Weights as f16 (1-D tensors stay f32) or f32.
        #[arg(long, value_enum, default_value = "f16")]
        dtype: WeightDtype,
        /// Sampling temperature, 0 to 100; 0 is greedy.
        #[arg(long, default_value_t = 0.0, allow_negative_numbers = true, value_parser = parse_temp)]
        temp: f32,
        /// Nucleus sampling, above 0 and at most 1: the smallest set of
        /// tokens with this much mass.
        #[arg(long, default_value_t = 1.0, allow_negative_numbers = true, value_parser = parse_top_p)]
        top_p: f32,
        /// Keep only the K most likely tokens; 0: all.
        #[arg(long, default_value_t = 0)]
        top_k: usize,
        /// Keep only the tokens at least this many times as likely as the
        /// most likely, 0 to 1; 0: all.
        #[arg(long, default_value_t = 0.0, allow_negative_numbers = true, value_parser = parse_min_p)]
        min_p: f32,
        /// Seed of the sampler.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Run on this device (cpu, cuda, cuda:N; a GPU needs a build with
        /// the `cuda` feature, and f16 weights).
        #[arg(long, default_value = "cpu", value_parser = parse_device)]
        device: Device,
        /// Render the prompt as a user turn of the file's chat template
        /// (--interactive does, turn by turn).
        #[arg(long, conflicts_with = "tokens")]
        chat: bool,
        /// A conversation: user turns from standard input, one a line (a
        /// line ending in '\' goes on), each answered (up to -n tokens)
        /// through the file's chat template, the KV cache kept between
        /// turns; the oldest turns are forgotten when the context is full;
        /// it ends with the input.
        #[arg(short, long, conflicts_with_all = ["prompt", "prompt_file", "tokens", "ids"])]
        interactive: bool,
        /// With --chat or --interactive: a system turn before the prompt's
        /// (the template decides where it goes; some refuse one).
        #[arg(long, requires = "turns", allow_hyphen_values = true)]
        system: Option<String>,
        /// Print the generated token ids, one per line, instead of text
        /// (with --tokens, needs no tokenizer).
        #[arg(long)]
        ids: bool,
        /// Keep the prompt's KV cache in this file (a GGUF of its own, as
        /// llama.cpp's --prompt-cache): read first where it exists, its
        /// positions whose tokens begin the prompt reused, and written
        /// once the prompt has run. The cache is the whole context
        /// (--ctx), so that every run of a context shares it. CPU only.
        #[arg(long, value_name = "FILE", conflicts_with = "interactive")]
        prompt_cache: Option<PathBuf>,
        #[command(flatten)]
        forward: ForwardArgs,
    },
    /// The model's perplexity over a text, as llama.cpp's llama-perplexity
    /// computes it: chunks of --ctx tokens, the second half of each scored.
    /// The running figure on standard output, chunk by chunk, then
    /// "Final estimate: PPL = … +/- …"; speed and memory on standard error.
    /// With --kl-divergence-base, also the model's log-probabilities in
    /// llama.cpp's file; with --kl-divergence too, another model's KL
    /// divergence from them.
    Perplexity {
        /// The GGUF file (any shard of a split model opens them all).
        file: PathBuf,
        /// The text (UTF-8, at most 256 MiB; `-`: standard input). It must
        /// hold at least two chunks' tokens.
        #[arg(
            short = 'f',
            long,
            value_name = "FILE",
            required_unless_present = "kl_divergence",
            conflicts_with = "kl_divergence"
        )]
        text_file: Option<PathBuf>,
        /// Tokens a chunk (the context; at least 3) [default: 512].
        #[arg(long, value_parser = clap::value_parser!(u32).range(3..=16_777_216),
              conflicts_with = "kl_divergence")]
        ctx: Option<u32>,
        /// Chunks at most [default: every whole chunk of the text, or of
        /// the --kl-divergence-base file].
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        chunks: Option<u32>,
        /// A file of a base model's log-probabilities, as llama.cpp's
        /// llama-perplexity writes and reads it: written here (with the
        /// perplexity) from this model over the text, or, with
        /// --kl-divergence, read, and this model compared with it.
        #[arg(long, value_name = "FILE")]
        kl_divergence_base: Option<PathBuf>,
        /// Compare this model's token distributions with the base's over
        /// the base file's own text and context (no -f, no --ctx): KL
        /// divergence, both perplexities, Δp and the same top token, chunk
        /// by chunk and then in all, as llama.cpp prints them.
        #[arg(long, requires = "kl_divergence_base")]
        kl_divergence: bool,
        /// Replace an existing --kl-divergence-base file when writing one.
        #[arg(long, conflicts_with = "kl_divergence")]
        force: bool,
        /// Weights as f16 (1-D tensors stay f32) or f32.
        #[arg(long, value_enum, default_value = "f16")]
        dtype: WeightDtype,
        /// Run on this device (cpu, cuda, cuda:N; a GPU needs a build with
        /// the `cuda` feature, and f16 weights).
        #[arg(long, default_value = "cpu", value_parser = parse_device)]
        device: Device,
        /// Print the result as one JSON object (no lines per chunk).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        forward: ForwardArgs,
    },
    /// Check the structure and scan the data for NaN/Inf values and scales
    /// (exit 0 clean, 1 data problems, 2 malformed, 3 the report could not
    /// be written).
    Verify {
        /// The GGUF file (any shard of a split model opens them all).
        file: PathBuf,
        /// Print the report as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Tokenize standard input (one UTF-8 text) with the model's tokenizer
    /// and print the token ids on one line.
    Tokenize {
        /// The GGUF file (any shard of a split model opens them all).
        file: PathBuf,
        /// Add BOS/EOS as the model asks.
        #[arg(long)]
        add_special: bool,
        /// Turn special-token text (`<|im_start|>`, ...) into those tokens.
        #[arg(long)]
        parse_special: bool,
        /// Print a JSON array of {id, piece}.
        #[arg(long)]
        json: bool,
    },
    /// `generate --chat`'s template render, in a child process with limits
    /// (see `chat_render`).
    #[command(name = chat_render::SUBCOMMAND, hide = true)]
    RenderChat,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return parse_error(&e),
    };
    warn_unknown_simd_cap();
    let decodes = !matches!(
        cli.command,
        Command::Inspect { .. } | Command::Tokenize { .. } | Command::RenderChat
    );
    if decodes {
        if let Err(e) = start_thread_pool() {
            return exit_code(Err(e));
        }
    }
    exit_code(run(cli.command))
}

/// Prints clap's help, version or usage error and gives the exit status:
/// 0 for help and version, 2 for an error, as clap's own `exit` would, but
/// a help that cannot be written (`--help >/dev/full`) is an error (2), and
/// one whose reader left (`--help | head -1`) ends quietly (141).
fn parse_error(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    let shown = e.print();
    let help = matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    );
    match shown {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::from(141),
        Err(err) if help => {
            let what = if e.kind() == ErrorKind::DisplayVersion {
                "the version"
            } else {
                "the help"
            };
            gguf_loader_cli::warn(format_args!("writing {what}: {err}"));
            ExitCode::from(2)
        }
        _ if help && e.kind() != ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            ExitCode::SUCCESS
        }
        _ => ExitCode::from(2),
    }
}

/// Starts rayon's global pool (the decoding threads) before the command
/// rather than at its first decode: with `RAYON_NUM_THREADS` read as rayon
/// reads it but capped at [`gguf_loader::max_threads`] (ten thousand
/// threads took most of a minute to start), and a pool that cannot start
/// (too many threads for the process's limits) is one line, not a panic.
fn start_thread_pool() -> Result<(), CliError> {
    let pool = gguf_loader::pool_threads();
    if let Some(w) = pool.warning() {
        gguf_loader_cli::warn(format_args!("warning: {w}"));
    }
    let n = pool.threads;
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global()
        .map_err(|e| CliError::from(format!("cannot start {n} decoding threads: {e}")))
}

/// Says so on standard error where `GGUF_LOADER_SIMD` holds a value the
/// decoders do not know (they then use the widest SIMD the CPU has).
fn warn_unknown_simd_cap() {
    let Some(v) = std::env::var_os(gguf_loader::SIMD_ENV) else {
        return;
    };
    let v = v.to_string_lossy();
    let lower = v.to_ascii_lowercase();
    if !v.is_empty() && !gguf_loader::SIMD_CAPS.contains(&lower.as_str()) {
        gguf_loader_cli::warn(format_args!(
            "warning: {}={} is not one of {}; decoding with the widest SIMD this CPU has",
            gguf_loader::SIMD_ENV,
            gguf_loader::Escaped(&v),
            gguf_loader::SIMD_CAPS.join(", ")
        ));
    }
}

fn run(command: Command) -> Result<ExitCode, CliError> {
    match command {
        Command::RenderChat => return Ok(chat_render::serve()),
        Command::Inspect { file, json } => {
            inspect::run(&file, json).map_err(|e| e.in_file(&file))?
        }
        Command::Convert {
            file,
            output,
            dtype,
            tensors,
            force,
            device,
            mode,
        } => convert::run(&convert::Args {
            input: &file,
            output: &output,
            dtype: dtype.into(),
            filter: tensors.as_deref(),
            force,
            device,
            mode: mode.into(),
        })
        .map_err(|e| e.in_file(&file))?,
        Command::Load {
            file,
            dtype,
            device,
            threads,
            mode,
            stores,
            tensors,
            lazy,
            no_prefetch,
            work_ms,
            json,
            no_memory_check,
            staging,
            ring_mib,
            own_memory,
        } => {
            if device == Device::Cpu && (staging.is_some() || ring_mib.is_some()) {
                return Err("--staging and --ring-mib are for GPU loads (--device cuda)".into());
            }
            load::run(&load::Args {
                file: &file,
                dtype: dtype.into(),
                device,
                threads,
                mode: mode.into(),
                stores: stores.into(),
                lazy,
                prefetch: !no_prefetch,
                work: std::time::Duration::from_millis(work_ms),
                json,
                no_memory_check,
                staging: staging.unwrap_or(StagingArg::Auto).into(),
                ring_bytes: ring_mib.unwrap_or(0) as usize * (1 << 20),
                own_memory,
                filter: tensors.as_deref(),
            })
            .map_err(|e| e.in_file(&file))?
        }
        Command::Synth {
            preset,
            ty,
            output,
            seed,
            force,
        } => synth::run(&preset, &ty, &output, seed, force)?,
        Command::Bench {
            file,
            dtype,
            threads,
            stores,
            no_memory_check,
            json,
        } => bench::run(&bench::Args {
            file: &file,
            dtype: dtype.into(),
            threads,
            stores: stores.into(),
            no_memory_check,
            json,
        })
        .map_err(|e| e.in_file(&file))?,
        Command::Generate {
            file,
            prompt,
            prompt_file,
            tokens,
            n,
            ctx,
            dtype,
            temp,
            top_p,
            top_k,
            min_p,
            seed,
            device,
            chat,
            interactive,
            system,
            ids,
            prompt_cache,
            forward:
                ForwardArgs {
                    lazy,
                    gpu_matmul,
                    no_memory_check,
                    own_memory,
                },
        } => generate::run(&generate::Args {
            file: &file,
            prompt: match prompt_file {
                Some(p) => Some(read_prompt(&p)?),
                None => prompt,
            }
            .as_deref(),
            tokens: tokens.as_deref(),
            n: n as usize,
            ctx: ctx.map(|c| c as usize),
            dtype: dtype.into(),
            temp,
            top_p,
            top_k,
            min_p,
            seed,
            device,
            chat,
            system: system.as_deref(),
            ids,
            interactive,
            lazy,
            ggml_order: gpu_matmul.map(|m| m == GpuMatmulArg::GgmlOrder),
            no_memory_check,
            own_memory,
            prompt_cache: prompt_cache.as_deref(),
        })
        .map_err(|e| e.in_file(&file))?,
        Command::Perplexity {
            file,
            text_file,
            ctx,
            chunks,
            kl_divergence_base,
            kl_divergence,
            force,
            dtype,
            device,
            json,
            forward:
                ForwardArgs {
                    lazy,
                    gpu_matmul,
                    no_memory_check,
                    own_memory,
                },
        } => {
            // (clap: a text unless comparing, and then none.)
            let text = text_file.as_deref().map(read_prompt).transpose()?;
            let kld = match (&kl_divergence_base, kl_divergence) {
                (Some(path), true) => perplexity::Kld::Compare { path },
                (Some(path), false) => perplexity::Kld::Write { path, force },
                (None, _) => perplexity::Kld::None,
            };
            perplexity::run(&perplexity::Args {
                model: generate::Args {
                    lazy,
                    ggml_order: gpu_matmul.map(|m| m == GpuMatmulArg::GgmlOrder),
                    no_memory_check,
                    own_memory,
                    ..generate::Args::model_only(
                        &file,
                        ctx.map(|c| c as usize),
                        dtype.into(),
                        device,
                    )
                },
                text: text.as_deref().unwrap_or_default(),
                text_path: text_file.as_deref(),
                chunks: chunks.map(|c| c as usize),
                json,
                kld,
            })
            .map_err(|e| e.in_file(&file))?
        }
        Command::Verify { file, json } => {
            // Its exit code is the verdict: a report it could not write (a
            // full disk) is not "malformed".
            return match verify::run(&file, json) {
                Err(e) if !e.is_broken_pipe() => {
                    gguf_loader_cli::warn(format_args!("{e}"));
                    Ok(ExitCode::from(3))
                }
                r => r,
            };
        }
        Command::Tokenize {
            file,
            add_special,
            parse_special,
            json,
        } => {
            tokenize::run(&file, add_special, parse_special, json).map_err(|e| e.in_file(&file))?
        }
    }
    Ok(ExitCode::SUCCESS)
}
