#!/usr/bin/env python3
"""Golden vectors for the legacy / fp4 / ternary / float decoders.

Writes `tests/golden/<name>.raw` (whole blocks) and `tests/golden/<name>.f32`
(little-endian f32 that ggml decodes them to) at the repository root for:

  q4_0 q4_1 q5_0 q5_1 q8_0 q8_1 q1_0 q2_0 q8_k mxfp4 nvfp4 tq1_0 tq2_0
  f32 f16 bf16 f64 i8 i16 i32 i64

Oracles:
  * gguf-py (`gguf.quants.dequantize`, PyPI gguf 0.19.0) for the types it
    implements: q4_0 q4_1 q5_0 q5_1 q8_0 tq1_0 tq2_0 mxfp4 nvfp4 (and f16/bf16
    via numpy casts as gguf-py does them).
  * ggml's C (`scripts/ggml_oracle.py`: ggml-quants.c of the llama.cpp vendored
    in llama-cpp-python 0.3.36 compiled into a small shared library) for the
    ones it lacks: q1_0 q2_0 q8_1 q8_k. The C oracle is also run on every
    quantized type and f16/bf16 as a second opinion; any disagreement is
    printed, and the C result (ggml is the reference) is what gets written.
  * numpy `astype(np.float32)` for f64 and the integer types (a C `(float)x`).

Deterministic: fixed numpy seed. Run from anywhere:
    python3 scripts/golden_legacy.py
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ggml_oracle  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "golden"

rng = np.random.default_rng(20240611)


def h(x: float) -> bytes:
    """f16 bytes (little-endian) of a Python float."""
    return np.asarray(x, dtype="<f2").tobytes()


def hbits(bits: int) -> bytes:
    return int(bits).to_bytes(2, "little")


def rbytes(n: int) -> bytes:
    return rng.integers(0, 256, size=n, dtype=np.uint8).tobytes()


def rand_scale() -> bytes:
    """A random f16 scale of sane size and random sign."""
    v = rng.uniform(0.5, 1.0) * 2.0 ** int(rng.integers(-14, 4))
    if rng.integers(0, 2):
        v = -v
    return h(v)


# f16 scale edge cases: +0, -0, negative, smallest/largest subnormal, smallest
# normal, largest finite, +inf, -inf, NaN (quiet) and NaN (signalling).
F16_EDGE = [0x0000, 0x8000, 0xBC00, 0x0001, 0x03FF, 0x8001, 0x0400, 0x7BFF, 0x7C00, 0xFC00,
            0x7E00, 0x7C01, 0xFE55]


def f16_scales(n_random: int) -> list[bytes]:
    return [hbits(b) for b in F16_EDGE] + [rand_scale() for _ in range(n_random)]


def quant_variants(nbytes: int) -> list[bytes]:
    """Random quants plus all-zero and all-0xFF quants."""
    return [bytes(nbytes), b"\xff" * nbytes, rbytes(nbytes)]


def gen_d_qs(qs_bytes: int, n_random: int = 16) -> bytes:
    """Blocks `d (f16) | quants` (Q4_0, Q5_0 with qh+qs, Q8_0, Q1_0, Q2_0)."""
    blocks = []
    for i, d in enumerate(f16_scales(n_random)):
        if i < len(F16_EDGE):
            blocks.append(d + rbytes(qs_bytes))
        else:
            blocks.append(d + rbytes(qs_bytes))
    # all-min / all-max quants with a normal and a negative scale
    for d in (h(0.75), h(-1.5)):
        for q in quant_variants(qs_bytes)[:2]:
            blocks.append(d + q)
    return b"".join(blocks)


def gen_d_m_qs(qs_bytes: int, n_random: int = 16) -> bytes:
    """Blocks `d (f16) | m (f16) | quants` (Q4_1, Q5_1, Q8_1 with s for m)."""
    blocks = []
    edges = F16_EDGE
    for i, b in enumerate(edges):
        # edge d with a random m, and edge m with a random d
        blocks.append(hbits(b) + rand_scale() + rbytes(qs_bytes))
        blocks.append(rand_scale() + hbits(b) + rbytes(qs_bytes))
    for _ in range(n_random):
        blocks.append(rand_scale() + rand_scale() + rbytes(qs_bytes))
    for d, m in ((h(0.75), h(-3.0)), (h(-1.5), h(2.0)), (h(1e-3), h(65504.0))):
        for q in quant_variants(qs_bytes)[:2]:
            blocks.append(d + m + q)
    return b"".join(blocks)


def gen_q8_k() -> bytes:
    def f32b(x):
        return np.asarray(x, dtype="<f4").tobytes()

    def fbits(b):
        return int(b).to_bytes(4, "little")

    ds = [fbits(b) for b in (0x00000000, 0x80000000, 0x00000001, 0x007FFFFF, 0x00800000,
                             0x7F7FFFFF, 0x7F800000, 0xFF800000, 0x7FC00000, 0x7F800001)]
    ds += [f32b(-0.75), f32b(3e38)]
    ds += [f32b(rng.uniform(-1, 1) * 2.0 ** int(rng.integers(-20, 4))) for _ in range(12)]
    blocks = [d + rbytes(256) + rbytes(32) for d in ds]
    for d in (f32b(0.01), f32b(-2.5)):
        blocks.append(d + bytes(256) + rbytes(32))
        blocks.append(d + b"\xff" * 256 + rbytes(32))
        blocks.append(d + b"\x7f" * 256 + rbytes(32))
        blocks.append(d + b"\x80" * 256 + rbytes(32))
    return b"".join(blocks)


def gen_mxfp4() -> bytes:
    es = [0, 1, 2, 3, 126, 127, 128, 254, 255] + list(rng.integers(100, 150, size=12)) + \
        list(rng.integers(0, 256, size=6))
    blocks = [bytes([int(e)]) + rbytes(16) for e in es]
    for e in (0, 127, 254, 255):
        blocks.append(bytes([e]) + bytes(range(0, 256, 17))[:16])  # every code
    blocks.append(bytes([127]) + b"\x00" * 16)
    blocks.append(bytes([127]) + b"\xff" * 16)
    blocks.append(bytes([127]) + b"\x77" * 16)
    blocks.append(bytes([127]) + b"\x88" * 16)
    return b"".join(blocks)


def gen_nvfp4() -> bytes:
    # every ue4m3 byte appears as a scale at least once: 256 scales, 4 per block
    scales = list(range(256))
    blocks = []
    for i in range(0, 256, 4):
        blocks.append(bytes(scales[i:i + 4]) + rbytes(32))
    for d in ([0x00, 0x7F, 0x7E, 0xFF], [0x38, 0x38, 0x38, 0x38], [0x01, 0x07, 0x08, 0x80]):
        blocks.append(bytes(d) + rbytes(32))
        blocks.append(bytes(d) + b"\x00" * 32)
        blocks.append(bytes(d) + b"\xff" * 32)
        blocks.append(bytes(d) + bytes(range(0, 256, 17)) * 2)
    return b"".join(blocks)


def gen_tq1_0() -> bytes:
    blocks = []
    for d in [hbits(b) for b in F16_EDGE] + [rand_scale() for _ in range(8)]:
        blocks.append(rbytes(48) + rbytes(4) + d)
    # valid encodings (bytes produced by the quantizer: ceil(v*256/243), v < 243)
    for d in (h(0.5), h(-2.0)):
        v = rng.integers(0, 243, size=52).astype(np.uint16)
        blocks.append(((v * 256 + 242) // 243).astype(np.uint8).tobytes() + d)
        blocks.append(bytes(52) + d)
        blocks.append(b"\xff" * 52 + d)
    return b"".join(blocks)


def gen_tq2_0() -> bytes:
    blocks = []
    for d in [hbits(b) for b in F16_EDGE] + [rand_scale() for _ in range(8)]:
        blocks.append(rbytes(64) + d)
    for d in (h(0.5), h(-2.0)):
        blocks.append(bytes(64) + d)
        blocks.append(b"\xff" * 64 + d)
        blocks.append(b"\xaa" * 64 + d)
    return b"".join(blocks)


def gguf_py(name: str, raw: bytes) -> np.ndarray | None:
    import gguf
    from gguf.constants import GGMLQuantizationType as T
    from gguf.quants import dequantize

    qt = getattr(T, name.upper().replace("Q8_K", "Q8_K"), None)
    if qt is None:
        return None
    arr = np.frombuffer(raw, dtype=np.uint8)
    try:
        with np.errstate(all="ignore"):
            out = dequantize(arr, qt)
    except NotImplementedError:
        return None
    return np.asarray(out, dtype=np.float32).ravel()


def write(name: str, raw: bytes, expected: np.ndarray) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{name}.raw").write_bytes(raw)
    (OUT / f"{name}.f32").write_bytes(np.asarray(expected, dtype="<f4").tobytes())


def bits(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype="<f4").view("<u4")


def compare(name: str, what: str, a: np.ndarray, b: np.ndarray) -> bool:
    if a.shape != b.shape:
        print(f"  {name}: {what}: shape {a.shape} vs {b.shape}")
        return False
    diff = np.nonzero(bits(a) != bits(b))[0]
    if len(diff):
        i = diff[0]
        print(f"  {name}: {what}: {len(diff)} of {len(a)} differ, first at {i}: "
              f"{a[i]!r} ({bits(a)[i]:#010x}) vs {b[i]!r} ({bits(b)[i]:#010x})")
        return False
    return True


REPORT: list[str] = []


def quantized(oracle, name: str, raw: bytes) -> None:
    c = oracle.dequantize(name, raw)
    g = gguf_py(name, raw) if name not in ("q8_1",) else None  # gguf-py has no Q8_1 (and wrong size)
    if g is None:
        REPORT.append(f"{name:6s} {len(raw):6d} bytes  oracle: ggml C (gguf-py lacks it)")
    else:
        same = compare(name, "gguf-py vs C", g, c)
        REPORT.append(f"{name:6s} {len(raw):6d} bytes  oracle: gguf-py; ggml C {'agrees' if same else 'DISAGREES (C written)'}")
    write(name, raw, c)


def floats(oracle) -> None:
    # f32: random + specials, the bits as they are
    sp32 = np.array([0x00000000, 0x80000000, 0x00000001, 0x807FFFFF, 0x7F7FFFFF, 0x7F800000,
                     0xFF800000, 0x7FC00000, 0x7F800001, 0xFFC12345], dtype="<u4")
    r32 = rng.integers(0, 2**32, size=118, dtype=np.uint64).astype("<u4")
    raw = np.concatenate([sp32, r32]).tobytes()
    write("f32", raw, np.frombuffer(raw, dtype="<f4"))
    REPORT.append("f32    bits as stored")

    # f16: specials + random bit patterns
    sp16 = np.array(F16_EDGE + [0x3C00, 0x3555, 0x7FFF, 0xFFFF, 0x83FF, 0x0200], dtype="<u2")
    r16 = rng.integers(0, 2**16, size=256 - len(sp16), dtype=np.uint32).astype("<u2")
    raw = np.concatenate([sp16, r16]).tobytes()
    g = np.frombuffer(raw, dtype="<f2").astype(np.float32)
    c = oracle.dequantize("f16", raw)
    same = compare("f16", "numpy astype vs C", g, c)
    REPORT.append(f"f16    oracle: numpy astype (gguf-py's way); ggml C {'agrees' if same else 'DISAGREES (C written)'}")
    write("f16", raw, c)

    # bf16: specials + random bit patterns
    spb = np.array([0x0000, 0x8000, 0x0001, 0x807F, 0x0080, 0x7F7F, 0x7F80, 0xFF80, 0x7FC0,
                    0x7F81, 0xFFFF, 0x3F80, 0xC0A0], dtype="<u2")
    rb = rng.integers(0, 2**16, size=256 - len(spb), dtype=np.uint32).astype("<u2")
    raw = np.concatenate([spb, rb]).tobytes()
    g = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
    c = oracle.dequantize("bf16", raw)
    same = compare("bf16", "numpy shift vs C", g, c)
    REPORT.append(f"bf16   oracle: numpy (u16 << 16, gguf-py's way); ggml C {'agrees' if same else 'DISAGREES (C written)'}")
    write("bf16", raw, c)

    # f64: values that round (ties included), overflow, underflow, specials
    sp64 = [0.0, -0.0, 1.0, -1.5, np.inf, -np.inf, np.nan, 1e300, -1e300, 1e-300, 5e-324,
            3.4028235677973366e38, 3.4028235677973362e38, 3.402823669209385e38,
            1.0 + 2.0 ** -24, 1.0 + 3 * 2.0 ** -24, 1.0 + 2.0 ** -24 + 2.0 ** -50,
            2.0 ** -149, 2.0 ** -150, 3 * 2.0 ** -151, 1.1754942106924411e-38, 0.1, -0.2]
    f64 = np.concatenate([np.array(sp64, dtype="<f8"),
                          rng.standard_normal(64) * 10.0 ** rng.integers(-40, 40, size=64),
                          rng.integers(0, 2**63, size=32, dtype=np.int64).astype("<i8").view("<f8")])
    f64 = f64.astype("<f8")
    with np.errstate(all="ignore"):
        write("f64", f64.tobytes(), f64.astype(np.float32))
    REPORT.append("f64    oracle: numpy astype(float32) (C cast)")

    # integers
    i8 = np.arange(-128, 128, dtype="<i1")
    write("i8", i8.tobytes(), i8.astype(np.float32))
    i16 = np.concatenate([np.array([-32768, -1, 0, 1, 32767], dtype="<i2"),
                          rng.integers(-32768, 32768, size=59).astype("<i2")])
    write("i16", i16.tobytes(), i16.astype(np.float32))
    edges32 = [-2**31, 2**31 - 1, 0, -1, 2**24, 2**24 + 1, 2**24 + 3, -(2**24 + 1), 2**25 + 2,
               2**25 + 6, 2**31 - 64, 2**31 - 65, 2**31 - 192, 123456789]
    i32 = np.concatenate([np.array(edges32, dtype="<i4"),
                          rng.integers(-2**31, 2**31, size=50, dtype=np.int64).astype("<i4")])
    write("i32", i32.tobytes(), i32.astype(np.float32))
    edges64 = [-2**63, 2**63 - 1, 0, -1, 2**24 + 1, 2**53 + 1, 2**40 + 2**16 + 1, 2**40 + 2**15,
               2**40 + 3 * 2**15, -(2**62 + 2**38), 2**62 + 2**38 + 1, 9007199254740993]
    i64 = np.concatenate([np.array(edges64, dtype="<i8"),
                          rng.integers(-2**63, 2**63 - 1, size=52, dtype=np.int64).astype("<i8")])
    write("i64", i64.tobytes(), i64.astype(np.float32))
    REPORT.append("i8..i64 oracle: numpy astype(float32) (C cast)")


def main() -> None:
    oracle = ggml_oracle.load()
    quantized(oracle, "q4_0", gen_d_qs(16))
    quantized(oracle, "q4_1", gen_d_m_qs(16, 8))
    quantized(oracle, "q5_0", gen_d_qs(4 + 16))
    quantized(oracle, "q5_1", gen_d_m_qs(4 + 16, 8))
    quantized(oracle, "q8_0", gen_d_qs(32))
    quantized(oracle, "q8_1", gen_d_m_qs(32, 8))
    quantized(oracle, "q1_0", gen_d_qs(16))
    quantized(oracle, "q2_0", gen_d_qs(16))
    quantized(oracle, "q8_k", gen_q8_k())
    quantized(oracle, "mxfp4", gen_mxfp4())
    quantized(oracle, "nvfp4", gen_nvfp4())
    quantized(oracle, "tq1_0", gen_tq1_0())
    quantized(oracle, "tq2_0", gen_tq2_0())
    floats(oracle)
    print("\n".join(REPORT))
    total = sum(p.stat().st_size for p in OUT.iterdir() if p.suffix in (".raw", ".f32") and
                p.stem in {"q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q8_1", "q1_0", "q2_0", "q8_k",
                           "mxfp4", "nvfp4", "tq1_0", "tq2_0", "f32", "f16", "bf16", "f64",
                           "i8", "i16", "i32", "i64"})
    print(f"total golden bytes: {total}")


if __name__ == "__main__":
    main()
