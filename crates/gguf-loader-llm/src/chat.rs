//! Chat templates (`tokenizer.chat_template`) rendered with minijinja the
//! way Hugging Face transformers' `apply_chat_template` renders them with
//! Jinja2 (and llama.cpp after it): `trim_blocks` and `lstrip_blocks`,
//! loop controls, Python-compatible string and dict methods
//! (`minijinja-contrib`'s pycompat), Python's `json.dumps` as `tojson`,
//! `raise_exception`, `strftime_now`, and the `{% generation %}` block.
//! Held against Jinja2 on every template llama.cpp vendors
//! (tests/chat_templates.rs).
//!
//! The template comes from the file, so it is hostile input: a render has a
//! budget of work and memory ([`FUEL`]), runs on a thread of its own with a
//! stack as deep as the budget lets values nest (a 512 MiB reservation;
//! where the address space is too small for it, a smaller stack with less
//! budget), and fails cleanly past it. Two holes remain, in minijinja (3.1): a list
//! built of shared parts (`[[x] * 100] * 100`, nested) costs little fuel,
//! and `~` or a filter that turns it into a string writes it out whole,
//! unmetered, until memory runs out; and a list doubled by `+` 33 times or
//! more (`{% set ns.l = ns.l + ns.l %}` in a loop) is made whole, 2^33
//! items and up, unmetered.
//! A caller that renders templates from untrusted files should render in a
//! process of its own with a memory limit, as `gguf-loader generate --chat`
//! does.
//!
//! ```no_run
//! use gguf_loader::MmapGGUFLoader;
//! use gguf_loader_llm::chat::{self, Message};
//! use gguf_loader_llm::Tokenizer;
//!
//! let loader = MmapGGUFLoader::new("model.gguf")?;
//! let tok = Tokenizer::from_loader(&loader)?;
//! let prompt = chat::render(&tok, &[Message::new("user", "Hi!")], true)?;
//! // The template writes BOS itself when it wants one.
//! let ids = tok.encode(&prompt, chat::add_special(&tok, &prompt), true);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The prompt is encoded with special tokens parsed (`parse_special`
//! true), so that the template's turn markers become their control tokens,
//! as llama.cpp and transformers encode it; a message's text is then
//! parsed too, and a user who writes `<|im_end|>` ends their turn with the
//! real token. Where messages come from someone else, check them first
//! ([`Tokenizer::special_in`](crate::Tokenizer::special_in) finds a special
//! token's text in them).

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use minijinja::syntax::SyntaxConfig;
use minijinja::value::{Kwargs, Value, ValueKind};
use minijinja::{context, Environment, Error as JinjaError, ErrorKind};

use crate::tokenizer::Tokenizer;

/// One chat turn.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The turn's text.
    pub content: String,
}

impl Message {
    /// A message with this role and text.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// Why a chat prompt could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// The template does not parse or fails while rendering (including
    /// the template's own `raise_exception`).
    #[error("chat template: {0}")]
    Template(String),
}

impl From<JinjaError> for ChatError {
    fn from(e: JinjaError) -> Self {
        // The error with its chain of causes, on one line; a cause repeated
        // (a template that includes itself: one per level) once, counted.
        let mut chain = vec![e.to_string()];
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            chain.push(s.to_string());
            src = s.source();
        }
        let mut parts: Vec<String> = Vec::new();
        let mut i = 0;
        while i < chain.len() {
            let same = chain[i..].iter().take_while(|c| **c == chain[i]).count();
            parts.push(if same > 1 {
                format!("{} ({same} times)", chain[i])
            } else {
                chain[i].clone()
            });
            i += same;
        }
        ChatError::Template(parts.join(": "))
    }
}

/// ChatML, the template used when the file has none and the vocabulary
/// has no Gemma turn markers (what llama.cpp falls back to).
pub const CHATML: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// Gemma's turn format (`<start_of_turn>user ... <end_of_turn>`, the
/// assistant called `model`, a system prompt folded into the first user
/// turn), used when the file has no template but the vocabulary has
/// `<start_of_turn>`, as llama.cpp's built-in `gemma` template.
pub const GEMMA: &str = "{{ bos_token }}{% for message in messages %}{% if message['role'] != 'system' %}{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}{{ '<start_of_turn>' + role + '\n' + (messages[0]['content'] | trim + '\n\n' if loop.index0 == 1 and messages[0]['role'] == 'system' else '') + message['content'] | trim + '<end_of_turn>\n' }}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}";

