"""``GGUFFile.tokenizer()``: llama.cpp's own tokenizer tests pass through
it, it gives the CLI's ids on the real models, decodes back, renders chat
templates as Hugging Face's Jinja does, and refuses what it cannot do with
clear exceptions."""

import os
import pathlib
import subprocess
import warnings

import numpy as np
import pytest

import gguf_loader

# The vocabularies of llama.cpp's tokenizer tests this package passes
# (crates/gguf-loader-llm/tests/vocab.rs has the same list).
VOCABS = {
    "command-r": "gpt2",
    "deepseek-coder": "gpt2",
    "deepseek-llm": "gpt2",
    "falcon": "gpt2",
    "gpt-2": "gpt2",
    "llama-bpe": "gpt2",
    "mpt": "gpt2",
    "qwen2": "gpt2",
    "qwen35": "gpt2",
    "refact": "gpt2",
    "starcoder": "gpt2",
    "llama-spm": "llama",
    "phi-3": "llama",
    "gemma-4": "gpt2",
    "bert-bge": "bert",
}


def vocab_dir() -> pathlib.Path:
    path = os.environ.get("GGUF_LOADER_VOCAB_TESTS")
    if path is None:
        cache = os.environ.get("GGUF_LOADER_CACHE", os.path.expanduser("~/.cache/gguf-loader"))
        path = os.path.join(cache, "vocab-tests")
    path = pathlib.Path(path)
    if not (path / "ggml-vocab-gpt-2.gguf.out").is_file():
        message = f"llama.cpp's vocab tests not found in {path} (run scripts/fetch-vocab-tests.sh)"
        if os.environ.get("GGUF_LOADER_REQUIRE_MODEL"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.mark.parametrize("name", sorted(VOCABS))
def test_llama_cpp_tokenizer_tests(name):
    """Every text of llama.cpp's test-tokenizer-0 gives its ids (no BOS,
    special text not parsed, as that test calls it)."""
    path = vocab_dir() / f"ggml-vocab-{name}.gguf"
    tok = gguf_loader.open(path).tokenizer()
    assert tok.model == VOCABS[name]
    texts = path.with_suffix(".gguf.inp").read_text(encoding="utf-8").split("\n__ggml_vocab_test__\n")
    ids = [[int(t) for t in line.split()] for line in path.with_suffix(".gguf.out").read_text().splitlines()]
    assert len(ids) > 10
    for text, want in zip(texts, ids):
        assert tok.encode(text) == want, (name, text)


def cli_ids(cli, model, text, *flags):
    r = subprocess.run(
        [cli, "tokenize", str(model), *flags], input=text.encode(), capture_output=True, check=True
    )
    return [int(t) for t in r.stdout.split()]


TEXTS = [
    "Hello, world! The capital of France is Paris.",
    "  leading spaces, tabs\tand\nnew lines\n\n",
    "<|im_start|>user\nHi<|im_end|> <start_of_turn>model",
    "数学 — émigré naïve café 🙂 ∑ x² ",
    "",
]


def test_real_models_match_the_cli(cli, real_model):
    tok = gguf_loader.open(real_model).tokenizer()
    for text in TEXTS:
        for flags in [(), ("--add-special",), ("--parse-special",), ("--add-special", "--parse-special")]:
            got = tok.encode(
                text, add_special="--add-special" in flags, parse_special="--parse-special" in flags
            )
            assert got == cli_ids(cli, real_model, text, *flags), (text, flags)
        ids = tok.encode(text)
        # SentencePiece (Gemma's) adds a space in front that decoding drops.
        assert tok.decode(ids) == text or tok.decode(ids) == " " + text, text
        assert tok.decode_bytes(ids).decode("utf-8") == tok.decode(ids)
        assert b"".join(tok.token_to_piece(i) for i in ids).decode("utf-8").strip() == text.strip()


def test_encode_batch_is_encode_of_each(real_model):
    tok = gguf_loader.open(real_model).tokenizer()
    texts = TEXTS * 50 + ["x" * 100_000, "Paris " * 1000]
    for add, parse in [(False, False), (True, False), (False, True), (True, True)]:
        want = [tok.encode(t, add_special=add, parse_special=parse) for t in texts]
        assert tok.encode_batch(texts, add_special=add, parse_special=parse) == want
    # Any iterable of str; an empty one gives an empty list.
    assert tok.encode_batch(t for t in TEXTS) == [tok.encode(t) for t in TEXTS]
    assert tok.encode_batch([]) == [] and tok.encode_batch(()) == []
    with pytest.raises(TypeError, match="iterable of str, not one str"):
        tok.encode_batch("one text")
    with pytest.raises(TypeError, match=r"texts\[1\] must be a str, not bytes"):
        tok.encode_batch(["a", b"b"])
    with pytest.raises(TypeError):
        tok.encode_batch(None)
    with pytest.raises(UnicodeEncodeError):
        tok.encode_batch(["a", "\ud800"])


def test_ctrl_c_stops_a_long_encode_batch(smollm2):
    """A signal whose handler raises KeyboardInterrupt during a batch of
    58 MB of text (seconds of work): it comes out between two pieces."""
    from conftest import interrupted

    tok = gguf_loader.open(smollm2).tokenizer()
    rows = ["Paris " * 200_000] * 48
    completed, elapsed = interrupted(0.2, lambda: tok.encode_batch(rows))
    assert not completed, f"58 MB encoded in {elapsed:.2f} s, before the signal"
    # At most a piece of 4 MB after the signal (a fraction of a second
    # natively; a minute leaves room for emulation, as under qemu).
    assert elapsed < 60


def test_properties_and_special_tokens(smollm2, gemma):
    s = gguf_loader.open(smollm2).tokenizer()
    assert (s.model, s.pre, len(s), s.vocab_size) == ("gpt2", "smollm", 49152, 49152)
    assert s.token_text(s.eos) == "<|im_end|>" and s.is_eog(s.eos) and s.eos in s.eog
    assert s.token_id("<|im_start|>") == 1 and s.token_id("no such token") is None
    assert not s.is_eog(1000) and not s.is_eog(-1)
    assert "SmolLM2" in repr(s) or "gpt2" in repr(s)
    g = gguf_loader.open(gemma).tokenizer()
    assert g.model == "llama" and g.add_bos and g.bos == 2 and len(g) == 262144
    ids = g.encode("Hi", add_special=True)
    assert ids[0] == g.bos and g.decode(ids, remove_special=True) == "Hi"
    assert g.decode(ids, unparse_special=True) == "<bos>Hi"
    assert g.token_to_piece(g.bos) == b"" and g.token_to_piece(g.bos, special=True) == b"<bos>"
    # numpy ids are ids.
    assert g.decode(np.array(ids)) == g.decode(ids)


def render_with_jinja2(tok, messages, add_generation_prompt):
    """The template as Hugging Face's apply_chat_template renders it."""
    import jinja2  # scripts/requirements.txt
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.globals["raise_exception"] = raise_exception
    text = lambda i: tok.token_text(i) if i is not None else ""
    return env.from_string(tok.chat_template).render(
        messages=messages,
        add_generation_prompt=add_generation_prompt,
        bos_token=text(tok.bos),
        eos_token=text(tok.eos),
    )


CHAT = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "What is 2 + 2?"},
    {"role": "assistant", "content": "4."},
    {"role": "user", "content": "And 3 + 3?"},
]


