//! `generate --chat`'s template render, in a child process of its own with
//! a memory and a CPU limit.
//!
//! The template comes from the file. minijinja's fuel bounds its work, but
//! not all of its memory: a list built of shared parts costs little fuel and
//! turns, through `~` or a filter, into a string written out whole
//! (gguf-loader-llm's `chat` module). Where that happens in the child, the
//! allocation fails, the child aborts, and `generate` says why in one line
//! instead of taking the machine's memory or aborting itself.
//!
//! The child is this binary run as `gguf-loader __render-chat`: it reads a
//! [`Request`] as JSON on standard input, sets its limits before it reads
//! it (on Windows the parent puts it in a job object with those limits
//! before it writes the request), and writes the rendered text on
//! standard output, or the error on standard error with exit status 1.

use std::io::{self, Read, Write};
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};

use gguf_loader_cli::CliError;
use gguf_loader_llm::chat::{self, Message};
use gguf_loader_llm::tokenizer::Tokenizer;
use serde::{Deserialize, Serialize};

/// The hidden subcommand that renders in the child.
pub const SUBCOMMAND: &str = "__render-chat";

/// The child's address space: the rendered prompt is at most 16 MiB, the
/// template and the messages what the parent holds, the render's stack a
/// reservation of 512 MiB (touched only as deep as a value nests); the
/// rest is headroom.
const MEMORY_LIMIT: u64 = 1 << 30;

/// The child's CPU time in seconds (the fuel stops a render long before).
const CPU_LIMIT_S: u64 = 60;

/// What the child renders: [`chat::render_template`]'s arguments.
#[derive(Serialize, Deserialize)]
struct Request {
    template: String,
    messages: Vec<(String, String)>,
    add_generation_prompt: bool,
    bos_token: String,
    eos_token: String,
}

/// Renders `messages` with `tok`'s template as [`chat::render`] does, in a
/// child process with [`MEMORY_LIMIT`] and [`CPU_LIMIT_S`] where this
/// platform can set them (Unix: `setrlimit` in the child; Windows: a job
/// object), else in this process. Errors name `file`, the
/// template's.
pub fn render(
    tok: &Tokenizer,
    messages: &[Message],
    add_generation_prompt: bool,
    file: &Path,
) -> Result<String, CliError> {
    let failed = |why: String| CliError::Message(format!("{}: --chat: {why}", file.display()));
    let in_this_process =
        || chat::render(tok, messages, add_generation_prompt).map_err(|e| failed(e.to_string()));
    if !cfg!(any(unix, windows)) {
        return in_this_process();
    }
    let (bos, eos) = chat::bos_eos_texts(tok);
    let request = Request {
        template: chat::template_of(tok)
            .map_err(|e| failed(e.to_string()))?
            .to_string(),
        messages: messages
            .iter()
            .map(|m| (m.role.clone(), m.content.clone()))
            .collect(),
        add_generation_prompt,
        bos_token: bos.to_string(),
        eos_token: eos.to_string(),
    };
    let json = serde_json::to_vec(&request).map_err(|e| failed(e.to_string()))?;
    let child = std::env::current_exe().and_then(|exe| {
        Command::new(exe)
            .arg(SUBCOMMAND)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
    });
    let mut child = match child {
        Ok(c) => c,
        // No child to be had (the binary is gone, no processes left): the
        // fuel still bounds the render's work.
        Err(_) => return in_this_process(),
    };
    // Windows: the limits are the parent's to set, on a job object, before
    // the child has its request (it does nothing until then). Where the job
    // cannot be made, the child goes and the render stays here.
    #[cfg(windows)]
    let _job = match job::Job::limiting(&child) {
        Some(job) => job,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            return in_this_process();
        }
    };
    // The child reads all its input before it writes: no deadlock. It may
    // die first (its limits); its status says so below.
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(&json);
    }
    let out = child
        .wait_with_output()
        .map_err(|e| failed(format!("the chat template's render: {e}")))?;
    if out.status.success() {
        return String::from_utf8(out.stdout)
            .map_err(|_| failed("chat template: output is not UTF-8".into()));
    }
    if out.status.code() == Some(1) {
        let said = String::from_utf8_lossy(&out.stderr);
        return Err(failed(said.trim_end().to_string()));
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        // Ctrl-C reaches the child too: not the template's doing.
        if matches!(out.status.signal(), Some(2 | 15)) {
            return Err(failed("chat template: the render was interrupted".into()));
        }
    }
    Err(failed(format!(
        "chat template: the render ran past its limits ({} GiB of memory, {CPU_LIMIT_S} s of CPU) and was stopped ({}): the template builds a value too large to write",
        MEMORY_LIMIT >> 30,
        out.status
    )))
}