/// The template `tok` renders chats with: the file's
/// `tokenizer.chat_template`, else [`GEMMA`] for a vocabulary with
/// `<start_of_turn>`, else [`CHATML`]. Errs where the file's is not a
/// UTF-8 string ([`Tokenizer::chat_template_error`]).
pub fn template_of(tok: &Tokenizer) -> Result<&str, ChatError> {
    if let Some(e) = tok.chat_template_error() {
        return Err(ChatError::Template(e.to_string()));
    }
    Ok(match tok.chat_template() {
        Some(t) => t,
        None if tok.token_id("<start_of_turn>").is_some() => GEMMA,
        None => CHATML,
    })
}

/// Renders `messages` with `tok`'s template ([`template_of`]), BOS and
/// EOS texts from its vocabulary; with `add_generation_prompt`, the text
/// that opens the assistant's turn is appended. Errs when the template
/// does not parse or fails. A file without a template renders with
/// [`GEMMA`] or [`CHATML`], as llama.cpp does, silently: where
/// `tok.chat_template()` is `None`, say so to the user (the model may
/// have been trained on another format), as `gguf-loader generate --chat`
/// does.
pub fn render(
    tok: &Tokenizer,
    messages: &[Message],
    add_generation_prompt: bool,
) -> Result<String, ChatError> {
    let (bos, eos) = bos_eos_texts(tok);
    render_template(template_of(tok)?, messages, add_generation_prompt, bos, eos)
}

/// The texts of `tok`'s BOS and EOS tokens, as [`render`] gives them to the
/// template (`bos_token`, `eos_token`); empty where it has none.
pub fn bos_eos_texts(tok: &Tokenizer) -> (&str, &str) {
    let text = |id: Option<u32>| id.and_then(|i| tok.token_text(i)).unwrap_or("");
    (text(tok.bos()), text(tok.eos()))
}

/// Renders `messages` with the Jinja `template` (Hugging Face's context:
/// `messages`, `add_generation_prompt`, `bos_token`, `eos_token`, and the
/// `raise_exception` and `strftime_now` functions). Errs when the template
/// does not parse, fails, or spends more than [`FUEL`].
pub fn render_template(
    template: &str,
    messages: &[Message],
    add_generation_prompt: bool,
    bos_token: &str,
    eos_token: &str,
) -> Result<String, ChatError> {
    render_template_at(
        template,
        messages,
        add_generation_prompt,
        bos_token,
        eos_token,
        SystemTime::now(),
    )
}

/// The work one render may do: minijinja's fuel, about one unit per
/// instruction and per 64 bytes allocated (so at most about 256 MiB).
/// Every template llama.cpp vendors renders a four-turn chat on under
/// 1 000, so this leaves room for thousands of turns; a template that
/// loops without end, or builds an enormous string, stops here with an
/// error instead of taking the machine.
pub const FUEL: u64 = 4_000_000;

/// The stack a render runs on. minijinja writes, compares, hashes and
/// drops a nested value by recursion, and the fuel lets a template nest a
/// list some 470 000 deep (`{% set ns.x = [ns.x] %}` in a loop), which
/// overflows any thread's usual stack (an abort). 256 MiB held the
/// deepest such list in the tests and 128 MiB did not; this is twice
/// that, a reservation of which only the pages a render touches are ever
/// committed. Where the address space is too small for it (`ulimit -v`),
/// a render runs on a smaller stack with proportionally less fuel (the
/// nesting it allows shrinks with it): a quarter, then a sixteenth, still
/// hundreds of times what a real template takes.
const RENDER_STACK: usize = 512 << 20;

/// The stacks tried, largest first, and the fuel each allows.
const RENDER_STACKS: [(usize, u64); 3] = [
    (RENDER_STACK, FUEL),
    (RENDER_STACK / 4, FUEL / 4),
    (RENDER_STACK / 16, FUEL / 16),
];

