//! `gguf-loader generate`: greedy generation on SmolLM2 gives llama.cpp's
//! tokens (tests/golden/logits) and stops at the end-of-sequence token;
//! seeded sampling repeats; bad requests get one-line refusals.

#[path = "../../gguf-loader/tests/common/mod.rs"]
mod common;
mod support;

use support::{cli, run, tiny_model};

fn ids(out: &str) -> Vec<u64> {
    out.lines().map(|l| l.parse().unwrap()).collect()
}

#[test]
fn greedy_generation_on_smollm2_is_llama_cpps_and_stops_at_eos() {
    let Some(model) = common::model_path() else {
        return;
    };
    let golden: serde_json::Value = serde_json::from_slice(
        &std::fs::read(common::repo_root().join("tests/golden/logits/smollm2.json")).unwrap(),
    )
    .unwrap();
    let p = &golden["prompts"][0];
    let prompt: Vec<String> = p["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.to_string())
        .collect();
    let want: Vec<u64> = p["greedy"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert!(
        want.len() < 32,
        "this prompt ends with EOS before 32 tokens"
    );
    let r = run(cli().arg("generate").arg(&model).args([
        "-n",
        "32",
        "--ids",
        "--tokens",
        &prompt.join(","),
    ]));
    assert_eq!(ids(r.ok()), want);
    assert!(
        r.stderr.contains("tokens/s") && r.stderr.contains("peak RSS"),
        "{}",
        r.stderr
    );
    // The forward pass takes the loaded matrices without copying them out
    // of the model (SmolLM2's are all small tensors sharing one arena: the
    // copies made the peak 200 MiB over the loaded model).
    let mib = |after: &str| -> f64 {
        let rest = r.stderr.split(after).nth(1).expect(after);
        rest.split(' ').next().unwrap().parse().unwrap()
    };
    let (loaded, peak) = (mib("RSS "), mib("peak RSS "));
    assert!(peak < loaded + 64.0, "{}", r.stderr);
}

#[test]
fn sampling_repeats_with_a_seed_and_bad_requests_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let sample = |seed: &str| {
        let r = run(cli().arg("generate").arg(&model).args([
            "--ids", "--tokens", "1,2,3", "-n", "6", "--temp", "0.9", "--top-p", "0.9", "--seed",
            seed,
        ]));
        ids(r.ok())
    };
    assert_eq!(sample("4"), sample("4"));
    // A nucleus mass too small for an f32 keeps the most likely token: the
    // greedy choice.
    let greedy = |extra: &[&str]| {
        let r = run(cli()
            .arg("generate")
            .arg(&model)
            .args(["--ids", "--tokens", "1,2,3", "-n", "4"])
            .args(extra));
        ids(r.ok())
    };
    assert_eq!(greedy(&["--temp", "0.9", "--top-p", "1e-300"]), greedy(&[]));
    // So do top-k 1 and min-p 1, at any temperature.
    assert_eq!(greedy(&["--temp", "50", "--top-k", "1"]), greedy(&[]));
    assert_eq!(greedy(&["--temp", "50", "--min-p", "1"]), greedy(&[]));
    let refused = |args: &[&str], says: &str| {
        let r = run(cli().arg("generate").arg(&model).args(args));
        assert!(r.err().contains(says), "{args:?}: {}", r.stderr);
    };
    refused(&["--prompt", "hello"], "tokenizer");
    refused(&["--ids", "--tokens", "4000000000"], "out of range");
    refused(&["--tokens", "1"], "tokenizer");
    // --ids with a text prompt needs the tokenizer, to encode it.
    refused(&["--ids", "--prompt", "1 2"], "no usable tokenizer");
    for bad in [
        ["--temp", "-1"],
        ["--temp", "nan"],
        ["--top-p", "5"],
        ["--top-p", "0"],
        ["--min-p", "1.5"],
        ["--min-p", "-0.1"],
        ["--top-k", "-1"],
        // The forward pass takes f16 or f32 weights; clap lists them.
        ["--dtype", "bf16"],
    ] {
        let r = run(cli()
            .arg("generate")
            .arg(&model)
            .args(["--ids", "--tokens", "1"])
            .args(bad));
        assert_eq!(r.code, Some(2), "{bad:?}: {}", r.stderr);
        assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    }
    refused(&[], "--tokens");
    let r = run(cli()
        .arg("generate")
        .arg(dir.path())
        .args(["--ids", "--tokens", "1"]));
    assert!(r.err().contains("directory"), "{}", r.stderr);
}

/// `--prompt-file` takes the prompt from a file or, as `-`, from standard
/// input: the same generation as `--prompt` with that text; a directory, a
/// missing file, text that is not UTF-8 or endless input are refused in one
/// line.
#[test]
fn prompt_file_and_standard_input_give_the_prompts_generation() {
    let Some(model) = common::model_path() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let text = "What is the capital of France?";
    let file = dir.path().join("prompt.txt");
    std::fs::write(&file, text).unwrap();
    let gen = |how: &[&std::ffi::OsStr], stdin: &[u8]| {
        let mut c = cli();
        c.arg("generate")
            .arg(&model)
            .args(["--chat", "-n", "12"])
            .args(how);
        support::run_with_stdin(&mut c, stdin)
    };
    let want = gen(&["--prompt".as_ref(), text.as_ref()], b"");
    let from_file = gen(&["--prompt-file".as_ref(), file.as_os_str()], b"");
    let from_stdin = gen(&["--prompt-file".as_ref(), "-".as_ref()], text.as_bytes());
    assert!(want.ok().contains("Paris"), "{}", want.stdout);
    assert_eq!(from_file.ok(), want.stdout);
    assert_eq!(from_stdin.ok(), want.stdout);

    let bad = dir.path().join("bad.txt");
    std::fs::write(&bad, b"a\xffb").unwrap();
    let mut cases = vec![
        (
            dir.path().to_path_buf(),
            if cfg!(unix) { "Is a directory" } else { "" },
        ),
        (dir.path().join("missing.txt"), support::NO_SUCH_FILE),
        (bad, "is not UTF-8 (at byte offset 1)"),
    ];
    if cfg!(unix) {
        cases.push(("/dev/zero".into(), "is longer than 256 MiB"));
    }
    for (path, says) in cases {
        let r = gen(&["--prompt-file".as_ref(), path.as_os_str()], b"");
        let err = r.err();
        assert!(err.contains(says) && err.lines().count() == 1, "{err}");
        assert!(r.stdout.is_empty());
    }
}

/// `--chat` renders the file's template (SmolLM2-Instruct's, and the model
/// answers), or says which built-in turn format it uses where the file has
/// none (the Gemma-3 base model).
#[test]
fn chat_uses_the_files_template_or_says_which_it_falls_back_to() {
    if let Some(model) = common::model_path() {
        let r = run(cli().arg("generate").arg(&model).args([
            "--chat",
            "--prompt",
            "What is the capital of France?",
            "-n",
            "12",
        ]));
        assert!(r.ok().contains("Paris"), "{}", r.stdout);
        assert!(!r.stderr.contains("chat_template"), "{}", r.stderr);
        // A system turn replaces the template's default one (SmolLM2's
        // names the model): a shorter prompt.
        let prompt_tokens = |r: &support::Ran| -> usize {
            let after = r.stderr.split("prompt: ").nth(1).expect("a prompt figure");
            after.split(' ').next().unwrap().parse().unwrap()
        };
        let with = |system: Option<&str>| {
            let mut c = cli();
            c.arg("generate")
                .arg(&model)
                .args(["--chat", "--prompt", "Hi", "-n", "1"]);
            if let Some(s) = system {
                c.args(["--system", s]);
            }
            run(&mut c)
        };
        let (plain, brief) = (with(None), with(Some("Be brief.")));
        brief.ok();
        assert!(
            prompt_tokens(&brief) < prompt_tokens(&plain),
            "{}\n{}",
            plain.stderr,
            brief.stderr
        );
    }
    if let Some(gemma) = common::gemma_path() {
        let r = run(cli()
            .arg("generate")
            .arg(&gemma)
            .args(["--chat", "--prompt", "Hi", "-n", "2"]));
        r.ok();
        assert!(
            r.stderr.contains("no tokenizer.chat_template")
                && r.stderr.contains("Gemma's turn format"),
            "{}",
            r.stderr
        );
    }
}

/// A small SentencePiece (`llama`) vocabulary with `template` as its chat
/// template, and no tensors: `generate --chat` renders the prompt before it
/// loads the model.
#[cfg(any(unix, windows))]
fn vocab_with_template(dir: &std::path::Path, template: &str) -> std::path::PathBuf {
    use gguf_loader::{GgufWriter, MetaValue};
    let mut w = GgufWriter::new();
    small_vocab(&mut w);
    w.add(
        "tokenizer.chat_template",
        MetaValue::String(template.into()),
    );
    let path = dir.join("vocab.gguf");
    std::fs::write(&path, w.to_bytes().unwrap()).unwrap();
    path
}

/// Adds a six-token SentencePiece (`llama`) vocabulary to `w`.
fn small_vocab(w: &mut gguf_loader::GgufWriter) {
    use gguf_loader::{MetaValue, ValueType};
    w.add("tokenizer.ggml.model", MetaValue::String("llama".into()));
    w.add(
        "tokenizer.ggml.tokens",
        MetaValue::Array(
            ValueType::String,
            ["<unk>", "<s>", "</s>", "\u{2581}", "h", "i"]
                .iter()
                .map(|t| MetaValue::String(t.to_string()))
                .collect(),
        ),
    );
}

/// The chat template is hostile input. Its render runs in a child process
/// with a memory limit: a template that builds a value too large to write
/// (shared parts, which minijinja's fuel does not meter when `~` writes them
/// out) stops there with a one-line error, and neither takes the machine's
/// memory nor aborts `generate`. The template's own errors pass through.
/// (Unix: the limit is `setrlimit`'s; Windows: a job object's.)
#[cfg(any(unix, windows))]
#[test]
fn a_chat_template_that_runs_out_of_memory_is_stopped_in_its_own_process() {
    let dir = tempfile::tempdir().unwrap();
    let chat = |template: &str| {
        let file = vocab_with_template(dir.path(), template);
        let t = std::time::Instant::now();
        let r = run(cli()
            .arg("generate")
            .arg(&file)
            .args(["--chat", "--prompt", "hi", "-n", "1"]));
        (r, t.elapsed())
    };
    // Wine (which runs the Windows tests here) takes a job object's limits
    // and enforces none of them: the render would take the machine's
    // memory. Wine puts its own variables in a process's environment.
    let wine = cfg!(windows) && std::env::var_os("WINEDATADIR").is_some();
    if wine {
        eprintln!("skipped the memory bomb: Wine enforces no job object limits");
    } else {
        let bomb = "{% set a = [[[[[[1] * 100] * 100] * 100] * 100] * 100] * 100 %}\
                    {{ (a ~ '') | length }}";
        let (r, took) = chat(bomb);
        let want = format!(
            "{}: --chat: chat template: the render ran past its limits",
            dir.path().join("vocab.gguf").display()
        );
        assert!(r.err().contains(&want), "{}", r.stderr);
        assert!(took.as_secs() < 60, "{took:?}");
        // The peak counts the render's process (reaped by `generate`): held
        // under its 1 GiB address space. (Not measured off Unix: 0.)
        assert!(r.max_rss < 1 << 30, "{} bytes", r.max_rss);
    }
    let (r, _) = chat("{{ raise_exception('no system turns here') }}");
    assert!(
        r.err().contains("--chat: chat template: ") && r.stderr.contains("no system turns here")
    );
    // A template that renders: on to the model, which this file lacks.
    let (r, _) = chat("{% for m in messages %}{{ m.content }}{% endfor %}");
    assert!(
        r.err().contains("'general.architecture' is missing"),
        "{}",
        r.stderr
    );
}

/// `--ctx` sets the context: shorter than the model's, the model's (0),
/// longer (with a warning); a model that gives none, or an enormous one,
/// gets llama.cpp's 4096 (a file's own length bounded no work: a chat
/// template could turn a word into a prompt of millions of tokens).
#[test]
fn ctx_sets_the_context() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let gen = |model: &std::path::Path, prompt: &str, extra: &[&str]| {
        let n = if extra.contains(&"-n") {
            &[][..]
        } else {
            &["-n", "100"][..]
        };
        run(cli()
            .arg("generate")
            .arg(model)
            .args(["--ids", "--tokens", prompt])
            .args(n)
            .args(extra))
    };
    let r = gen(&model, "1,2,3", &["--ctx", "8"]);
    assert_eq!(ids(r.ok()).len(), 6);
    assert!(
        r.stderr.contains(
            "stopped at the end of the context: the context holds 8 (--ctx; the model's: 512)"
        ),
        "{}",
        r.stderr
    );
    let r = gen(&model, "1,2,3", &["--ctx", "2"]);
    assert!(
        r.err()
            .contains("the prompt has 3 tokens; the context holds 2 (--ctx; the model's: 512)"),
        "{}",
        r.stderr
    );
    let r = gen(&model, "1,2,3", &["--ctx", "0", "-n", "1000"]);
    assert_eq!(ids(r.ok()).len(), 510);
    let r = gen(&model, "1,2,3", &["--ctx", "600", "-n", "2"]);
    assert_eq!(ids(r.ok()).len(), 2);
    assert!(
        r.stderr
            .contains("a context of 600 tokens is longer than the model's (512)"),
        "{}",
        r.stderr
    );
    // Files that give no context length (0, or a value of another type,
    // each said to be taken as none), or 2^63.
    use gguf_loader::MetaValue;
    for (name, value, said) in [
        (
            "none.gguf",
            MetaValue::U64(0),
            Some("is 0, not a context length of 1 or more tokens"),
        ),
        ("huge.gguf", MetaValue::U64(1 << 63), None),
        (
            "negative.gguf",
            MetaValue::I32(-1),
            Some("is int32 -1, not an unsigned integer"),
        ),
        (
            "text.gguf",
            MetaValue::String("2048".into()),
            Some("is string, not an unsigned integer"),
        ),
        (
            "nan.gguf",
            MetaValue::F32(f32::NAN),
            Some("is float32 NaN, not an unsigned integer"),
        ),
    ] {
        let mut w = gguf_loader::synthesize(
            &gguf_loader::Preset::TINY_TEST,
            gguf_loader::GgmlType::Q8_0,
            1,
        )
        .unwrap();
        w.add("llama.context_length", value.clone());
        let path = dir.path().join(name);
        std::fs::write(&path, w.to_bytes().unwrap()).unwrap();
        let long = vec!["1"; 4097].join(",");
        let warning =
            said.map(|said| format!("warning: llama.context_length {said}; taken as none"));
        // The error on its line; before it, the warning where one is due.
        let error = |r: &support::Ran| {
            assert_eq!(r.code, Some(2), "{name}: {}", r.stderr);
            let lines: Vec<&str> = r.stderr.lines().collect();
            assert_eq!(
                lines.len(),
                1 + warning.is_some() as usize,
                "{name}: {}",
                r.stderr
            );
            if let Some(w) = &warning {
                assert!(lines[0].contains(w.as_str()), "{name}: {}", r.stderr);
            }
            lines[lines.len() - 1].to_string()
        };
        let r = gen(&path, &long, &[]);
        assert!(
            error(&r).contains(
                "the prompt has 4097 tokens; the context holds 4096 (the default; --ctx sets it"
            ),
            "{}",
            r.stderr
        );
        let r = gen(&path, "1,2", &["--ctx", "0"]);
        if warning.is_some() {
            assert!(
                error(&r).contains(
                    "--ctx 0 asks for the model's context length, and the file gives none"
                ),
                "{}",
                r.stderr
            );
        }
    }
}