# llama.cpp's built-in Gemma format, for a file without a template (the
# cached Gemma-3-270M is the base model, which has none).
GEMMA_CHAT = (
    "<bos><start_of_turn>user\nYou are terse.\n\nWhat is 2 + 2?<end_of_turn>\n"
    "<start_of_turn>model\n4.<end_of_turn>\n<start_of_turn>user\nAnd 3 + 3?<end_of_turn>\n"
)


def test_chat_templates_render_as_jinja2(cli, real_model):
    tok = gguf_loader.open(real_model).tokenizer()
    for prompt in (True, False):
        if tok.chat_template is None:
            with pytest.warns(RuntimeWarning, match="rendered with Gemma's turn format"):
                got = tok.apply_chat_template(CHAT, add_generation_prompt=prompt)
            assert got == GEMMA_CHAT + ("<start_of_turn>model\n" if prompt else "")
        else:
            got = tok.apply_chat_template(CHAT, add_generation_prompt=prompt)
            assert got == render_with_jinja2(tok, CHAT, prompt), prompt
    # Tokenized as `generate --chat` does it: specials parsed, BOS once.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # Gemma's: no template
        text = tok.apply_chat_template(CHAT[1:2])
        ids = tok.apply_chat_template(CHAT[1:2], tokenize=True)
    assert ids == cli_ids(cli, real_model, text, "--parse-special", *(
        ["--add-special"] if not (tok.add_bos and text.startswith(tok.token_text(tok.bos))) else []
    ))
    if tok.add_bos:
        assert ids.count(tok.bos) == 1 and ids[0] == tok.bos