/// [`render_template`] with `strftime_now` reading the clock `now` (UTC).
pub fn render_template_at(
    template: &str,
    messages: &[Message],
    add_generation_prompt: bool,
    bos_token: &str,
    eos_token: &str,
    now: SystemTime,
) -> Result<String, ChatError> {
    std::thread::scope(|scope| {
        let mut failed = None;
        for (stack, fuel) in RENDER_STACKS {
            let spawned = std::thread::Builder::new()
                .name("chat-template".into())
                .stack_size(stack)
                .spawn_scoped(scope, move || {
                    render_here(
                        template,
                        messages,
                        add_generation_prompt,
                        bos_token,
                        eos_token,
                        now,
                        fuel,
                    )
                });
            match spawned {
                Ok(h) => return h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
                Err(e) => failed = Some(e),
            }
        }
        let e = failed.map(|e| e.to_string()).unwrap_or_default();
        Err(ChatError::Template(format!(
            "cannot start a thread to render on, with a stack of {} MiB or less: {e}",
            RENDER_STACK >> 20
        )))
    })
}

/// [`render_template_at`] on this thread.
fn render_here(
    template: &str,
    messages: &[Message],
    add_generation_prompt: bool,
    bos_token: &str,
    eos_token: &str,
    now: SystemTime,
    fuel: u64,
) -> Result<String, ChatError> {
    let mut env = Environment::new();
    minijinja_contrib::add_to_environment(&mut env);
    env.set_unknown_method_callback(|state, value, method, args| {
        if method == "format" {
            if let Some(format) = value.as_str() {
                check_format(format, args)?;
            }
        }
        minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args)
    });
    // minijinja's `pprint` and `debug` (which Jinja2 has not) indent
    // through one adapter per level: time cubic in a value's nesting, a
    // list 5 000 deep (a few thousand units of fuel) half an hour. `pprint`
    // writes indented JSON instead, bounded as `tojson`.
    env.remove_global("debug");
    env.add_filter("pprint", |value: Value| -> Result<Value, JinjaError> {
        let json = Json {
            ensure_ascii: false,
            sort_keys: false,
            indent: Some("    ".into()),
            item: ",".into(),
            key: ": ".into(),
        };
        let mut out = String::new();
        json.write(&value, 0, &mut out)?;
        Ok(Value::from(out))
    });
    env.set_syntax(
        SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()?,
    );
    env.set_fuel(Some(fuel));
    env.add_function(
        "raise_exception",
        |msg: String| -> Result<String, JinjaError> {
            Err(JinjaError::new(ErrorKind::InvalidOperation, msg))
        },
    );
    let secs = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    env.add_function("strftime_now", move |format: String| {
        strftime(&format, secs)
    });
    env.add_filter("tojson", tojson);
    let source = without_generation_tags(template);
    env.add_template("chat", &source)?;
    let msgs: Vec<_> = messages
        .iter()
        .map(|m| context! { role => m.role.as_str(), content => m.content.as_str() })
        .collect();
    // Into a bounded buffer: a value that shares its parts (a list holding
    // one list many times over) prints as far more text than its fuel.
    let mut out = Bounded(Vec::new());
    env.get_template("chat")?.render_captured_to(
        context! {
            messages => msgs,
            add_generation_prompt => add_generation_prompt,
            bos_token => bos_token,
            eos_token => eos_token,
        },
        &mut out,
    )?;
    String::from_utf8(out.0).map_err(|_| ChatError::Template("output is not UTF-8".into()))
}

/// The longest prompt a template may write, and the longest text `tojson`
/// writes.
const MAX_TEXT: usize = 16 << 20;

