//! `gguf-loader generate --interactive`: a conversation on standard input,
//! the KV cache kept between turns, on both real models: each answer is
//! the one the whole conversation so far gives as a fresh prompt, the
//! first is `--chat`'s, the lazy model answers alike; bad input and
//! arguments get one-line refusals.

#[path = "../../gguf-loader/tests/common/mod.rs"]
mod common;
mod support;

use std::path::Path;

use support::{cli, run, run_with_stdin, Ran};

const SYSTEM: &str = "Be brief.";
const TURNS: [&str; 2] = ["What is the capital of France?", "And of Germany?"];

/// `generate MODEL --interactive -n N --system SYSTEM` with `input` on
/// standard input, and `extra` arguments.
fn converse(model: &Path, input: &str, n: &str, extra: &[&str]) -> Ran {
    run_with_stdin(
        cli()
            .arg("generate")
            .arg(model)
            .args(["--interactive", "-n", n, "--system", SYSTEM])
            .args(extra),
        input.as_bytes(),
    )
}

/// The number before `what` in `stderr`'s figures.
fn figure(stderr: &str, what: &str) -> usize {
    let before = stderr.split(what).next().expect(what);
    before.split(' ').rev().nth(1).unwrap().parse().expect(what)
}

/// The conversation so far, `turns` (each a user turn, then its answer
/// where it has one) after the system turn, as the model's chat template
/// writes it (SmolLM2: its file's ChatML; Gemma-3: the built-in turn
/// format, the system turn in the first user turn), after the BOS that a
/// prompt gets.
fn rendered(gemma: bool, turns: &[(&str, Option<&str>)]) -> String {
    let mut text = if gemma {
        String::new()
    } else {
        format!("<|im_start|>system\n{SYSTEM}<|im_end|>\n")
    };
    for (i, (user, answer)) in turns.iter().enumerate() {
        if gemma {
            let system = if i == 0 {
                format!("{SYSTEM}\n\n")
            } else {
                String::new()
            };
            text += &format!(
                "<start_of_turn>user\n{system}{user}<end_of_turn>\n<start_of_turn>model\n"
            );
            if let Some(a) = answer {
                text += &format!("{}<end_of_turn>\n", a.trim());
            }
        } else {
            text += &format!("<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n");
            if let Some(a) = answer {
                text += &format!("{a}<|im_end|>\n");
            }
        }
    }
    text
}

/// Two turns on `model`: the second answer, run from the tokens the cache
/// kept, is the whole conversation's as a fresh prompt; the first is
/// `--chat`'s; `--lazy` answers alike.
fn two_turns(model: &Path, gemma: bool) {
    let n = "24";
    let one = converse(model, &format!("{}\n", TURNS[0]), n, &[]);
    let first = one.ok().strip_suffix('\n').expect("an answer ends a line");
    assert!(one.stderr.contains("; turns: 1;"), "{}", one.stderr);
    let chat = run(cli()
        .arg("generate")
        .arg(model)
        .args(["--chat", "--prompt", TURNS[0], "-n", n, "--system", SYSTEM]));
    assert_eq!(chat.ok(), one.stdout);

    // A blank line is no turn; a last line without its line break is one.
    let input = format!("{}\n\n{}", TURNS[0], TURNS[1]);
    let two = converse(model, &input, n, &[]);
    let second = two
        .ok()
        .strip_prefix(&one.stdout)
        .expect("the first answer comes first, as alone");
    assert!(two.stderr.contains("; turns: 2;"), "{}", two.stderr);
    // The second turn ran only what the cache did not hold: the first
    // turn's prompt and answer were reused.
    let reused = figure(&two.stderr, "reused from the KV cache");
    assert!(reused > 10, "{}", two.stderr);
    let fresh = run(cli().arg("generate").arg(model).args([
        "--prompt",
        &rendered(gemma, &[(TURNS[0], Some(first)), (TURNS[1], None)]),
        "-n",
        n,
    ]));
    assert_eq!(fresh.ok(), second, "the conversation as one prompt");
    // Gemma-3's sliding-window layers keep a ring in a cache longer than
    // twice their window: with one (the default context) and without.
    let short = converse(model, &input, n, &["--ctx", "300"]);
    assert_eq!(short.ok(), two.stdout);
    let lazy = converse(model, &input, n, &["--lazy"]);
    assert_eq!(lazy.ok(), two.stdout);
}