def test_errors(smollm2):
    from conftest import FIXTURES

    with pytest.raises(ValueError, match=r"all_types_le\.gguf: tokenizer: metadata key 'tokenizer\.ggml\.model' is missing"):
        gguf_loader.open(FIXTURES / "all_types_le.gguf").tokenizer()
    f = gguf_loader.open(smollm2)
    tok = f.tokenizer()
    f.close()  # the tokenizer keeps nothing of the file
    assert tok.decode(tok.encode("still here")) == "still here"
    for bad in ([49152], [-1], [2**40]):
        with pytest.raises(ValueError, match="outside the vocabulary"):
            tok.decode(bad)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tok.token_to_piece(49152)
    with pytest.raises(TypeError):
        tok.encode(b"bytes")
    with pytest.raises(TypeError):
        tok.decode("1 2 3")
    with pytest.raises(TypeError, match=r"messages\[0\].*no 'content'"):
        tok.apply_chat_template([{"role": "user"}])
    with pytest.raises(TypeError, match=r"messages\[1\]\['content'\] must be a str"):
        tok.apply_chat_template([{"role": "user", "content": "a"}, {"role": "user", "content": 3}])
    with pytest.raises(TypeError, match="sequence of mappings"):
        tok.apply_chat_template("hi")


def test_no_template_falls_back_with_a_warning():
    """The fixture with a tokenizer and no chat template: ChatML, warned."""
    from conftest import FIXTURES

    tok = gguf_loader.open(FIXTURES / "tokenizer_like.gguf").tokenizer()
    assert tok.chat_template is None
    with pytest.warns(RuntimeWarning, match="no tokenizer.chat_template: rendered with ChatML"):
        text = tok.apply_chat_template([{"role": "user", "content": "Hi"}])
    assert text == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tok.encode("no warning here")


def test_streams_give_whole_characters(real_model):
    """Ids pushed one at a time give decode's text (before its clean-up of
    spaces), a character split across byte tokens coming out whole."""
    tok = gguf_loader.open(real_model).tokenizer()
    for text in TEXTS + ["𝔘𝔫𝔦𝔠𝔬𝔡𝔢 \U0001f9ea\u0301 ok", "x" * 300]:
        ids = tok.encode(text)
        s = tok.stream()
        parts = [s.push(i) for i in ids] + [s.finish()]
        assert all("\ufffd" not in p for p in parts), (text, parts)
        joined = "".join(parts)
        assert joined == tok.decode(ids), text
    # A prompt's continuation keeps its leading space (SentencePiece).
    ids = tok.encode(" world")
    s = tok.stream(continuing=True)
    assert "".join(s.push(i) for i in ids) + s.finish() == b"".join(tok.token_to_piece(i) for i in ids).decode()
    # A lone byte of a character, never completed: U+FFFD at the end.
    byte_ids = [i for i in range(len(tok)) if len(tok.token_to_piece(i)) == 1 and tok.token_to_piece(i)[0] >= 0xF0]
    if byte_ids:
        s = tok.stream()
        assert s.push(byte_ids[0]) == "" and s.finish() == "\ufffd"
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tok.stream().push(len(tok))
    with pytest.raises(TypeError):
        tok.stream().push("a")