/// Refuses a `str.format` whose widths or precisions (written in the
/// format, or given as arguments to nested fields, `{:>{}}`) pass
/// [`MAX_TEXT`]: minijinja-contrib pads in memory before any fuel is
/// spent, and `"{:>1000000000000}".format(1)` aborted on the allocation.
fn check_format(format: &str, args: &[Value]) -> Result<(), JinjaError> {
    let too_wide = || {
        JinjaError::new(
            ErrorKind::InvalidOperation,
            format!("str.format: a width or precision past {MAX_TEXT}"),
        )
    };
    let bytes = format.as_bytes();
    let mut nested = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'{' if bytes.get(i + 1) == Some(&b'{') => i += 2,
            b'{' => {
                // One field, nested fields in its spec included.
                let mut depth = 0usize;
                let start = i;
                while i < bytes.len() {
                    match bytes[i] {
                        b'{' => depth += 1,
                        b'}' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
                let field = &bytes[start..i.min(bytes.len())];
                nested |= field[1..].contains(&b'{');
                if let Some(colon) = field.iter().position(|&b| b == b':') {
                    for run in field[colon..].split(|b| !b.is_ascii_digit()) {
                        if run.len() > 9 || (!run.is_empty() && parse_digits(run) > MAX_TEXT) {
                            return Err(too_wide());
                        }
                    }
                }
                i += 1;
            }
            _ => i += 1,
        }
    }
    if nested {
        let mut values: Vec<Value> = Vec::new();
        for a in args {
            if a.kind() == ValueKind::Map {
                for k in a.try_iter()? {
                    values.push(a.get_item(&k)?);
                }
            } else {
                values.push(a.clone());
            }
        }
        for v in values {
            if let Some(n) = v.as_i64() {
                if n.unsigned_abs() > MAX_TEXT as u64 {
                    return Err(too_wide());
                }
            }
        }
    }
    Ok(())
}

/// The value of at most nine ASCII digits.
fn parse_digits(run: &[u8]) -> usize {
    run.iter().fold(0, |n, d| n * 10 + usize::from(d - b'0'))
}

/// A buffer that refuses to grow past [`MAX_TEXT`].
struct Bounded(Vec<u8>);

impl std::io::Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0.len() + buf.len() > MAX_TEXT {
            return Err(std::io::Error::other("the prompt would pass 16 MiB"));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `{% generation %}` … `{% endgeneration %}` (transformers' marker of the
/// assistant's tokens, rendered as its body) as `{% if true %}` …
/// `{% endif %}`, whitespace control kept, so that trimming around the
/// tags is Jinja2's.
fn without_generation_tags(template: &str) -> std::borrow::Cow<'_, str> {
    if !template.contains("generation") {
        return template.into();
    }
    let re = fancy_regex::Regex::new(r"\{%([-+]?)\s*(end)?generation\s*([-+]?)%\}")
        .expect("a valid pattern");
    re.replace_all(template, |c: &fancy_regex::Captures<'_, str>| {
        let tag = if c.get(2).is_some() {
            "endif"
        } else {
            "if true"
        };
        format!("{{%{} {tag} {}%}}", &c[1], &c[3])
    })
}

/// Python's `json.dumps(value, ensure_ascii=False, indent=None,
/// separators=None, sort_keys=False)`, the `tojson` transformers gives
/// templates (Jinja2's own escapes HTML characters; this does not).
fn tojson(value: Value, kwargs: Kwargs) -> Result<Value, JinjaError> {
    let ensure_ascii = kwargs.get::<Option<bool>>("ensure_ascii")?.unwrap_or(false);
    let sort_keys = kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(false);
    let indent = match kwargs.get::<Option<Value>>("indent")? {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => Some(match v.as_str() {
            Some(s) => s.to_string(),
            None => " ".repeat(
                usize::try_from(v)
                    .map_err(|_| JinjaError::new(ErrorKind::InvalidOperation, "bad indent"))?
                    .min(64),
            ),
        }),
    };
    let (item, key) = match kwargs.get::<Option<Vec<String>>>("separators")? {
        Some(s) if s.len() == 2 => (s[0].clone(), s[1].clone()),
        Some(_) => {
            return Err(JinjaError::new(
                ErrorKind::InvalidOperation,
                "separators must be a pair",
            ))
        }
        None if indent.is_some() => (",".into(), ": ".into()),
        None => (", ".into(), ": ".into()),
    };
    kwargs.assert_all_used()?;
    let json = Json {
        ensure_ascii,
        sort_keys,
        indent,
        item,
        key,
    };
    let mut out = String::new();
    json.write(&value, 0, &mut out)?;
    Ok(Value::from_safe_string(out))
}

/// `json.dumps`'s options.
struct Json {
    ensure_ascii: bool,
    sort_keys: bool,
    indent: Option<String>,
    item: String,
    key: String,
}

