#!/usr/bin/env python3
"""Write golden vectors for the i-quants to tests/golden/<name>.{raw,f32}.

For each type: random blocks (fixed seed) with sane f16 scales, plus edge
cases: zero, negative, subnormal, largest and infinite scales, all-0x00 /
all-0xFF payloads under a sane scale, and a fully-0x00 block. No block
decodes to NaN: NaN bits are not reproducible across builds (see below). Expected values come from gguf-py's
`gguf.quants.dequantize`, which is bit-identical to ggml's C on these types.

Usage: python scripts/golden_iquants.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import quants
from gguf.constants import GGML_QUANT_SIZES

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests/golden"

TYPES = [
    ("iq2_xxs", T.IQ2_XXS),
    ("iq2_xs", T.IQ2_XS),
    ("iq2_s", T.IQ2_S),
    ("iq3_xxs", T.IQ3_XXS),
    ("iq3_s", T.IQ3_S),
    ("iq1_s", T.IQ1_S),
    ("iq1_m", T.IQ1_M),
    ("iq4_nl", T.IQ4_NL),
    ("iq4_xs", T.IQ4_XS),
]

N_RANDOM = 24


def f16_bits(x: float) -> int:
    return int(np.array([x], dtype=np.float16).view(np.uint16)[0])


def set_scale(block: np.ndarray, qtype: T, bits: int) -> None:
    """Store the f16 super-block scale `bits` where ggml keeps it."""
    if qtype == T.IQ1_M:
        # No `d` field: the scale's nibbles are the top nibbles of the four
        # u16 words of `scales` (the last 8 bytes), low nibble in word 0.
        sc = block[-8:].view("<u2")
        for w in range(4):
            nib = (bits >> (4 * w)) & 0xF
            sc[w] = (int(sc[w]) & 0x0FFF) | (nib << 12)
    else:
        block[0:2] = np.array([bits], dtype="<u2").view(np.uint8)


def make_blocks(qtype: T, rng: np.random.Generator) -> np.ndarray:
    _, type_size = GGML_QUANT_SIZES[qtype]
    blocks = []

    def new(fill=None) -> np.ndarray:
        if fill is None:
            return rng.integers(0, 256, size=type_size, dtype=np.uint8)
        return np.full(type_size, fill, dtype=np.uint8)

    # Random payloads with sane scales of either sign and varied magnitude.
    for _ in range(N_RANDOM):
        b = new()
        mag = float(10.0 ** rng.uniform(-4, 0))
        sgn = -1.0 if rng.random() < 0.3 else 1.0
        set_scale(b, qtype, f16_bits(sgn * mag))
        blocks.append(b)

    # Scale edge cases on random payloads.
    for bits in (
        0x0000,  # +0
        0x8000,  # -0
        f16_bits(-0.0123),  # negative
        0x0001,  # smallest subnormal
        0x03FF,  # largest subnormal
        0x83A5,  # negative subnormal
        0x7BFF,  # largest finite
        0x7C00,  # +inf
        0xFC00,  # -inf
    ):
        # An infinite scale times a zero factor (IQ4_XS block scale 32) would
        # give NaN; redraw so the golden output holds no NaN (see below).
        while True:
            b = new()
            set_scale(b, qtype, bits)
            if not np.isnan(quants.dequantize(b, qtype)).any():
                break
        blocks.append(b)

    # Payload edge cases under a sane scale, then a fully zero block.
    for fill in (0x00, 0xFF):
        b = new(fill)
        set_scale(b, qtype, f16_bits(0.0371))
        blocks.append(b)
    blocks.append(new(0x00))
    # No NaN scales (a fully-0xFF block has d = 0xFFFF): the sign and payload
    # of a NaN result are not specified by IEEE 754 and differ between builds
    # (C and Rust compilers fold `x * -1.0f` into a negation, which flips a
    # NaN's sign where the multiply instruction keeps it; the default NaN of
    # inf * 0 is negative on x86 and positive on ARM). Rust tests check NaN
    # scales for NaN-ness only.
    return np.stack(blocks)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0x1C0A)
    total = 0
    for name, qtype in TYPES:
        blocks = make_blocks(qtype, rng)
        raw = blocks.reshape(-1)
        expected = quants.dequantize(raw, qtype)
        assert not np.isnan(expected).any(), name
        block_size, type_size = GGML_QUANT_SIZES[qtype]
        assert expected.size == blocks.shape[0] * block_size
        raw_bytes = raw.tobytes()
        f32_bytes = np.asarray(expected, dtype="<f4").tobytes()
        (OUT / f"{name}.raw").write_bytes(raw_bytes)
        (OUT / f"{name}.f32").write_bytes(f32_bytes)
        total += len(raw_bytes) + len(f32_bytes)
        print(f"{name}: {blocks.shape[0]} blocks, {len(raw_bytes)} + {len(f32_bytes)} bytes")
    print(f"total {total} bytes")
    assert total < 1 << 20


if __name__ == "__main__":
    main()