/// Four turns in a context of 110 tokens: before the last, the oldest
/// turns are forgotten (said on standard error, counted in the figures),
/// and the last answer is the one the turns kept give as a fresh prompt.
/// The answers are told apart by running the first two and three turns
/// alone (the same ones, as no turn is forgotten before the fourth).
fn forgets_oldest_turns(model: &Path, gemma: bool) {
    const FOUR: [&str; 4] = [
        "What is the capital of France?",
        "And of Germany?",
        "Which of the two is larger?",
        "Name a museum there.",
    ];
    let (n, ctx) = ("16", ["--ctx", "110"]);
    let input = |k: usize| {
        FOUR[..k]
            .iter()
            .map(|t| format!("{t}\n"))
            .collect::<String>()
    };
    let (mut outs, mut last) = (vec![String::new()], String::new());
    for k in 2..=4 {
        let r = converse(model, &input(k), n, &ctx);
        assert_eq!(r.code, Some(0), "{}", r.stderr);
        assert_eq!(
            r.stderr.contains("forgot"),
            k == 4,
            "{k} turns: {}",
            r.stderr
        );
        if k == 2 {
            // The first answer alone, as the first turn alone gives it.
            outs.push(converse(model, &input(1), n, &ctx).ok().to_string());
        }
        outs.push(r.stdout);
        last = r.stderr;
    }
    // Each answer: what its turn added to standard output, its line break
    // off.
    let answers: Vec<&str> = (1..=4)
        .map(|k| {
            let more = outs[k]
                .strip_prefix(outs[k - 1].as_str())
                .expect("answers add up");
            more.strip_suffix('\n').expect("an answer ends a line")
        })
        .collect();
    let forgot: usize = last
        .split("forgot the conversation's oldest ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|k| k.parse().ok())
        .unwrap_or_else(|| panic!("{last}"));
    assert!(
        forgot.is_multiple_of(2) && (2..=6).contains(&forgot),
        "whole exchanges, never the newest turn: {last}"
    );
    assert!(
        last.contains(&format!("; turns: 4; forgotten: {forgot} turns;")),
        "{last}"
    );
    let kept: Vec<(&str, Option<&str>)> = (forgot / 2..4)
        .map(|i| (FOUR[i], (i < 3).then(|| answers[i])))
        .collect();
    let fresh =
        run(cli()
            .arg("generate")
            .arg(model)
            .args(["--prompt", &rendered(gemma, &kept), "-n", n]));
    assert_eq!(
        fresh.ok(),
        format!("{}\n", answers[3]),
        "the turns kept as one prompt"
    );
}

#[test]
fn smollm2_forgets_the_oldest_turns_when_the_context_is_full() {
    if let Some(model) = common::model_path() {
        forgets_oldest_turns(&model, false);
    }
}

#[test]
fn gemma3_forgets_the_oldest_turns_when_the_context_is_full() {
    if let Some(model) = common::gemma_path() {
        forgets_oldest_turns(&model, true);
    }
}

#[test]
fn smollm2_answers_each_turn_as_a_fresh_prompt_would() {
    if let Some(model) = common::model_path() {
        two_turns(&model, false);
    }
}

#[test]
fn gemma3_answers_each_turn_as_a_fresh_prompt_would() {
    if let Some(model) = common::gemma_path() {
        two_turns(&model, true);
    }
}

#[test]
fn bad_input_and_arguments_are_refused_in_one_line() {
    let Some(model) = common::model_path() else {
        return;
    };
    let shown = model.display().to_string();
    // Nothing to answer: no turns, exit 0.
    for input in ["", "\n\n  \n"] {
        let r = converse(&model, input, "4", &[]);
        assert_eq!(r.ok(), "");
        assert!(r.stderr.contains("; turns: 0;"), "{}", r.stderr);
    }
    // A line ending in '\' goes on: one turn of two lines.
    let r = converse(&model, "Name a color.\\\nOne word.\n", "4", &[]);
    assert!(r.stderr.contains("; turns: 1;"), "{}", r.stderr);
    // Not UTF-8: said, with the offset in the turn.
    let r = run_with_stdin(
        cli().arg("generate").arg(&model).arg("-i"),
        b"hello \xff there\n",
    );
    assert_eq!(
        r.err(),
        "gguf-loader: a turn on standard input is not UTF-8 (at byte offset 6 of the turn)\n"
    );
    // A turn that does not fit the context even with every turn before it
    // forgotten names both lengths.
    let r = converse(
        &model,
        "Hi\nTell me more about the history, the people and the food of France.\n",
        "4",
        &["--ctx", "30"],
    );
    assert_eq!(r.stdout.lines().count(), 1, "the first turn is answered");
    let err = r.stderr.lines().last().unwrap_or_default();
    assert!(
        err.starts_with(&format!("gguf-loader: {shown}: the newest turn needs "))
            && err.contains(
                " tokens (with the system turn and the chat template); the context holds 30 (--ctx"
            ),
        "{}",
        r.stderr
    );
    assert_eq!(r.code, Some(2));
    // An answer that reaches the end of the context is cut, saying so, and
    // the next turn forgets the one before.
    let r = converse(&model, "Hi\nMore.\n", "64", &["--ctx", "25"]);
    assert_eq!(
        r.stderr
            .matches("an answer stopped at the end of the context")
            .count(),
        2,
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("; turns: 2; forgotten: 2 turns;"),
        "{}",
        r.stderr
    );
    assert_eq!(r.code, Some(0));
    // What a conversation cannot take is refused before the model loads.
    for args in [
        &["-i", "--prompt", "hi"][..],
        &["-i", "--prompt-file", "-"],
        &["-i", "--tokens", "1,2"],
        &["-i", "--ids"],
        &["--system", "x", "--prompt", "hi"],
    ] {
        let r = run_with_stdin(cli().arg("generate").arg(&model).args(args), b"hi\n");
        assert_eq!(r.code, Some(2), "{args:?}: {}", r.stderr);
        // The argument given is the one named.
        let named = args.iter().skip(1).find(|a| a.starts_with("--")).unwrap();
        assert!(
            args[0] != "-i" || r.stderr.contains(&format!("'{named}")),
            "{args:?}: {}",
            r.stderr
        );
    }
    let r = run(cli().arg("generate").arg(&model).arg("--chat"));
    assert!(
        r.err()
            .contains("--chat needs --prompt TEXT or --prompt-file FILE (or --interactive)"),
        "{}",
        r.stderr
    );
    // --chat with --interactive is the same conversation.
    let a = converse(&model, "Hi\n", "3", &[]);
    let b = converse(&model, "Hi\n", "3", &["--chat"]);
    assert_eq!(a.ok(), b.ok());
}
