#!/usr/bin/env python3
"""Generate the small GGUF fixture files in tests/fixtures/ with gguf-py's GGUFWriter.

Usage: python3 scripts/gen_fixtures.py [OUT_DIR]   (default: <repo>/tests/fixtures)

Output is deterministic (fixed seeds, no timestamps): re-running produces
byte-identical files.

Files written:

* all_types_le.gguf  little-endian v3; metadata covering all 13 GGUF value types
                     (scalars with edge values, strings incl. UTF-8 and empty,
                     typed arrays of every scalar type, string array, empty
                     array, nested arrays), general.alignment = 64, and tensors
                     of many ggml types (F32 1-D..4-D, F16, BF16, I8..I64, F64,
                     Q4_0, Q4_1, Q8_0, Q4_K, Q6_K).
* all_types_be.gguf  the same content written big-endian.  Scalars/arrays and
                     plain tensor elements are byte-swapped by GGUFWriter; for
                     quantized tensors we additionally byte-swap the f16 fields
                     inside each block (the convention of llama.cpp's
                     gguf_convert_endian.py), so both files decode to the same
                     values.
* default_align.gguf default alignment (32, no general.alignment key), tensors
                     with odd byte sizes so inter-tensor padding matters.
* tokenizer_like.gguf tokenizer.ggml.{tokens,scores,token_type} with 5000
                     entries each (+ merges), plus one small tensor.

Notes on GGUFWriter quirks worked around here (gguf-py 0.19.0):
* add_string("") and add_array([]) silently do nothing, and _pack_val raises on
  an empty array; we use add_key_value() for the empty string and a small
  GGUFWriter subclass that can pack empty arrays (with an explicit item type).
* Nested arrays (list of lists) are written by the stock writer as an ARRAY of
  ARRAYs; the inner item type is inferred from the first element (Python int ->
  INT32, str -> STRING).  Note that llama.cpp's own C++ gguf reader rejects
  nested arrays; gguf-py's reader flattens them.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

import gguf
from gguf import GGMLQuantizationType as QT
from gguf import GGUFEndian, GGUFValueType as VT, GGUFWriter
from gguf.constants import GGML_QUANT_SIZES

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "tests" / "fixtures"
SEED = 20240601


class FixtureWriter(GGUFWriter):
    """GGUFWriter that can also emit empty arrays (stock writer refuses)."""

    def _pack_val(self, val: Any, vtype: VT, add_vtype: bool, sub_type: VT | None = None) -> bytes:
        if vtype == VT.ARRAY and isinstance(val, Sequence) and len(val) == 0:
            if sub_type is None:
                raise ValueError("empty array needs an explicit sub_type")
            out = bytearray()
            if add_vtype:
                out += self._pack("I", vtype)
            out += self._pack("I", sub_type)
            out += self._pack("Q", 0)
            return bytes(out)
        return super()._pack_val(val, vtype, add_vtype, sub_type)


# ---------------------------------------------------------------------------
# metadata
# ---------------------------------------------------------------------------

def add_all_types_metadata(w: GGUFWriter) -> None:
    # general.architecture is added first by GGUFWriter.__init__.
    w.add_name("all-types fixture")
    w.add_custom_alignment(64)  # general.alignment (u32), non-default

    # --- scalars, edge values -------------------------------------------------
    w.add_uint8("test.u8.max", 0xFF)
    w.add_uint8("test.u8.zero", 0)
    w.add_int8("test.i8.min", -128)
    w.add_int8("test.i8.max", 127)
    w.add_uint16("test.u16.max", 0xFFFF)
    w.add_int16("test.i16.min", -32768)
    w.add_int16("test.i16.max", 32767)
    w.add_uint32("test.u32.max", 0xFFFFFFFF)
    w.add_int32("test.i32.min", -(2**31))
    w.add_int32("test.i32.max", 2**31 - 1)
    w.add_float32("test.f32", -1.5)
    w.add_float32("test.f32.pi", 3.14159265358979)  # not exactly representable
    w.add_float32("test.f32.max", float(np.finfo(np.float32).max))
    w.add_float32("test.f32.min_subnormal", float(np.float32(1.401298464324817e-45)))
    w.add_float32("test.f32.neg_zero", -0.0)
    w.add_float32("test.f32.nan", float("nan"))
    w.add_float32("test.f32.inf", float("inf"))
    w.add_float32("test.f32.neg_inf", float("-inf"))
    w.add_bool("test.bool.true", True)
    w.add_bool("test.bool.false", False)
    w.add_string("test.string", "hello, gguf")
    w.add_string("test.string.utf8", "h\u00e9llo w\u00f6rld \u2014 \u65e5\u672c\u8a9e \U0001f980")
    w.add_key_value("test.string.empty", "", VT.STRING)  # add_string("") is a no-op
    w.add_uint64("test.u64.max", 2**64 - 1)
    w.add_int64("test.i64.min", -(2**63))
    w.add_int64("test.i64.max", 2**63 - 1)
    w.add_float64("test.f64", -2.718281828459045)
    w.add_float64("test.f64.min_subnormal", 5e-324)
    w.add_float64("test.f64.max", float(np.finfo(np.float64).max))
    w.add_float64("test.f64.nan", float("nan"))

    # --- arrays of every scalar type ------------------------------------------
    def arr(key: str, vals: list[Any], sub: VT) -> None:
        w.add_key_value(key, vals, VT.ARRAY, sub_type=sub)

    arr("test.array.u8", [0, 1, 127, 128, 255], VT.UINT8)
    arr("test.array.i8", [-128, -1, 0, 1, 127], VT.INT8)
    arr("test.array.u16", [0, 1, 0x1234, 0xFFFF], VT.UINT16)
    arr("test.array.i16", [-32768, -1, 0, 32767], VT.INT16)
    arr("test.array.u32", [0, 1, 0xDEADBEEF, 0xFFFFFFFF], VT.UINT32)
    arr("test.array.i32", [-(2**31), -1, 0, 2**31 - 1], VT.INT32)
    arr("test.array.f32", [0.0, -0.0, 1.0, -1.5, 0.1, 3.4028234663852886e38, 1e-40], VT.FLOAT32)
    arr("test.array.u64", [0, 1, 2**40 + 7, 2**64 - 1], VT.UINT64)
    arr("test.array.i64", [-(2**63), -1, 0, 2**63 - 1], VT.INT64)
    arr("test.array.f64", [0.0, -0.0, 1.0, -1.5, 0.1, 1e300, -5e-324], VT.FLOAT64)
    arr("test.array.bool", [True, False, True], VT.BOOL)
    arr("test.array.string", ["a", "", "\u00fcn\u00ef\u00e7\u00f6d\u00e9 \U0001f600", "with space", "new\nline"], VT.STRING)
    arr("test.array.f32.special", [float("nan"), float("inf"), float("-inf"), 2.5], VT.FLOAT32)
    arr("test.array.empty", [], VT.INT32)  # stock add_array([]) is a no-op
    # Nested arrays through the stock API: inner item type inferred from values.
    w.add_array("test.array.nested_int", [[1, 2, 3], [4], [-5, 6]])
    w.add_array("test.array.nested_str", [["a", "b"], ["\u00e7"], ["", "z"]])

    w.add_uint32("test.last", 42)


# ---------------------------------------------------------------------------
# tensors
# ---------------------------------------------------------------------------

# Offsets (in bytes, within one block) of the f16 fields of each quantized
# block type that we emit. Used to make the f16 scales finite and to byte-swap
# them for the big-endian file.
F16_FIELDS = {
    QT.Q4_0: [0],          # d
    QT.Q4_1: [0, 2],       # d, m
    QT.Q8_0: [0],          # d
    QT.Q4_K: [0, 2],       # d, dmin
    QT.Q6_K: [208],        # d (after ql[128], qh[64], scales[16])
}


def random_quant_bytes(rng: np.random.Generator, qtype: QT, shape: tuple[int, ...]) -> np.ndarray:
    """Random block bytes for `shape` (numpy order, last dim = ne[0]) with finite f16 scales.

    Returns a little-endian uint8 array of byte shape (..., ne0 / block * type_size).
    """
    block, tsize = GGML_QUANT_SIZES[qtype]
    assert shape[-1] % block == 0
    n_blocks = int(np.prod(shape)) // block
    data = rng.integers(0, 256, size=(n_blocks, tsize), dtype=np.uint8)
    for off in F16_FIELDS[qtype]:
        scales = rng.uniform(-0.05, 0.05, size=n_blocks).astype("<f2")
        data[:, off:off + 2] = scales.view(np.uint8).reshape(n_blocks, 2)
    return data.reshape(*shape[:-1], shape[-1] // block * tsize)


def quantized(rng: np.random.Generator, qtype: QT, shape: tuple[int, ...]) -> np.ndarray:
    """Realistic block bytes: quantize random floats when gguf-py can, else random bytes."""
    if qtype in (QT.Q4_0, QT.Q4_1, QT.Q8_0):
        floats = rng.standard_normal(shape).astype(np.float32)
        return gguf.quants.quantize(floats, qtype)
    return random_quant_bytes(rng, qtype, shape)


def swap_quant_f16(data: np.ndarray, qtype: QT) -> np.ndarray:
    """Byte-swap the f16 fields of each block (LE block bytes -> BE block bytes)."""
    _, tsize = GGML_QUANT_SIZES[qtype]
    shape = data.shape
    blocks = data.reshape(-1, tsize).copy()
    for off in F16_FIELDS[qtype]:
        blocks[:, [off, off + 1]] = blocks[:, [off + 1, off]]
    return blocks.reshape(shape)


def all_types_tensors(rng: np.random.Generator) -> list[tuple[str, np.ndarray, QT | None]]:
    """(name, array, raw_dtype) in write order; arrays are host(LE)-order numpy arrays."""
    t: list[tuple[str, np.ndarray, QT | None]] = []
    f32 = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    t.append(("f32_1d", f32(7), None))
    t.append(("f32_2d", f32(3, 5), None))            # ne = [5, 3]
    t.append(("f32_3d", f32(2, 3, 4), None))         # ne = [4, 3, 2]
    t.append(("f32_4d", f32(2, 1, 3, 2), None))      # ne = [2, 3, 1, 2]
    t.append(("f16", f32(4, 8).astype(np.float16), None))
    # BF16: no numpy dtype; pass uint16 bit patterns (so GGUFWriter byte-swaps
    # them for BE like any 2-byte element) with raw_dtype=BF16.
    bf = (f32(2, 8).view(np.uint32) >> 16).astype(np.uint16)
    t.append(("bf16", bf, QT.BF16))
    t.append(("i8", rng.integers(-128, 128, size=10, dtype=np.int8), None))
    t.append(("i16", rng.integers(-32768, 32768, size=(3, 3), dtype=np.int16), None))
    t.append(("i32", np.array([-(2**31), -1, 0, 1, 2**31 - 1], dtype=np.int32), None))
    t.append(("i64", np.array([[-(2**63), -1], [1, 2**63 - 1]], dtype=np.int64), None))
    t.append(("f64", np.array([np.pi, -0.0, 1e-300], dtype=np.float64), None))
    t.append(("q4_0", quantized(rng, QT.Q4_0, (2, 64)), QT.Q4_0))   # ne = [64, 2]
    t.append(("q4_1", quantized(rng, QT.Q4_1, (1, 32)), QT.Q4_1))   # ne = [32, 1]
    t.append(("q8_0", quantized(rng, QT.Q8_0, (2, 32)), QT.Q8_0))   # ne = [32, 2]
    t.append(("q4_k", quantized(rng, QT.Q4_K, (2, 256)), QT.Q4_K))  # ne = [256, 2]
    t.append(("q6_k", quantized(rng, QT.Q6_K, (1, 256)), QT.Q6_K))  # ne = [256, 1]
    return [(f"tensor.{n}", a, q) for n, a, q in t]


def add_tensors(w: GGUFWriter, tensors: list[tuple[str, np.ndarray, QT | None]], big_endian: bool) -> None:
    for name, arr, raw in tensors:
        if raw is not None and raw in F16_FIELDS:
            # uint8 block bytes: GGUFWriter never swaps these, do the in-block swap ourselves.
            data = swap_quant_f16(arr, raw) if big_endian else arr
            w.add_tensor(name, data, raw_dtype=raw)
        else:
            # Native-typed data (host order, little-endian here); GGUFWriter
            # byte-swaps it when writing a big-endian file.
            w.add_tensor(name, arr, raw_dtype=raw, tensor_endianess=GGUFEndian.LITTLE)


def write(w: GGUFWriter) -> None:
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


# ---------------------------------------------------------------------------
# files
# ---------------------------------------------------------------------------

def gen_all_types(out: Path, big_endian: bool) -> Path:
    path = out / ("all_types_be.gguf" if big_endian else "all_types_le.gguf")
    rng = np.random.default_rng(SEED)
    w = FixtureWriter(path, "testarch", endianess=GGUFEndian.BIG if big_endian else GGUFEndian.LITTLE)
    add_all_types_metadata(w)
    add_tensors(w, all_types_tensors(rng), big_endian)
    write(w)
    return path


def gen_default_align(out: Path) -> Path:
    path = out / "default_align.gguf"
    rng = np.random.default_rng(SEED + 1)
    w = FixtureWriter(path, "testarch")
    w.add_name("default-alignment fixture")
    w.add_uint32("test.block_count", 3)
    # Odd byte sizes: 7, 10, 12, 34, 1, 6, 24 bytes -> padding to 32 between each.
    tensors: list[tuple[str, np.ndarray, QT | None]] = [
        ("odd.i8_7", rng.integers(-128, 128, size=7, dtype=np.int8), None),
        ("odd.f16_5", rng.standard_normal(5).astype(np.float16), None),
        ("odd.f32_3", rng.standard_normal(3).astype(np.float32), None),
        ("odd.q8_0", quantized(rng, QT.Q8_0, (1, 32)), QT.Q8_0),
        ("odd.i8_1", np.array([-7], dtype=np.int8), None),
        ("odd.i16_3", np.array([-32768, 0, 32767], dtype=np.int16), None),
        ("odd.f32_2x3", rng.standard_normal((2, 3)).astype(np.float32), None),
    ]
    add_tensors(w, tensors, big_endian=False)
    write(w)
    return path


def gen_tokenizer_like(out: Path) -> Path:
    path = out / "tokenizer_like.gguf"
    rng = np.random.default_rng(SEED + 2)
    n_vocab = 5000
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<unk>"]
    byte_tokens = [f"<0x{i:02X}>" for i in range(256)]
    alphabet = list("abcdefghijklmnopqrstuvwxyz") + ["\u0120", "\u010a", "\u00e9", "\u00df", "\u4e2d", "\U0001f600"]
    tokens: list[str] = list(specials) + byte_tokens
    seen = set(tokens)
    while len(tokens) < n_vocab:
        n = int(rng.integers(1, 9))
        tok = "".join(alphabet[int(i)] for i in rng.integers(0, len(alphabet), size=n))
        if tok not in seen:
            seen.add(tok)
            tokens.append(tok)
    scores = [0.0] * len(specials) + [float(-i) for i in range(len(byte_tokens))] + \
        [float(np.float32(-1000.0 - i * 0.25)) for i in range(n_vocab - len(specials) - len(byte_tokens))]
    token_type = [3] * len(specials) + [6] * len(byte_tokens) + [1] * (n_vocab - len(specials) - len(byte_tokens))
    merges = [f"{a} {b}" for a, b in zip(tokens[260:360], tokens[360:460])]

    w = FixtureWriter(path, "llama")
    w.add_name("tokenizer-like fixture")
    w.add_vocab_size(n_vocab)  # llama.vocab_size
    w.add_string("tokenizer.ggml.model", "gpt2")
    w.add_string("tokenizer.ggml.pre", "smollm")
    w.add_key_value("tokenizer.ggml.tokens", tokens, VT.ARRAY, sub_type=VT.STRING)
    w.add_key_value("tokenizer.ggml.scores", scores, VT.ARRAY, sub_type=VT.FLOAT32)
    w.add_key_value("tokenizer.ggml.token_type", token_type, VT.ARRAY, sub_type=VT.INT32)
    w.add_key_value("tokenizer.ggml.merges", merges, VT.ARRAY, sub_type=VT.STRING)
    w.add_uint32("tokenizer.ggml.bos_token_id", 1)
    w.add_uint32("tokenizer.ggml.eos_token_id", 2)
    w.add_bool("tokenizer.ggml.add_bos_token", False)
    add_tensors(w, [("token_embd.weight", rng.standard_normal((4, 8)).astype(np.float32), None)], big_endian=False)
    write(w)
    return path


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else DEFAULT_OUT
    out.mkdir(parents=True, exist_ok=True)
    paths = [
        gen_all_types(out, big_endian=False),
        gen_all_types(out, big_endian=True),
        gen_default_align(out),
        gen_tokenizer_like(out),
    ]
    for p in paths:
        print(f"{p}  {p.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
