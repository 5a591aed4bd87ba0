//! Chat templates against Jinja2: every template llama.cpp vendors
//! (`models/templates/*.jinja`: Llama 3, Qwen, Gemma, DeepSeek, Mistral,
//! gpt-oss, …), rendered by `gguf_loader_llm::chat` for a few fixed
//! conversations, must give exactly the text Jinja2 gives when it renders
//! them as transformers' `apply_chat_template` does
//! (tests/golden/chat_templates.json, from scripts/chat_templates_golden.py),
//! and refuse where Jinja2 refuses. The templates are fetched by
//! `scripts/fetch-chat-templates.sh` into the cache (or
//! `$GGUF_LOADER_CHAT_TEMPLATES`); the test is skipped with a message when
//! they are absent, unless `GGUF_LOADER_REQUIRE_MODEL` is set.

#[path = "../../gguf-loader/tests/common/mod.rs"]
mod common;

use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use gguf_loader_llm::chat::{self, Message};
use serde_json::Value;

fn templates_dir() -> Option<PathBuf> {
    common::cached(
        "GGUF_LOADER_CHAT_TEMPLATES",
        "chat-templates",
        "google-gemma-2-2b-it.jinja",
        "scripts/fetch-chat-templates.sh",
    )
}

fn golden() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/golden/chat_templates.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn every_vendored_template_renders_as_jinja2_does() {
    let Some(dir) = templates_dir() else { return };
    let g = golden();
    let now = UNIX_EPOCH + Duration::from_secs(g["now"].as_u64().unwrap());
    let (bos, eos) = (
        g["bos_token"].as_str().unwrap(),
        g["eos_token"].as_str().unwrap(),
    );
    let conversations: Vec<(&String, Vec<Message>, bool)> = g["conversations"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, c)| {
            let messages = c["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| Message::new(m["role"].as_str().unwrap(), m["content"].as_str().unwrap()))
                .collect();
            (
                name,
                messages,
                c["add_generation_prompt"].as_bool().unwrap(),
            )
        })
        .collect();
    let templates = g["templates"].as_object().unwrap();
    let on_disk = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "jinja")
        })
        .count();
    assert_eq!(on_disk, templates.len(), "templates in {}", dir.display());

    let (mut same, mut failures) = (0, Vec::new());
    for (file, want) in templates {
        let source = std::fs::read_to_string(dir.join(file)).unwrap();
        assert_eq!(
            source.len() as u64,
            want["bytes"].as_u64().unwrap(),
            "{file} is not the template the golden file was made from"
        );
        for (name, messages, gen) in &conversations {
            let got = chat::render_template_at(&source, messages, *gen, bos, eos, now);
            let expected = want.get("error").or_else(|| want.get(name.as_str()));
            match (expected.and_then(Value::as_str), &got) {
                (Some(w), Ok(g)) if w == g => same += 1,
                // Both refuse (the template's own raise_exception, or an
                // undefined variable it needs).
                (None, Err(_)) => same += 1,
                _ => failures.push(format!(
                    "{file} / {name}:\n  jinja2: {expected:?}\n  ours:   {got:?}"
                )),
            }
        }
    }
    eprintln!(
        "{same} of {} renders equal to Jinja2's",
        templates.len() * conversations.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A template is hostile input: one that loops without end, or builds an
/// enormous string, fails with an error once it spends the render's fuel.
#[test]
fn runaway_templates_stop_with_an_error() {
    let one = [Message::new("user", "hi")];
    for bomb in [
        "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
        "{% set s = namespace(v='xxxxxxxxxxxxxxxx') %}{% for i in range(100000) %}{% set s.v = s.v ~ s.v %}{% endfor %}{{ s.v|length }}",
        "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
        // A list that holds itself; lists sharing lists, 100^6 leaves.
        "{% set ns = namespace() %}{% set ns.x = [ns, ns] %}{{ ns | tojson }}",
        "{% set a = [[[[[[1] * 100] * 100] * 100] * 100] * 100] * 100 %}{{ a | tojson }}",
        "{% set a = [[[[[[1] * 100] * 100] * 100] * 100] * 100] * 100 %}{{ a }}",
        // Padding in memory before any fuel is spent (an abort on 1 TB).
        "{{ '{:>1000000000000}'.format(1) }}",
        "{{ '{:.1000000000f}'.format(1.0) }}",
        // minijinja's pprint and debug take time cubic in the nesting: half
        // an hour for a list 5 000 deep.
        "{% set ns = namespace(x=[]) %}{% for i in range(5000) %}{% set ns.x = [ns.x] %}{% endfor %}{{ ns.x|pprint }}",
        "{% set ns = namespace(x=[]) %}{% for i in range(5000) %}{% set ns.x = [ns.x] %}{% endfor %}{{ debug(ns.x) }}",
    ] {
        let start = std::time::Instant::now();
        let e = chat::render_template(bomb, &one, true, "", "").expect_err(bomb);
        assert!(e.to_string().starts_with("chat template: "), "{e}");
        assert!(start.elapsed().as_secs() < 30, "{bomb}: {:?}", start.elapsed());
    }
    // Formats within the bounds still work, and pprint is indented JSON.
    let t = "{{ '{:>5}|{:.2f}'.format(1, 0.5) }} {{ [1, {'a': none}]|pprint }}";
    assert_eq!(
        chat::render_template(t, &one, true, "", "").unwrap(),
        "    1|0.50 [\n    1,\n    {\n        \"a\": null\n    }\n]"
    );
}

/// A list nested as deep as the fuel allows, written, stringified,
/// compared and dropped (all by recursion in minijinja): an error or a
/// result, never a stack overflow (an abort, once, at 100 000 deep).
#[test]
fn lists_nested_as_deep_as_the_fuel_allows_do_not_overflow_the_stack() {
    let one = [Message::new("user", "hi")];
    // n thousand deep (`range` stops at 100 000).
    let nest = |n: usize, body: &str| {
        let deep = |v: &str| {
            format!(
                "{{% for i in range({n}) %}}{{% for j in range(1000) %}}{{% set ns.{v} = [ns.{v}] %}}{{% endfor %}}{{% endfor %}}"
            )
        };
        format!(
            "{{% set ns = namespace(x=[], y=[]) %}}{}{}{body}",
            deep("x"),
            deep("y")
        )
    };
    // The deepest pair of lists the fuel builds, by bisection.
    let fits = |n: usize| chat::render_template(&nest(n, "ok"), &one, true, "", "").is_ok();
    let (mut lo, mut hi) = (1usize, 1 << 14);
    assert!(fits(lo) && !fits(hi));
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if fits(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    eprintln!("the fuel nests two lists {lo} thousand deep");
    // A quarter of the fuel where the address space is small.
    let least = if std::env::var_os(SMALL_ADDRESS_SPACE).is_some() {
        10
    } else {
        30
    };
    assert!(lo >= least, "{lo}");
    for body in [
        "{{ ns.x }}",
        "{{ (ns.x ~ '')|length }}",
        "{{ ns.x|string|length }}",
        "{{ ns.x == ns.y }}",
        "{{ ns.x|tojson }}",
        "{{ ns.x|length }}",
        "{{ ns.x|pprint|length }}",
        "{{ [ns.x, ns.y]|sort|length }}",
        "{{ [ns.x, ns.y]|unique|list|length }}",
        "{{ ns.x in [ns.y] }}",
        "{{ {ns.x: 1}|length }}",
    ] {
        for n in [lo / 2, lo, hi] {
            match chat::render_template(&nest(n, body), &one, true, "", "") {
                Ok(out) => assert!(out.len() < 16 << 20),
                Err(e) => assert!(e.to_string().starts_with("chat template: "), "{e}"),
            }
        }
    }
    // One list, twice as deep.
    let t = format!(
        "{{% set ns = namespace(x=[]) %}}{{% for i in range({}) %}}{{% for j in range(1000) %}}{{% set ns.x = [ns.x] %}}{{% endfor %}}{{% endfor %}}{{{{ ns.x }}}}",
        2 * lo
    );
    let _ = chat::render_template(&t, &one, true, "", "");
}

/// Python's `json.dumps` as `tojson`: its separators, key order, indent and
/// escapes (Jinja2's own `tojson` escapes `<`, `>`, `&` and `'`).
#[test]
fn tojson_writes_what_python_writes() {
    let one = [Message::new("user", "a \"q\" <b> & 'c'\n\u{1}é")];
    let render = |t: &str| chat::render_template(t, &one, false, "", "").unwrap();
    assert_eq!(
        render("{{ messages | tojson }}"),
        r#"[{"role": "user", "content": "a \"q\" <b> & 'c'\n\u0001é"}]"#
    );
    assert_eq!(
        render("{{ messages[0] | tojson(indent=2, sort_keys=true, ensure_ascii=true) }}"),
        "{\n  \"content\": \"a \\\"q\\\" <b> & 'c'\\n\\u0001\\u00e9\",\n  \"role\": \"user\"\n}"
    );
    assert_eq!(
        render("{{ {'a': [1, 2.5, 1e20, none, true], 'b': {}} | tojson(separators=[',', ':']) }}"),
        r#"{"a":[1,2.5,1e+20,null,true],"b":{}}"#
    );
}

#[test]
fn strftime_now_and_generation_blocks() {
    let one = [Message::new("user", "hi")];
    // 2026-01-02 03:04:05 UTC, a Friday.
    let now = UNIX_EPOCH + Duration::from_secs(1_767_323_045);
    let r = |t: &str| chat::render_template_at(t, &one, false, "", "", now).unwrap();
    assert_eq!(
        r("{{ strftime_now('%Y-%m-%d %H:%M:%S|%d %b %Y|%B %d, %Y|%A %j %I%p %%') }}"),
        "2026-01-02 03:04:05|02 Jan 2026|January 02, 2026|Friday 002 03AM %"
    );
    assert_eq!(
        r("{% for m in messages %}\n{% generation %}\n[{{ m.content }}]\n{% endgeneration %}\n{% endfor %}"),
        "[hi]\n"
    );
}

/// Runs the test `name` of this binary again, alone, in a shell with an
/// address-space limit of `kib` KiB (`ulimit -v`), and holds it to pass.
#[cfg(unix)]
fn pass_under_address_space_limit(kib: u32, name: &str) {
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -v {kib} && exec \"$0\" --exact {name} --test-threads 1"
        ))
        .arg(&exe)
        .env(SMALL_ADDRESS_SPACE, "1")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{name} under {kib} KiB: {text}");
    assert!(text.contains("1 passed"), "{name} under {kib} KiB: {text}");
}