/// The KV cache is sized to the prompt and `-n`, but never past the
/// model's context (`llama.context_length`, 512 in the tiny model): a huge
/// `-n` stops there with a note instead of allocating for a million
/// tokens; a prompt that fills the context gives one token, a longer one
/// is refused.
#[test]
fn generation_stops_at_the_models_context_length() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let r = run(cli()
        .arg("generate")
        .arg(&model)
        .args(["--ids", "--tokens", "1,2,3", "-n", "1000000"]));
    // 3 + 509 positions run; the last token generated needs none.
    assert_eq!(ids(r.ok()).len(), 510);
    assert!(
        r.stderr
            .contains("stopped at the end of the context: the model's context holds 512"),
        "{}",
        r.stderr
    );
    assert!(r.max_rss < 256 << 20, "{} bytes", r.max_rss);
    // Within the context: no note.
    let r = run(cli()
        .arg("generate")
        .arg(&model)
        .args(["--ids", "--tokens", "1,2,3", "-n", "509"]));
    assert_eq!(ids(r.ok()).len(), 509);
    assert!(!r.stderr.contains("context"), "{}", r.stderr);
    let full = vec!["1"; 512].join(",");
    let r = run(cli()
        .arg("generate")
        .arg(&model)
        .args(["--ids", "--tokens", &full]));
    assert_eq!(ids(r.ok()).len(), 1);
    assert!(
        r.stderr
            .contains("the model's context holds 512 (prompt included)"),
        "{}",
        r.stderr
    );
    let long = vec!["1"; 513].join(",");
    let r = run(cli()
        .arg("generate")
        .arg(&model)
        .args(["--ids", "--tokens", &long]));
    assert!(
        r.err()
            .contains("the prompt has 513 tokens; the model's context holds 512"),
        "{}",
        r.stderr
    );
}

