#!/usr/bin/env python3
"""Writes tests/golden/llama_cpp_tokens.json: llama.cpp's own tokenization
of fixed prompts with each real model's vocabulary (llama_tokenize with
every add_special/parse_special combination) and its detokenization
(llama_detokenize), through the ctypes bindings of the llama-cpp-python
sdist over the libllama that scripts/llama_cpp_golden.sh --build made.
Run by scripts/llama_cpp_tokens.sh; the test tokenizer_golden.rs (crate
gguf-loader-llm) compares our Tokenizer with this file."""

import argparse
import ctypes
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from llama_cpp_golden import load_bindings  # noqa: E402

PROMPTS = [
    "",
    "Hello world",
    " Hello world",
    "Hello, world! How are you today?",
    "The capital of France is",
    "  two leading spaces, trailing  ",
    "line one\nline two\n\n\nafter three newlines\r\n",
    "\ttabs\tand    runs     of spaces",
    "Numbers: 1 12 123 1234 12345 3.14159 -42 1e10",
    "I'm sure you'll see they've done it, haven't they?",
    "Ünïcödé: naïve café, Straße, Ελληνικά, русский, 日本語, 한국어, العربية",
    "Emoji: 🦙🚀😀👍🏽 and 👨‍👩‍👧 (ZWJ)",
    "def f(x):\n    return x ** 2  # square\n",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n",
    "<s>[INST] text with <b>html</b> & </s> markers [/INST]",
    "<|endoftext|><|endoftext|>",
    "<bos><eos><pad><unk>",
    "a" * 40 + " " + "ab" * 20,
    "\u00a0non-breaking\u2003em space\u200bzero width",
]


def tokenize(L, vocab, text: bytes, add_special: bool, parse_special: bool):
    cap = len(text) + 16
    buf = (ctypes.c_int32 * cap)()
    n = L.llama_tokenize(vocab, text, len(text), buf, cap, add_special, parse_special)
    if n < 0:
        raise RuntimeError(f"llama_tokenize needs {-n}")
    return list(buf[:n])


def detokenize(L, vocab, ids, remove_special: bool, unparse_special: bool) -> str:
    arr = (ctypes.c_int32 * max(len(ids), 1))(*ids)
    cap = 64 + 64 * len(ids)
    out = ctypes.create_string_buffer(cap)
    n = L.llama_detokenize(vocab, arr, len(ids), out, cap, remove_special, unparse_special)
    if n < 0:
        raise RuntimeError(f"llama_detokenize needs {-n}")
    return out.raw[:n].decode("utf-8", errors="replace")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bindings", required=True, type=Path)
    ap.add_argument("--version", required=True)
    ap.add_argument("--sdist-sha256", required=True)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("models", nargs="+", help="name=path")
    args = ap.parse_args()

    L = load_bindings(args.bindings)
    L.llama_backend_init()
    doc = {
        "generator": "scripts/llama_cpp_tokens.sh",
        "llama_cpp_python": args.version,
        "sdist_sha256": args.sdist_sha256,
        "models": {},
    }
    for spec in args.models:
        name, path = spec.split("=", 1)
        mp = L.llama_model_default_params()
        mp.vocab_only = True
        model = L.llama_model_load_from_file(path.encode(), mp)
        if not model:
            raise RuntimeError(f"cannot load {path}")
        vocab = L.llama_model_get_vocab(model)
        cases = []
        for text in PROMPTS:
            raw = text.encode()
            for add_special in (False, True):
                for parse_special in (False, True):
                    ids = tokenize(L, vocab, raw, add_special, parse_special)
                    cases.append(
                        {
                            "text": text,
                            "add_special": add_special,
                            "parse_special": parse_special,
                            "ids": ids,
                            # remove_special = add_special, unparse_special = parse_special
                            "decoded": detokenize(L, vocab, ids, add_special, parse_special),
                        }
                    )
        doc["models"][name] = {
            "bos": L.llama_vocab_bos(vocab),
            "eos": L.llama_vocab_eos(vocab),
            "eot": L.llama_vocab_eot(vocab),
            "n_tokens": L.llama_vocab_n_tokens(vocab),
            "eog": [i for i in range(L.llama_vocab_n_tokens(vocab)) if L.llama_vocab_is_eog(vocab, i)],
            "cases": cases,
        }
        L.llama_model_free(model)
    args.out.write_text(json.dumps(doc, ensure_ascii=False, indent=1) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
