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
import random
import re
import shutil
import sys
import tempfile
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


# Pieces of the random texts (--random): words, whitespace of every kind,
# what SentencePiece's NFKC charsmap rewrites (full-width and compatibility
# forms, ligatures, circled and super/subscript digits, half-width kana,
# combining marks), scripts, emoji and special-token texts.
PIECES = [
    "the", "The", "quick", "brown", "fox", "ing", "tion", "un", "re", "a", "I",
    "Hello", "world", "naïve", "café", "Straße", "déjà", "vu", "élan",
    " ", " ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", "\u00a0", "\u2003", "\u3000",
    "\u200b", "\u200d", "\ufeff", "\u0000", "\u0007", "\u001f", "\u007f", "\u0085",
    "Ｈｅｌｌｏ", "ＡＢＣ", "１２３", "！", "？", "（", "）", "～",
    "ﬁ", "ﬂ", "ﬀ", "Ⅻ", "ⅷ", "①", "⑩", "²", "³", "₂", "½", "㎏", "㍿", "™", "℃", "…",
    "ｶﾀｶﾅ", "ﾊﾟ", "ｶﾞ", "e\u0301", "a\u0308", "n\u0303", "\u0301", "\u0327",
    "Ελληνικά", "русский", "日本語", "中文", "한국어", "\u1100\u1161", "العربية", "עברית",
    "हिन्दी", "ภาษาไทย", "Tiếng Việt", "ქართული", "Ꭰ", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "𝟘𝟙",
    "🦙", "🚀", "😀", "👍🏽", "👨‍👩‍👧", "🇫🇷",
    "<s>", "</s>", "<pad>", "<unk>", "<mask>", "<ma", "<", ">", "[CLS]",
    "1", "12", "3.14", "-42", "1e10", "$", "%", "&", "@", "#", "_", "▁", "▁▁",
    ".", ",", "!", "?", ":", ";", "'", "\"", "-", "—", "–", "«", "»", "„",
]


def random_texts(n: int, seed: int):
    rng = random.Random(seed)
    texts = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(1, 14)):
            r = rng.random()
            if r < 0.8:
                parts.append(rng.choice(PIECES))
            elif r < 0.9:
                # A random code point of the BMP (no surrogates).
                c = rng.randint(0x20, 0xFFFD)
                parts.append(chr(c) if not 0xD800 <= c <= 0xDFFF else "x")
            else:
                parts.append(chr(rng.randint(0x10000, 0x2FFFF)))
        texts.append("".join(parts))
    return texts


def inp_texts(path: Path):
    """The texts of a llama.cpp tokenizer test's `.inp` file."""
    texts = path.read_text().split("\n__ggml_vocab_test__\n")
    return [t for t in texts if t] if texts else []


# Variants of a base vocabulary (--variant NAME=BASE): its flags changed,
# its charsmap dropped, or some of its tokens made user-defined (named by
# text; those the vocabulary lacks are left out). The golden file records
# each variant's changes, so that a test makes the same file.
VARIANTS = {
    "plain": {"add_space_prefix": False, "remove_extra_whitespaces": False},
    "nomap": {"charsmap": False, "remove_extra_whitespaces": False},
    "user": {
        "remove_extra_whitespaces": False,
        "user_defined": ["Hello", "ab", "é", "ing", "▁the", "<mask>", "▁", "日本", "ﬁ", "1"],
    },
}