/// A tokenizer of another size than the embedding table is refused, as
/// llama.cpp refuses it (it sizes the table by the vocabulary): ids past
/// the vocabulary would have been generated and printed as nothing.
#[test]
fn a_tokenizer_smaller_than_the_embedding_is_refused() {
    use gguf_loader::{GgmlType, GgufWriter};
    let dir = tempfile::tempdir().unwrap();
    let mut w = GgufWriter::new();
    small_vocab(&mut w);
    w.add_tensor(
        "token_embd.weight",
        &[4, 8],
        GgmlType::F32,
        vec![0; 4 * 8 * 4],
    )
    .unwrap();
    let path = dir.path().join("m.gguf");
    std::fs::write(&path, w.to_bytes().unwrap()).unwrap();
    let r = run(cli()
        .arg("generate")
        .arg(&path)
        .args(["--prompt", "hi", "-n", "1"]));
    assert!(
        r.err()
            .contains("the tokenizer has 6 tokens but token_embd.weight has 8 rows"),
        "{}",
        r.stderr
    );
}

/// `/dev/full`, opened for writing.
fn full() -> std::fs::File {
    std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap()
}

/// Arguments as a stranger gives them: the prompt's ids before the file, a
/// prompt or system turn starting with '-', --ids with a text prompt, a
/// full standard error, a help that cannot be written.
#[test]
fn arguments_as_a_stranger_gives_them() {
    let dir = tempfile::tempdir().unwrap();
    let tiny = tiny_model(dir.path());
    // --tokens takes one value, comma-separated: the file may follow it
    // (it was taken for more ids).
    let r = run(cli()
        .args(["generate", "--ids", "-n", "2", "--tokens", "1,2"])
        .arg(&tiny));
    assert_eq!(ids(r.ok()).len(), 2);
    // Standard error full: the figures are lost, the generation is not
    // (eprintln! panicked, exit 101).
    let out = cli()
        .arg("generate")
        .arg(&tiny)
        .args(["--ids", "--tokens", "1,2", "-n", "2"])
        .stderr(full())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(ids(&String::from_utf8(out.stdout).unwrap()).len(), 2);
    // A help or version that cannot be written is an error, not exit 0.
    for (args, what) in [
        (&["--help"][..], "the help"),
        (&["--version"], "the version"),
        (&["generate", "--help"], "the help"),
    ] {
        let out = cli().args(args).stdout(full()).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(
            err.starts_with(&format!("gguf-loader: writing {what}: ")),
            "{err}"
        );
    }
    let Some(model) = common::model_path() else {
        return;
    };
    for args in [
        &["--prompt", "-hi"][..],
        &["--prompt", "-n"],
        &["--chat", "--prompt", "hi", "--system", "-be brief"],
    ] {
        let r = run(cli()
            .arg("generate")
            .arg(&model)
            .args(["-n", "2"])
            .args(args));
        assert!(!r.ok().is_empty(), "{args:?}");
    }
    // --ids prints the ids of a text prompt's generation (the tokenizer is
    // left out only with --tokens too): those of its ids given as --tokens.
    let prompt = "The capital of France is";
    let as_ids = run(cli()
        .arg("generate")
        .arg(&model)
        .args(["--prompt", prompt, "-n", "3", "--ids"]));
    let out = support::output_with_stdin(
        cli().arg("tokenize").arg(&model).arg("--add-special"),
        prompt.as_bytes(),
    );
    let prompt_ids = String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .replace(' ', ",");
    let by_ids =
        run(cli()
            .arg("generate")
            .arg(&model)
            .args(["-n", "3", "--ids", "--tokens", &prompt_ids]));
    assert_eq!(ids(as_ids.ok()), ids(by_ids.ok()));
    // Errors about the prompt name the file whose tokenizer made it.
    let r = run(cli().arg("generate").arg(&model).args([
        "--prompt",
        "one two three four",
        "--ctx",
        "2",
    ]));
    let shown = model.display().to_string();
    assert!(
        r.err()
            .starts_with(&format!("gguf-loader: {shown}: the prompt has ")),
        "{}",
        r.stderr
    );
}

