#!/usr/bin/env python3
"""Write the seeds of the `llm` fuzz target (fuzz/corpus/llm/) with gguf-py's
GGUFWriter: tiny but complete models the gguf-loader-llm crate runs end to
end, so the fuzzer starts from files whose tokenizer builds, whose chat
template renders and whose forward pass runs.

Usage: python3 scripts/gen_llm_fuzz_seeds.py [OUT_DIR]   (default: <repo>/fuzz/corpus/llm)

Deterministic (fixed seed): re-running writes the same bytes.

* seed-llama-spm.gguf  arch llama, a SentencePiece (`llama`) vocabulary with
                       the 256 byte tokens, scores and token types, a ChatML
                       template; one block, width 32, 2 query heads, 1 KV
                       head, head dim 16, ff 64; F32 matrices.
* seed-llama-bpe.gguf  the same model with a byte-level BPE (`gpt2`)
                       vocabulary, merges and pre-tokenizer `smollm`, a
                       Llama-3-style template with block tags on their own
                       lines; F16 matrices.
* seed-gemma3.gguf     arch gemma3 (per-head Q/K norms, post-norms, a sliding
                       window on every layer but the last of two),
                       SentencePiece vocabulary with Gemma's turn markers,
                       Q8_0 embeddings.
* seed-llama-wpm.gguf  the llama model with a WordPiece (`bert`) vocabulary:
                       `▁` word starts and bare continuations, CLS / SEP /
                       MASK, lowercase letters, digits, punctuation and two
                       CJK ideographs; F32 matrices.
* seed-llama-ugm.gguf  the llama model with a Unigram (`t5`) vocabulary:
                       scores with ties, unused, user-defined and byte
                       tokens, and a small precompiled charsmap (full-width
                       and compatibility forms, a prefix of another key, a
                       key replaced by nothing); add_space_prefix and
                       remove_extra_whitespaces on, as T5's.
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType, GGUFWriter
from gguf.quants import quantize

N_EMBD, N_HEAD, N_KV, HEAD, N_FF = 32, 2, 1, 16, 64

CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
LLAMA3 = """{{- bos_token }}
{%- for message in messages %}
    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}
{%- endif %}
"""
GEMMA = (
    "{{ bos_token }}{% for message in messages %}<start_of_turn>"
    "{{ 'model' if message['role'] == 'assistant' else message['role'] }}\n"
    "{{ message['content'] | trim }}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)

WORDS = ["the", "a", "hello", "world", "is", "of", "Paris", "capital", "France", "what"]


def spm_vocab(specials: list[str]) -> tuple[list[str], list[float], list[int]]:
    tokens = ["<unk>", "<s>", "</s>"] + specials
    types = [2, 3, 3] + [3] * len(specials)
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [6] * 256
    pieces = ["\u2581"] + [chr(c) for c in range(ord("a"), ord("z") + 1)]
    for w in WORDS:
        # Every prefix, so greedy merging can build the word.
        pieces += ["\u2581" + w[:i] for i in range(1, len(w) + 1)] + [w[:i] for i in range(2, len(w) + 1)]
    for p in pieces:
        if p not in tokens:
            tokens.append(p)
            types.append(1)
    scores = [0.0] * len(tokens)
    for i, t in enumerate(tokens):
        if types[i] == 1:
            scores[i] = float(len(t)) - i / 1000.0 if len(t) > 1 else -1000.0 - i
    return tokens, scores, types


def byte_alphabet() -> list[str]:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for _, c in sorted(zip(bs, cs))]


def bpe_vocab() -> tuple[list[str], list[str], list[int]]:
    alphabet = byte_alphabet()
    tokens = list(alphabet)
    merges = []
    for w in WORDS:
        w = "\u0120" + w  # GPT-2's space
        cur = w[0]
        for c in w[1:]:
            merges.append(f"{cur} {c}")
            cur += c
            if cur not in tokens:
                tokens.append(cur)
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    types = [1] * len(tokens) + [3] * len(specials)
    tokens += specials
    # Merges in order, duplicates dropped.
    seen, ordered = set(), []
    for m in merges:
        if m not in seen:
            seen.add(m)
            ordered.append(m)
    return tokens, ordered, types


def matrix(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    return (rng.standard_normal((rows, cols)) * 0.2).astype(np.float32)


def write_model(
    path: Path,
    arch: str,
    vocab: int,
    rng: np.random.Generator,
    mat_type: str,
    gemma: bool,
    add_tokenizer,
) -> None:
    w = GGUFWriter(str(path), arch)
    w.add_name(f"fuzz seed {arch}")
    w.add_block_count(2 if gemma else 1)
    w.add_context_length(64)
    w.add_embedding_length(N_EMBD)
    w.add_feed_forward_length(N_FF)
    w.add_head_count(N_HEAD)
    w.add_head_count_kv(N_KV)
    w.add_key_length(HEAD)
    w.add_value_length(HEAD)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_freq_base(10000.0)
    w.add_rope_dimension_count(HEAD)
    if gemma:
        w.add_sliding_window(4)
        w.add_uint32(f"{arch}.attention.sliding_window_pattern", 2)
        w.add_float32(f"{arch}.rope.freq_base_swa", 10000.0)
    add_tokenizer(w)

    def add(name: str, data: np.ndarray, ty: str) -> None:
        if ty == "f16":
            w.add_tensor(name, data.astype(np.float16))
        elif ty == "q8_0":
            q = quantize(data, GGMLQuantizationType.Q8_0)
            w.add_tensor(name, q, raw_shape=q.shape, raw_dtype=GGMLQuantizationType.Q8_0)
        else:
            w.add_tensor(name, data)

    add("token_embd.weight", matrix(rng, vocab, N_EMBD), "q8_0" if gemma else "f16")
    add("output_norm.weight", np.ones(N_EMBD, np.float32), "f32")
    for il in range(2 if gemma else 1):
        p = f"blk.{il}."
        add(p + "attn_norm.weight", np.ones(N_EMBD, np.float32), "f32")
        add(p + "attn_q.weight", matrix(rng, N_HEAD * HEAD, N_EMBD), mat_type)
        add(p + "attn_k.weight", matrix(rng, N_KV * HEAD, N_EMBD), mat_type)
        add(p + "attn_v.weight", matrix(rng, N_KV * HEAD, N_EMBD), mat_type)
        add(p + "attn_output.weight", matrix(rng, N_EMBD, N_HEAD * HEAD), mat_type)
        add(p + "ffn_norm.weight", np.ones(N_EMBD, np.float32), "f32")
        add(p + "ffn_gate.weight", matrix(rng, N_FF, N_EMBD), mat_type)
        add(p + "ffn_up.weight", matrix(rng, N_FF, N_EMBD), mat_type)
        add(p + "ffn_down.weight", matrix(rng, N_EMBD, N_FF), mat_type)
        if gemma:
            add(p + "attn_q_norm.weight", np.ones(HEAD, np.float32), "f32")
            add(p + "attn_k_norm.weight", np.ones(HEAD, np.float32), "f32")
            add(p + "post_attention_norm.weight", np.ones(N_EMBD, np.float32), "f32")
            add(p + "post_ffw_norm.weight", np.ones(N_EMBD, np.float32), "f32")
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


# The charsmap of seed-llama-ugm.gguf: what SentencePiece's NFKC rewrites.
CHARSMAP = {
    "Ａ": "A", "ｂ": "b", "ﬁ": "fi", "①": "1", "\u3000": " ", "\u00a0": " ",
    "ｶ": "カ", "ｶﾞ": "ガ", "™": "TM", "…": "...", "\u200b": "", "Ⅻ": "XII",
}


def charsmap(pairs: dict[str, str]) -> bytes:
    """A precompiled charsmap as llama.cpp reads it: the length of a
    XOR-compressed double array, its 32-bit units (little-endian), then
    NUL-terminated replacements. Each trie node gets a block of 256 units
    for its children (child `c` of block `b` at `b ^ c`); unit `b` itself
    holds the node's replacement offset (bit 31 set, so no child matches
    it). A unit: BASE << 10 (the XOR from it to its block), leaf bit 8,
    LCHECK (its byte) in bits 0-7."""
    repl = bytearray()
    offset = {}
    for k, v in pairs.items():
        offset[k.encode()] = len(repl)
        repl += v.encode() + b"\0"
    units = [0] * 512  # unit 0 (the root's base) and the root's block
    units[0] = 256 << 10
    blocks = {b"": 256}
    for key in sorted(offset):
        for i in range(1, len(key) + 1):
            prefix = key[:i]
            if prefix in blocks:
                continue
            parent, c = blocks[prefix[:-1]], prefix[-1]
            block = len(units)
            units += [0] * 256
            blocks[prefix] = block
            idx = parent ^ c
            units[idx] = ((idx ^ block) << 10) | c
        block = blocks[key]
        units[blocks[key[:-1]] ^ key[-1]] |= 1 << 8
        units[block] = (1 << 31) | offset[key]
    blob = struct.pack(f"<{len(units)}I", *units)
    return struct.pack("<I", len(blob)) + blob + bytes(repl)


def main() -> None:
    root = Path(__file__).resolve().parent.parent
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else root / "fuzz" / "corpus" / "llm"
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(20261202)

    tokens, scores, types = spm_vocab(["<|im_start|>", "<|im_end|>"])

    def spm(template: str, toks, sc, ty):
        def add(w: GGUFWriter) -> None:
            w.add_tokenizer_model("llama")
            w.add_token_list(toks)
            w.add_token_scores(sc)
            w.add_token_types(ty)
            w.add_bos_token_id(1)
            w.add_eos_token_id(2)
            w.add_unk_token_id(0)
            w.add_add_bos_token(True)
            w.add_chat_template(template)

        return add

    write_model(out / "seed-llama-spm.gguf", "llama", len(tokens), rng, "f32", False,
                spm(CHATML, tokens, scores, types))

    btokens, merges, btypes = bpe_vocab()

    def bpe(w: GGUFWriter) -> None:
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre("smollm")
        w.add_token_list(btokens)
        w.add_token_types(btypes)
        w.add_token_merges(merges)
        w.add_bos_token_id(btokens.index("<|begin_of_text|>"))
        w.add_eos_token_id(btokens.index("<|eot_id|>"))
        w.add_add_bos_token(True)
        w.add_chat_template(LLAMA3)

    write_model(out / "seed-llama-bpe.gguf", "llama", len(btokens), rng, "f16", False, bpe)

    gtokens, gscores, gtypes = spm_vocab(["<start_of_turn>", "<end_of_turn>"])
    write_model(out / "seed-gemma3.gguf", "gemma3", len(gtokens), rng, "f16", True,
                spm(GEMMA, gtokens, gscores, gtypes))
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + list("0123456789")
    wtokens = (specials + ["\u2581" + c for c in letters + list("!,.?-") + ["中", "文"]]
               + letters + ["\u2581hello", "\u2581world", "ll", "\u2581ap", "fe"])
    wtypes = [3] * len(specials) + [1] * (len(wtokens) - len(specials))

    def wpm(w: GGUFWriter) -> None:
        w.add_tokenizer_model("bert")
        w.add_tokenizer_pre("bert-bge")
        w.add_token_list(wtokens)
        w.add_token_types(wtypes)
        w.add_unk_token_id(1)
        w.add_sep_token_id(3)
        w.add_pad_token_id(0)
        w.add_uint32("tokenizer.ggml.cls_token_id", 2)
        w.add_bos_token_id(2)  # CLS: the default, 101, is past this vocabulary
        w.add_mask_token_id(4)

    write_model(out / "seed-llama-wpm.gguf", "llama", len(wtokens), rng, "f32", False, wpm)

    # Unigram: scores in few values, so that tokenizations tie.
    utokens = ["<pad>", "</s>", "<unk>", "<mask>", "[PAD7]", "<0xE4>", "\u2581"]
    utypes = [3, 3, 2, 4, 5, 6, 1]
    uscores = [0.0, 0.0, 0.0, 0.0, -20.0, 0.0, -3.0]
    pieces = (letters + [c.upper() for c in letters[:26]] + list("!,.?-'")
              + ["\u2581" + c for c in letters[:26]]
              + ["he", "ll", "llo", "\u2581he", "\u2581hel", "lo", "\u2581the", "\u2581hello",
                 "\u2581world", "wor", "ld", "fi", "TM", "XII", "カ", "ガ", "...", "中", "文",
                 "\u2581中文", "ing", "\u2581th", "\u2581a", "an", "\u2581an"])
    for i, t in enumerate(pieces):
        if t in utokens:
            continue
        utokens.append(t)
        utypes.append(1)
        uscores.append([-4.0, -5.0, -6.0][i % 3] if len(t) < 3 else -7.0 - (i % 2))
    cmap = np.frombuffer(charsmap(CHARSMAP), dtype=np.uint8)

    def ugm(w: GGUFWriter) -> None:
        w.add_tokenizer_model("t5")
        w.add_tokenizer_pre("default")
        w.add_token_list(utokens)
        w.add_token_scores(uscores)
        w.add_token_types(utypes)
        w.add_eos_token_id(1)
        w.add_unk_token_id(2)
        w.add_pad_token_id(0)
        w.add_add_space_prefix(True)
        w.add_remove_extra_whitespaces(True)
        w.add_precompiled_charsmap(cmap.tobytes())

    write_model(out / "seed-llama-ugm.gguf", "llama", len(utokens), rng, "f32", False, ugm)
    for f in sorted(out.glob("*.gguf")):
        print(f, f.stat().st_size)


if __name__ == "__main__":
    main()
