#!/usr/bin/env python3
"""Times gguf-py's GGUFReader opening a file (the peer figure in docs/BENCHMARKS.md).

usage: scripts/bench_gguf_py_open.py FILE [REPEATS]
"""
import statistics
import sys
import time

from gguf import GGUFReader


def main() -> None:
    path = sys.argv[1]
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        r = GGUFReader(path)
        assert len(r.tensors) > 0
        times.append((time.perf_counter() - t) * 1e3)
    print(f"gguf-py GGUFReader open: median {statistics.median(times):.1f} ms, "
          f"min {min(times):.1f} ms over {repeats}")


if __name__ == "__main__":
    main()