/// A chat template that is not a string fails a chat render only: a
/// tokenizer needs none (tokenize and generate refused the file).
#[test]
fn a_chat_template_of_another_type_fails_only_chat() {
    use gguf_loader::{GgufWriter, MetaValue};
    let dir = tempfile::tempdir().unwrap();
    let mut w = GgufWriter::new();
    small_vocab(&mut w);
    w.add("tokenizer.chat_template", MetaValue::U32(7));
    // Past the vocabulary: the default (1) is used, and said, as llama.cpp
    // does.
    w.add("tokenizer.ggml.bos_token_id", MetaValue::U32(600));
    let path = dir.path().join("v.gguf");
    std::fs::write(&path, w.to_bytes().unwrap()).unwrap();
    let shown = path.display().to_string();

    let out =
        support::output_with_stdin(cli().arg("tokenize").arg(&path).arg("--add-special"), b"hi");
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(String::from_utf8(out.stdout).unwrap().starts_with("1 "));
    assert_eq!(
        err,
        format!(
            "gguf-loader: {shown}: warning: bad special token: tokenizer.ggml.bos_token_id = 600 \
             is not below the vocabulary's 6 tokens; using default id 1\n"
        )
    );
    // Without --chat, generate goes past the tokenizer (to the model that
    // is not there); with it, the template's type is the error.
    let r = run(cli().arg("generate").arg(&path).args(["--prompt", "hi"]));
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    let last = r.stderr.trim_end().lines().last().unwrap();
    assert!(
        last.contains("general.architecture") && !last.contains("chat_template"),
        "{}",
        r.stderr
    );
    let r = run(cli()
        .arg("generate")
        .arg(&path)
        .args(["--chat", "--prompt", "hi"]));
    assert!(
        r.stderr.contains(&format!(
            "gguf-loader: {shown}: --chat: chat template: metadata key 'tokenizer.chat_template' is uint32, expected string"
        )),
        "{}",
        r.stderr
    );
}