def _same_tokenizer(a, b):
    names = ["model", "pre", "vocab_size", "bos", "eos", "eot", "eog", "add_bos", "add_eos", "chat_template", "warnings"]
    assert [getattr(b, n) for n in names] == [getattr(a, n) for n in names]
    for text in TEXTS:
        for add, parse in [(False, False), (True, True)]:
            ids = a.encode(text, add_special=add, parse_special=parse)
            assert b.encode(text, add_special=add, parse_special=parse) == ids, text
            assert b.decode(ids, unparse_special=True) == a.decode(ids, unparse_special=True)


def test_pickles_without_the_file(real_model, tmp_path):
    """A pickle holds the keys the tokenizer was built from (a small GGUF of
    them), not a path: another process rebuilds the same tokenizer after
    the model's file is gone. Copies are the tokenizer itself."""
    import copy
    import pickle
    import shutil

    moved = tmp_path / real_model.name
    shutil.copyfile(real_model, moved)
    with gguf_loader.open(moved) as f:
        tok = f.tokenizer()
    data = pickle.dumps(tok)
    # A tenth of the model file at most (the vocabulary, not the weights).
    assert len(data) < moved.stat().st_size / 10
    again = pickle.loads(data)
    assert isinstance(again, gguf_loader.Tokenizer)
    _same_tokenizer(tok, again)
    assert copy.copy(tok) is tok and copy.deepcopy(tok) is tok
    moved.unlink()
    _same_tokenizer(tok, pickle.loads(data))
    # A subclass comes back as itself.
    mine = pickle.loads(pickle.dumps(MyTokenizer(tok._native)))
    assert type(mine) is MyTokenizer and mine.shout("hi") == tok.encode("HI")


class MyTokenizer(gguf_loader.Tokenizer):
    __slots__ = ()

    def shout(self, text):
        return self.encode(text.upper())


def test_a_pickled_tokenizer_loads_in_a_new_interpreter(smollm2):
    """A fresh interpreter (as a spawned worker) rebuilds it from the pickle
    alone. (Not under qemu: its interpreter cannot be exec'd there.)"""
    import pickle
    import sys

    tok = gguf_loader.open(smollm2).tokenizer()
    code = (
        "import pickle, sys; t = pickle.loads(sys.stdin.buffer.read()); "
        f"print(t.encode({TEXTS[0]!r}, add_special=True))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], input=pickle.dumps(tok), capture_output=True, check=True
    )
    assert out.stdout.decode().strip() == str(tok.encode(TEXTS[0], add_special=True))


def test_every_vocabulary_pickles():
    """Every tokenizer kind of llama.cpp's tests (BPE with each
    pre-tokenizer, SentencePiece, WordPiece) comes back the same."""
    import pickle

    for name in sorted(VOCABS):
        tok = gguf_loader.open(vocab_dir() / f"ggml-vocab-{name}.gguf").tokenizer()
        _same_tokenizer(tok, pickle.loads(pickle.dumps(tok)))


def test_a_broken_pickle_is_a_value_error(smollm2):
    """Bytes that are no tokenizer's GGUF raise ValueError, never crash."""
    from gguf_loader import _native
    from gguf_loader._tokenizer import _from_gguf

    data = gguf_loader.open(smollm2).tokenizer()._native.gguf()
    for bad in [b"", b"GGUF", data[: len(data) // 2], b"\0" * 64]:
        with pytest.raises(ValueError):
            _from_gguf(bad)
    with pytest.raises(ValueError, match="tokenizer.ggml.model"):
        _native.tokenizer_from_gguf(data[:4] + (3).to_bytes(4, "little") + bytes(16))
