#!/usr/bin/env python3
"""Golden vectors for the k-quants (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K).

For each type this writes, at the repository root:

  tests/golden/<name>.raw  whole blocks of that type (raw bytes)
  tests/golden/<name>.f32  the values ggml decodes them to, little-endian f32

Expected values come from gguf-py (`gguf.quants.dequantize`, PyPI `gguf`
0.19.0), whose numpy k-quant dequantizers are bit-identical to ggml's C
`dequantize_row_*_K` reference routines.

Blocks: random bytes with sane f16 scales (fixed seed), plus edge cases:
zero / negative / subnormal / max-finite / NaN `d`, zero / negative /
subnormal `dmin`, quant areas all 0x00 or all 0xFF, scale bytes all 0x00
or all 0xFF, and whole blocks of 0x00 or 0xFF.

Usage: python3 scripts/golden_kquants.py
"""

from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize

SEED = 0x4B51  # "KQ"
N_RANDOM = 24

# name -> (type, block bytes, offset of d, offset of dmin or None, scales (start, end))
LAYOUTS = {
    "q2_k": (T.Q2_K, 84, 80, 82, (0, 16)),
    "q3_k": (T.Q3_K, 110, 108, None, (96, 108)),
    "q4_k": (T.Q4_K, 144, 0, 2, (4, 16)),
    "q5_k": (T.Q5_K, 176, 0, 2, (4, 16)),
    "q6_k": (T.Q6_K, 210, 208, None, (192, 208)),
}

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "golden"


def f16_bytes(bits: int) -> bytes:
    return int(bits).to_bytes(2, "little")


def f16_of(x: float) -> int:
    return int(np.array([x], dtype=np.float16).view(np.uint16)[0])


def sane_d(rng: np.random.Generator, negative_ok: bool = True) -> int:
    x = rng.uniform(1e-4, 0.1)
    if negative_ok and rng.random() < 0.25:
        x = -x
    return f16_of(x)


def blocks_for(name: str) -> np.ndarray:
    qtype, size, d_off, dmin_off, (s0, s1) = LAYOUTS[name]
    rng = np.random.default_rng(SEED + size)

    def block(d: int | None = None, dmin: int | None = None, fill=None, scales=None) -> bytearray:
        if fill is None:
            b = bytearray(rng.integers(0, 256, size, dtype=np.uint8).tobytes())
        else:
            b = bytearray([fill]) * size
        if scales is not None:
            b[s0:s1] = bytes([scales]) * (s1 - s0)
        if d is not None:
            b[d_off : d_off + 2] = f16_bytes(d)
        if dmin_off is not None and dmin is not None:
            b[dmin_off : dmin_off + 2] = f16_bytes(dmin)
        return b

    out: list[bytearray] = []
    # Random blocks with sane scales (dmin is positive in real models, but
    # let it go negative sometimes too).
    for _ in range(N_RANDOM):
        out.append(block(sane_d(rng), sane_d(rng)))

    sd, sm = sane_d(rng, False), sane_d(rng, False)
    # Quant areas (everything but the f16 fields) all min / all max.
    out.append(block(sd, sm, fill=0x00))
    out.append(block(sd, sm, fill=0xFF))
    # Scale bytes all min / all max with random quants.
    out.append(block(sd, sm, scales=0x00))
    out.append(block(sd, sm, scales=0xFF))
    # Zero d (with a nonzero dmin) and zero dmin.
    out.append(block(0x0000, sm))
    out.append(block(0x8000, sm))  # -0.0
    out.append(block(sd, 0x0000))
    # Negative d and negative dmin.
    out.append(block(f16_of(-0.0625), f16_of(-0.03125)))
    # Subnormal f16 d and dmin (smallest, largest, negative).
    out.append(block(0x0001, 0x03FF))
    out.append(block(0x83FF, 0x8001))
    # Largest finite d with max scales and max quants.
    out.append(block(0x7BFF, 0x7BFF, fill=0xFF))
    # A quiet NaN d (propagates through every product).
    out.append(block(0x7E00, sm))
    # Whole blocks of 0x00 (d = dmin = 0) and 0xFF (d = dmin = NaN 0xFFFF).
    out.append(block(fill=0x00))
    out.append(block(fill=0xFF))

    for b in out:
        assert len(b) == size
    return np.frombuffer(b"".join(out), dtype=np.uint8).reshape(len(out), size)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, (qtype, size, *_rest) in LAYOUTS.items():
        raw = blocks_for(name)
        with np.errstate(all="ignore"):
            y = dequantize(raw, qtype)
        y = np.asarray(y, dtype="<f4").reshape(-1)
        assert y.size == raw.shape[0] * 256, (name, y.shape)
        (OUT / f"{name}.raw").write_bytes(raw.tobytes())
        (OUT / f"{name}.f32").write_bytes(y.tobytes())
        print(f"{name}: {raw.shape[0]} blocks, {raw.nbytes} + {y.nbytes} bytes")


if __name__ == "__main__":
    main()
