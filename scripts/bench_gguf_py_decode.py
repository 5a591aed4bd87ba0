#!/usr/bin/env python3
"""Times gguf-py's `dequantize(data, type).astype(float16)` per tensor of a
file (the synthetic one that bench/peers' `decode` bench writes), printing GB/s
of f16 output. usage: scripts/bench_gguf_py_decode.py FILE [REPEATS]
"""
import statistics
import sys
import time

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize


def main() -> None:
    reader = GGUFReader(sys.argv[1])
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    print("| type | gguf-py GB/s of f16 |")
    print("|---|---:|")
    for t in reader.tensors:
        times = []
        for _ in range(repeats):
            s = time.perf_counter()
            out = dequantize(t.data, t.tensor_type).astype(np.float16)
            times.append(time.perf_counter() - s)
        print(f"| {t.name} | {out.nbytes / statistics.median(times) / 1e9:.3f} |")


if __name__ == "__main__":
    main()