/// A job object that holds the render's child to [`MEMORY_LIMIT`] of
/// committed memory and [`CPU_LIMIT_S`] of CPU time, and ends it when the
/// job's handle closes: when [`render`] returns, or this process dies.
#[cfg(windows)]
mod job {
    use std::os::windows::io::AsRawHandle;
    use std::process::Child;

    use windows_sys::Win32::Foundation::{CloseHandle, HANDLE};
    use windows_sys::Win32::System::JobObjects::{
        AssignProcessToJobObject, CreateJobObjectW, JobObjectExtendedLimitInformation,
        SetInformationJobObject, JOBOBJECT_EXTENDED_LIMIT_INFORMATION,
        JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE, JOB_OBJECT_LIMIT_PROCESS_MEMORY,
        JOB_OBJECT_LIMIT_PROCESS_TIME,
    };

    use super::{CPU_LIMIT_S, MEMORY_LIMIT};

    pub struct Job(HANDLE);

    impl Job {
        /// A new job with the limits, `child` in it; `None` where Windows
        /// refuses any step.
        pub fn limiting(child: &Child) -> Option<Job> {
            // SAFETY: no security attributes, no name: an anonymous job
            // whose handle this process alone holds.
            let handle = unsafe { CreateJobObjectW(std::ptr::null(), std::ptr::null()) };
            if handle.is_null() {
                return None;
            }
            let job = Job(handle);
            let mut limits = JOBOBJECT_EXTENDED_LIMIT_INFORMATION::default();
            let basic = &mut limits.BasicLimitInformation;
            basic.LimitFlags = JOB_OBJECT_LIMIT_PROCESS_MEMORY
                | JOB_OBJECT_LIMIT_PROCESS_TIME
                | JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE;
            // In units of 100 ns.
            basic.PerProcessUserTimeLimit = CPU_LIMIT_S as i64 * 10_000_000;
            limits.ProcessMemoryLimit = MEMORY_LIMIT as usize;
            // SAFETY: `job.0` is the job just made; `limits` is the
            // structure that JobObjectExtendedLimitInformation names, of
            // the size passed, alive for the call.
            let set = unsafe {
                SetInformationJobObject(
                    job.0,
                    JobObjectExtendedLimitInformation,
                    (&limits as *const JOBOBJECT_EXTENDED_LIMIT_INFORMATION).cast(),
                    std::mem::size_of::<JOBOBJECT_EXTENDED_LIMIT_INFORMATION>() as u32,
                )
            };
            // SAFETY: `child`'s handle is a live process handle, owned by
            // `child`, which outlives the call.
            if set == 0 || unsafe { AssignProcessToJobObject(job.0, child.as_raw_handle()) } == 0 {
                return None;
            }
            Some(job)
        }
    }

    impl Drop for Job {
        fn drop(&mut self) {
            // SAFETY: the handle CreateJobObjectW gave, closed once.
            unsafe { CloseHandle(self.0) };
        }
    }
}

/// The child: limits set, the [`Request`] on standard input rendered to
/// standard output.
pub fn serve() -> ExitCode {
    #[cfg(unix)]
    {
        use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
        // No core file where the memory runs out.
        for (resource, limit) in [
            (Resource::As, MEMORY_LIMIT),
            (Resource::Cpu, CPU_LIMIT_S),
            (Resource::Core, 0),
        ] {
            // Never above a limit already set (a hard limit cannot rise).
            let old = getrlimit(resource);
            let lower = |l: Option<u64>| Some(l.map_or(limit, |l| l.min(limit)));
            let new = Rlimit {
                current: lower(old.current),
                maximum: lower(old.maximum),
            };
            if setrlimit(resource, new).is_err() {
                gguf_loader_cli::note(format_args!(
                    "chat template: cannot limit the render's memory and time"
                ));
                return ExitCode::from(1);
            }
        }
    }
    let mut input = Vec::new();
    let request = io::stdin()
        .lock()
        .read_to_end(&mut input)
        .map_err(|e| e.to_string())
        .and_then(|_| serde_json::from_slice::<Request>(&input).map_err(|e| e.to_string()));
    let request = match request {
        Ok(r) => r,
        Err(e) => {
            gguf_loader_cli::note(format_args!(
                "chat template: a bad request to {SUBCOMMAND}: {e}"
            ));
            return ExitCode::from(1);
        }
    };
    let messages: Vec<Message> = request
        .messages
        .into_iter()
        .map(|(role, content)| Message::new(role, content))
        .collect();
    let rendered = chat::render_template(
        &request.template,
        &messages,
        request.add_generation_prompt,
        &request.bos_token,
        &request.eos_token,
    );
    match rendered {
        Ok(text) => match io::stdout().lock().write_all(text.as_bytes()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                gguf_loader_cli::note(format_args!("chat template: writing the render: {e}"));
                ExitCode::from(1)
            }
        },
        Err(e) => {
            gguf_loader_cli::note(format_args!("{e}"));
            ExitCode::from(1)
        }
    }
}
