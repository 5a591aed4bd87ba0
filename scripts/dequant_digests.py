#!/usr/bin/env python3
"""Decodes every tensor of a GGUF file with gguf-py and prints, per tensor,
the SHA-256 of its values as little-endian f32 and as f16 (numpy's
round-to-nearest-even cast), as JSON: {name: {"f32": hex, "f16": hex}}.

The Rust tests compare gguf-loader's decoding of the real model against this.
usage: scripts/dequant_digests.py FILE
"""
import hashlib
import json
import sys

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize


def main() -> None:
    reader = GGUFReader(sys.argv[1])
    out = {}
    for t in reader.tensors:
        values = dequantize(t.data, t.tensor_type).astype("<f4", copy=False)
        out[t.name] = {
            "f32": hashlib.sha256(values.tobytes()).hexdigest(),
            "f16": hashlib.sha256(values.astype("<f2").tobytes()).hexdigest(),
        }
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