/// `--prompt-cache FILE`: the first run writes the prompt's cache, a later
/// one reuses the positions its tokens share with the new prompt, and
/// either gives the tokens a run without it gives (on both real models,
/// Gemma-3's sliding-window rings too, eager and lazy). What is not such
/// a cache, or one for another model, is refused in one line and left as
/// it is; a cache kept for another context is written anew.
#[test]
fn a_prompt_cache_gives_the_same_tokens_and_reuses_the_prompt() {
    let dir = tempfile::tempdir().unwrap();
    let models: Vec<_> = [common::model_path(), common::gemma_path()]
        .into_iter()
        .flatten()
        .collect();
    let prompt = "The history of the Roman Empire spans many centuries, from the founding \
                  of the city to the fall of Constantinople. In this essay we will";
    for model in &models {
        let kv = dir.path().join("prompt.kv");
        let _ = std::fs::remove_file(&kv);
        let gen = |prompt: &str, extra: &[&str]| {
            let mut c = cli();
            c.arg("generate")
                .arg(model)
                .args(["-n", "8", "--ids", "--prompt", prompt])
                .args(extra);
            if !extra.contains(&"--ctx") {
                c.args(["--ctx", "2100"]);
            }
            run(&mut c)
        };
        let with = |prompt: &str, extra: &[&str]| {
            let mut args = vec!["--prompt-cache", kv.to_str().unwrap()];
            args.extend(extra);
            gen(prompt, &args)
        };
        let want = ids(gen(prompt, &[]).ok());
        let first = with(prompt, &[]);
        assert_eq!(ids(first.ok()), want);
        assert!(
            first.stderr.contains("does not exist yet"),
            "{}",
            first.stderr
        );
        assert!(kv.is_file());
        for extra in [&[][..], &["--lazy"], &["--dtype", "f32"]] {
            let again = with(prompt, extra);
            let want = if extra.len() == 2 {
                ids(gen(prompt, extra).ok())
            } else {
                want.clone()
            };
            assert_eq!(ids(again.ok()), want, "{extra:?}");
            assert!(
                again.stderr.contains("from the prompt cache"),
                "{}",
                again.stderr
            );
        }
        // A longer prompt reuses all of the shorter; another prompt little.
        let longer = format!("{prompt} look at");
        let r = with(&longer, &[]);
        assert_eq!(ids(r.ok()), ids(gen(&longer, &[]).ok()));
        let other = "Once upon a time";
        let r = with(other, &[]);
        assert_eq!(ids(r.ok()), ids(gen(other, &[]).ok()));
        // Kept for another context: not used, and written anew.
        let r = with(prompt, &["--ctx", "2200"]);
        assert!(
            r.stderr.contains("was kept for a context of 2100 tokens"),
            "{}",
            r.stderr
        );
        assert_eq!(ids(r.ok()), want);
    }
    if models.len() == 2 {
        // The last run's cache (Gemma-3's) is not SmolLM2's.
        let kv = dir.path().join("prompt.kv");
        let before = std::fs::read(&kv).unwrap();
        let r = run(cli()
            .arg("generate")
            .arg(&models[0])
            .args(["--prompt", "Hi", "--ctx", "300", "--prompt-cache"])
            .arg(&kv));
        assert!(r.err().contains("made for another model"), "{}", r.stderr);
        assert!(std::fs::read(&kv).unwrap() == before);
    }
    // Not a cache: a model file, a directory, a FIFO; never written over.
    let tiny = tiny_model(dir.path());
    let text = dir.path().join("text.kv");
    std::fs::write(&text, "hello").unwrap();
    #[cfg(unix)]
    let fifo = {
        let fifo = dir.path().join("fifo");
        support::mkfifo(&fifo);
        Some(fifo)
    };
    #[cfg(not(unix))]
    let fifo: Option<std::path::PathBuf> = None;
    let bad: Vec<_> = [
        (tiny.clone(), "KV cache"),
        (dir.path().to_path_buf(), "regular file"),
        (text.clone(), "not a KV cache"),
    ]
    .into_iter()
    .chain(fifo.map(|f| (f, "regular file")))
    .collect();
    for (bad, says) in &bad {
        let r = run(cli()
            .arg("generate")
            .arg(&tiny)
            .args(["--tokens", "1,2,3", "--ids", "-n", "2", "--prompt-cache"])
            .arg(bad));
        assert!(r.err().contains(says), "{bad:?}: {}", r.stderr);
    }
    assert_eq!(std::fs::read(&text).unwrap(), b"hello");
    // A GPU's cache stays in VRAM; a conversation keeps its own.
    for extra in [&["--device", "cuda"][..], &["--interactive"]] {
        let r = run(cli()
            .arg("generate")
            .arg(&tiny)
            .args(["--prompt-cache", "x.kv"])
            .args(extra));
        assert!(
            !r.stderr.is_empty() && r.code == Some(2),
            "{extra:?}: {}",
            r.stderr
        );
    }
}