impl Json {
    fn write(&self, v: &Value, depth: usize, out: &mut String) -> Result<(), JinjaError> {
        let unsupported = |what: &str| {
            JinjaError::new(
                ErrorKind::InvalidOperation,
                format!("Object of type {what} is not JSON serializable"),
            )
        };
        if depth > 500 {
            return Err(JinjaError::new(
                ErrorKind::InvalidOperation,
                "tojson: nested too deeply",
            ));
        }
        // Values can share parts: a few small lists can stand for an
        // enormous text, which the fuel does not see being written.
        if out.len() > MAX_TEXT {
            return Err(JinjaError::new(
                ErrorKind::InvalidOperation,
                "tojson: the text would pass 16 MiB",
            ));
        }
        match v.kind() {
            ValueKind::None => out.push_str("null"),
            ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
            ValueKind::Number if v.is_integer() => write!(out, "{v}").expect("a String"),
            ValueKind::Number => out.push_str(&python_float(f64::try_from(v.clone())?)),
            ValueKind::String => self.string(v.as_str().unwrap_or_default(), out),
            ValueKind::Seq | ValueKind::Iterable => {
                let items: Vec<Value> = v.try_iter()?.collect();
                self.container(('[', ']'), items.len(), depth, out, |i, out| {
                    self.write(&items[i], depth + 1, out)
                })?;
            }
            ValueKind::Map => {
                let keys: Vec<Value> = v.try_iter()?.collect();
                let mut names = Vec::with_capacity(keys.len());
                for k in &keys {
                    names.push(match k.kind() {
                        ValueKind::String => k.as_str().unwrap_or_default().to_string(),
                        ValueKind::Number | ValueKind::Bool | ValueKind::None => {
                            let mut s = String::new();
                            self.write(k, depth + 1, &mut s)?;
                            s
                        }
                        _ => return Err(unsupported("key")),
                    });
                }
                let mut order: Vec<usize> = (0..keys.len()).collect();
                if self.sort_keys {
                    order.sort_by(|&a, &b| names[a].cmp(&names[b]));
                }
                let values = order
                    .iter()
                    .map(|&i| v.get_item(&keys[i]))
                    .collect::<Result<Vec<_>, _>>()?;
                self.container(('{', '}'), order.len(), depth, out, |i, out| {
                    self.string(&names[order[i]], out);
                    out.push_str(&self.key);
                    self.write(&values[i], depth + 1, out)
                })?;
            }
            ValueKind::Undefined => return Err(unsupported("Undefined")),
            _ => return Err(unsupported(&v.kind().to_string())),
        }
        Ok(())
    }

    /// `[a, b]` / `{…}`, with the indent and separators.
    fn container(
        &self,
        (open, close): (char, char),
        len: usize,
        depth: usize,
        out: &mut String,
        mut item: impl FnMut(usize, &mut String) -> Result<(), JinjaError>,
    ) -> Result<(), JinjaError> {
        out.push(open);
        if len == 0 {
            out.push(close);
            return Ok(());
        }
        let newline = |out: &mut String, level: usize| {
            if let Some(ind) = &self.indent {
                out.push('\n');
                for _ in 0..level {
                    out.push_str(ind);
                }
            }
        };
        for i in 0..len {
            if i > 0 {
                out.push_str(&self.item);
            }
            newline(out, depth + 1);
            item(i, out)?;
        }
        newline(out, depth);
        out.push(close);
        Ok(())
    }

    /// A JSON string as Python writes it.
    fn string(&self, s: &str, out: &mut String) {
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                c if (c as u32) < 0x20 || (self.ensure_ascii && !c.is_ascii()) => {
                    let mut units = [0u16; 2];
                    for u in c.encode_utf16(&mut units) {
                        write!(out, "\\u{u:04x}").expect("a String");
                    }
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }
}

/// A float as Python's `repr` writes it (`1.0`, `1e+16`, `1e-07`,
/// `Infinity` and `NaN` as `json.dumps` does).
fn python_float(x: f64) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    // Python switches to exponent form outside 1e-4 <= |x| < 1e16.
    let a = x.abs();
    if a != 0.0 && !(1e-4..1e16).contains(&a) {
        let s = format!("{x:e}"); // "1e16", "1.5e-7"
        let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
        let (sign, digits) = e.strip_prefix('-').map_or(("+", e), |d| ("-", d));
        return format!("{m}e{sign}{digits:0>2}");
    }
    let s = format!("{x}");
    if s.contains('.') {
        s
    } else {
        s + ".0"
    }
}