def make_variant(gguf_py: Path, base: Path, kind: str, out: Path):
    """Copies `base` to `out` with the changes of VARIANTS[kind], patched in
    place (a dropped key is renamed); returns the changes as recorded."""
    sys.path.insert(0, str(gguf_py))
    from gguf import GGUFReader  # noqa: E402

    spec = VARIANTS[kind]
    shutil.copyfile(base, out)
    r = GGUFReader(out, "r+")
    rec = {"add_space_prefix": None, "remove_extra_whitespaces": None, "charsmap": True,
           "user_defined": []}
    for key in ("add_space_prefix", "remove_extra_whitespaces"):
        if key in spec:
            f = r.fields[f"tokenizer.ggml.{key}"]
            f.parts[f.data[0]][0] = spec[key]
            rec[key] = spec[key]
    if spec.get("charsmap") is False:
        f = r.fields["tokenizer.ggml.precompiled_charsmap"]
        f.parts[1][-1] = ord("X")  # ...precompiled_charsmaX: not read
        rec["charsmap"] = False
    if "user_defined" in spec:
        toks = r.fields["tokenizer.ggml.tokens"]
        ids = {}
        for i, d in enumerate(toks.data):
            ids[bytes(toks.parts[d]).decode("utf-8", errors="replace")] = i
        types = r.fields["tokenizer.ggml.token_type"]
        for t in spec["user_defined"]:
            if t in ids:
                types.parts[types.data[ids[t]]][0] = 4  # USER_DEFINED
                rec["user_defined"].append(ids[t])
    r.data.flush()
    del r
    return rec


def dump(doc) -> str:
    """JSON with each case on one line."""
    cases = {}
    for name, m in doc["models"].items():
        cases[name] = m["cases"]
        m["cases"] = f"@@cases {name}@@"
    s = json.dumps(doc, ensure_ascii=False, indent=1)
    for name, cs in cases.items():
        doc["models"][name]["cases"] = cs
        lines = ",\n".join("    " + json.dumps(c, ensure_ascii=False) for c in cs)
        s = s.replace(json.dumps(f"@@cases {name}@@"), "[\n" + lines + "\n   ]")
    return re.sub(r"\[\s*(-?\d+(?:,\s*-?\d+)*)\s*\]",
                  lambda m: "[" + ", ".join(m.group(1).replace(",", " ").split()) + "]", s)


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
    ap.add_argument("--inp", type=Path, action="append", default=[],
                    help="also the texts of this .inp file (every add/parse combination)")
    ap.add_argument("--random", type=int, default=0,
                    help="also this many seeded random texts (add_special and "
                    "parse_special both off, and both on)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--generator", default="scripts/llama_cpp_tokens.sh")
    ap.add_argument("--variant", action="append", default=[],
                    help="KIND=BASE: a variant of model BASE (one of VARIANTS), "
                    "on the prompts and the first 100 random texts")
    ap.add_argument("--gguf-py", type=Path, help="gguf-py, to patch variants")
    ap.add_argument("models", nargs="+", help="name=path")
    args = ap.parse_args()
    prompts = list(PROMPTS)
    for f in args.inp:
        prompts += [t for t in inp_texts(f) if t not in prompts]
    combos = [(a, p) for a in (False, True) for p in (False, True)]
    texts = [(t, combos) for t in prompts]
    texts += [(t, [(False, False), (True, True)]) for t in random_texts(args.random, args.seed)]

    L = load_bindings(args.bindings)
    L.llama_backend_init()
    doc = {
        "generator": args.generator,
        "llama_cpp_python": args.version,
        "sdist_sha256": args.sdist_sha256,
        "models": {},
    }
    tmp = Path(tempfile.mkdtemp())
    runs = []
    for spec in args.models:
        name, path = spec.split("=", 1)
        runs.append((name, path, texts, None))
    bases = dict(r[:2] for r in runs)
    for spec in args.variant:
        kind, base = spec.split("=", 1)
        out = tmp / f"{base}-{kind}.gguf"
        rec = make_variant(args.gguf_py, Path(bases[base]), kind, out)
        rec["base"] = base
        few = [(t, [(False, False), (True, True)]) for t, _ in texts]
        runs.append((f"{base}-{kind}", str(out), few[: len(prompts) + 100], rec))
    for name, path, texts, rec in runs:
        mp = L.llama_model_default_params()
        mp.vocab_only = True
        model = L.llama_model_load_from_file(path.encode(), mp)
        if not model:
            raise RuntimeError(f"cannot load {path}")
        vocab = L.llama_model_get_vocab(model)
        cases = []
        for text, text_combos in texts:
            raw = text.encode()
            for add_special, parse_special in text_combos:
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
        if rec is not None:
            doc["models"][name]["variant"] = rec
        L.llama_model_free(model)
    shutil.rmtree(tmp)
    args.out.write_text(dump(doc) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
