//! Chat templates (`tokenizer.chat_template`) rendered with minijinja, with
//! Python-compatible string and dict methods (`minijinja-contrib`'s
//! pycompat) as Hugging Face's Jinja templates expect.
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
        // The error with its chain of causes, on one line.
        let mut msg = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            msg.push_str(": ");
            msg.push_str(&s.to_string());
            src = s.source();
        }
        ChatError::Template(msg)
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
/// `<start_of_turn>`, else [`CHATML`].
pub fn template_of(tok: &Tokenizer) -> &str {
    match tok.chat_template() {
        Some(t) => t,
        None if tok.token_id("<start_of_turn>").is_some() => GEMMA,
        None => CHATML,
    }
}

/// Renders `messages` with `tok`'s template ([`template_of`]), BOS and
/// EOS texts from its vocabulary; with `add_generation_prompt`, the text
/// that opens the assistant's turn is appended. Errs when the template
/// does not parse or fails.
pub fn render(
    tok: &Tokenizer,
    messages: &[Message],
    add_generation_prompt: bool,
) -> Result<String, ChatError> {
    let text = |id: Option<u32>| id.and_then(|i| tok.token_text(i)).unwrap_or("");
    render_template(
        template_of(tok),
        messages,
        add_generation_prompt,
        text(tok.bos()),
        text(tok.eos()),
    )
}

/// Renders `messages` with the Jinja `template` (Hugging Face's context:
/// `messages`, `add_generation_prompt`, `bos_token`, `eos_token`, and the
/// `raise_exception` function). Errs when the template does not parse or
/// fails.
pub fn render_template(
    template: &str,
    messages: &[Message],
    add_generation_prompt: bool,
    bos_token: &str,
    eos_token: &str,
) -> Result<String, ChatError> {
    let mut env = Environment::new();
    minijinja_contrib::add_to_environment(&mut env);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function(
        "raise_exception",
        |msg: String| -> Result<String, JinjaError> {
            Err(JinjaError::new(ErrorKind::InvalidOperation, msg))
        },
    );
    env.add_template("chat", template)?;
    let msgs: Vec<_> = messages
        .iter()
        .map(|m| context! { role => m.role.as_str(), content => m.content.as_str() })
        .collect();
    let out = env.get_template("chat")?.render(context! {
        messages => msgs,
        add_generation_prompt => add_generation_prompt,
        bos_token => bos_token,
        eos_token => eos_token,
    })?;
    Ok(out)
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
}