/// `strftime(format)` at `secs` past the Unix epoch, in UTC, for the
/// conversions chat templates use (`%Y %m %d %B %b %A %a %H %M %S %y %j
/// %p %I %e %%`); others are written as they are, as Python would not.
fn strftime(format: &str, secs: i64) -> String {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    const DAYS: [&str; 7] = [
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
    ];
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let weekday = (days + 3).rem_euclid(7) as usize; // 1970-01-01 was a Thursday
    let yday = days - days_from_civil(y, 1, 1) + 1;
    let (hh, mm, ss) = (tod / 3600, tod / 60 % 60, tod % 60);
    let mut out = String::new();
    let mut it = format.chars();
    while let Some(c) = it.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let Some(f) = it.next() else {
            out.push('%');
            break;
        };
        let _ = match f {
            'Y' => write!(out, "{y}"),
            'y' => write!(out, "{:02}", y.rem_euclid(100)),
            'm' => write!(out, "{m:02}"),
            'd' => write!(out, "{d:02}"),
            'e' => write!(out, "{d:2}"),
            'B' => write!(out, "{}", MONTHS[m as usize - 1]),
            'b' | 'h' => write!(out, "{}", &MONTHS[m as usize - 1][..3]),
            'A' => write!(out, "{}", DAYS[weekday]),
            'a' => write!(out, "{}", &DAYS[weekday][..3]),
            'j' => write!(out, "{yday:03}"),
            'H' => write!(out, "{hh:02}"),
            'I' => write!(out, "{:02}", (hh + 11) % 12 + 1),
            'p' => write!(out, "{}", if hh < 12 { "AM" } else { "PM" }),
            'M' => write!(out, "{mm:02}"),
            'S' => write!(out, "{ss:02}"),
            '%' => write!(out, "%"),
            other => write!(out, "%{other}"),
        };
    }
    out
}

/// (year, month, day) of the day `z` days after 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Days from 1970-01-01 to (y, m, d) (Howard Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The `add_special` to encode a rendered `prompt` with: false when the
/// tokenizer adds BOS and the template already wrote it (Gemma's
/// `{{ bos_token }}`), so that BOS does not come twice; true otherwise.
pub fn add_special(tok: &Tokenizer, prompt: &str) -> bool {
    let wrote_bos = tok
        .bos()
        .and_then(|b| tok.token_text(b))
        .is_some_and(|t| prompt.starts_with(t));
    !(tok.add_bos() && wrote_bos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chatml() {
        let m = [
            Message::new("user", "Hi"),
            Message::new("assistant", "Hello"),
        ];
        let s = render_template(CHATML, &m, true, "", "").unwrap();
        assert_eq!(
            s,
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn gemma_with_system() {
        let m = [
            Message::new("system", "Be brief."),
            Message::new("user", " Hi "),
            Message::new("assistant", "Hello"),
        ];
        let s = render_template(GEMMA, &m, true, "<bos>", "<eos>").unwrap();
        assert_eq!(
            s,
            "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello<end_of_turn>\n<start_of_turn>model\n"
        );
    }

    #[test]
    fn python_methods_and_raise() {
        let t = "{{ messages[0]['content'].strip().upper() }}{% if messages|length > 1 %}{{ raise_exception('only one') }}{% endif %}";
        let one = [Message::new("user", "  hi ")];
        assert_eq!(render_template(t, &one, false, "", "").unwrap(), "HI");
        let two = [one[0].clone(), one[0].clone()];
        let e = render_template(t, &two, false, "", "").unwrap_err();
        assert!(e.to_string().contains("only one"), "{e}");
        let e = render_template("{% for %}", &one, false, "", "").unwrap_err();
        assert!(e.to_string().starts_with("chat template: "), "{e}");
    }

    /// A template that includes itself fails at the recursion limit with a
    /// cause per level: said once, counted (it was 2.8 kB on one line).
    #[test]
    fn a_repeated_cause_is_said_once() {
        let one = [Message::new("user", "hi")];
        let e = render_template("{% include 'chat' %}", &one, false, "", "").unwrap_err();
        let e = e.to_string();
        assert!(e.len() < 300, "{e}");
        assert!(e.contains(" times): "), "{e}");
        assert!(e.ends_with("recursion limit exceeded (in chat:1)"), "{e}");
    }
}