/// Set in a run of [`pass_under_address_space_limit`].
const SMALL_ADDRESS_SPACE: &str = "GGUF_LOADER_TEST_SMALL_ADDRESS_SPACE";

/// Under an address-space limit too small for the render's 512 MiB stack
/// (`ulimit -v`), a render runs on a smaller one (128 MiB, then 32 MiB,
/// with a quarter and a sixteenth of the fuel) instead of failing to
/// start its thread; lists nested as deep as that fuel allows still never
/// run off the stack (a quarter of the fuel: two lists 58 thousand deep
/// on 128 MiB; a sixteenth, tried by hand: 14 thousand on 32 MiB).
#[cfg(unix)]
#[test]
fn renders_in_a_small_address_space() {
    if std::env::var_os(SMALL_ADDRESS_SPACE).is_some() {
        let one = [Message::new("user", "hi")];
        let out = chat::render_template(chat::CHATML, &one, true, "", "").unwrap();
        assert_eq!(
            out,
            "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
        );
        return;
    }
    // Room for a 128 MiB stack and the heap. (Tighter limits starve
    // malloc's per-thread arenas, and any program aborts then.)
    pass_under_address_space_limit(400_000, "renders_in_a_small_address_space");
    pass_under_address_space_limit(
        400_000,
        "lists_nested_as_deep_as_the_fuel_allows_do_not_overflow_the_stack",
    );
}
