#!/usr/bin/env python3
"""Golden chat prompts: every chat template llama.cpp vendors
(models/templates/*.jinja in the pinned llama-cpp-python sdist, extracted by
scripts/fetch-chat-templates.sh) rendered by Jinja2 exactly as Hugging Face
transformers' `apply_chat_template` renders them (its sandboxed environment,
trim_blocks and lstrip_blocks, loop controls, its `tojson`,
`raise_exception` and `strftime_now`), for a few fixed conversations.
crates/gguf-loader-llm/tests/chat_templates.rs renders the same with
minijinja (`gguf_loader_llm::chat`) and compares.

The clock is fixed (2026-01-02 03:04:05 UTC) so that templates that print
today's date give the same text on both sides.

    python3 scripts/chat_templates_golden.py "$(scripts/fetch-chat-templates.sh)"

writes crates/gguf-loader-llm/tests/golden/chat_templates.json: the clock,
BOS and EOS texts and conversations, then for each template file its size,
its SHA-256 and, for each conversation, the rendered text or
{"error": message} where the template refuses it (both sides must refuse).
"""

import datetime
import hashlib
import json
import pathlib
import sys

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

NOW = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
BOS, EOS = "<BOS>", "<EOS>"
CONVERSATIONS = {
    "user": (
        [{"role": "user", "content": "Hello!"}],
        True,
    ),
    "system_and_turns": (
        [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": "What is 2+2?"},
        ],
        True,
    ),
    "turns_no_prompt": (
        [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello."},
        ],
        False,
    ),
}


class Generation(jinja2.ext.Extension):
    """transformers' AssistantTracker, less the tracking: `{% generation %}`
    ... `{% endgeneration %}` renders its body."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        call = self.call_method("_body")
        return jinja2.nodes.CallBlock(call, [], [], body).set_lineno(lineno)

    def _body(self, caller):
        return caller()


def environment():
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(
            x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
        )

    def strftime_now(fmt):
        return NOW.strftime(fmt)

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[Generation, jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    folder = pathlib.Path(sys.argv[1])
    env = environment()
    templates = {}
    for path in sorted(folder.glob("*.jinja")):
        source = path.read_text(encoding="utf-8")
        entry = {
            "bytes": len(source.encode()),
            "sha256": hashlib.sha256(source.encode()).hexdigest(),
        }
        try:
            template = env.from_string(source)
        except jinja2.TemplateError as e:
            entry["error"] = f"parse: {e}"
            templates[path.name] = entry
            continue
        for name, (messages, gen) in CONVERSATIONS.items():
            try:
                entry[name] = template.render(
                    messages=messages,
                    add_generation_prompt=gen,
                    bos_token=BOS,
                    eos_token=EOS,
                )
            except Exception as e:  # the template's own refusals, and errors
                entry[name] = {"error": f"{type(e).__name__}: {e}"}
        templates[path.name] = entry
    golden = {
        "now": int(NOW.timestamp()),
        "bos_token": BOS,
        "eos_token": EOS,
        "conversations": {
            name: {"messages": m, "add_generation_prompt": g}
            for name, (m, g) in CONVERSATIONS.items()
        },
        "templates": templates,
    }
    out = pathlib.Path(__file__).resolve().parent.parent / (
        "crates/gguf-loader-llm/tests/golden/chat_templates.json"
    )
    out.write_text(json.dumps(golden, indent=1, ensure_ascii=False, sort_keys=True) + "\n")
    rendered = sum(
        1
        for e in templates.values()
        for k, v in e.items()
        if k in CONVERSATIONS and isinstance(v, str)
    )
    print(f"{out}: {len(templates)} templates, {rendered} prompts rendered")


if __name__ == "__main__":
    main()
