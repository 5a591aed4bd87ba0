#!/usr/bin/env python3
"""Whole process against whole process, alternating, medians:
`gguf-loader load FILE --dtype f16` vs candle-core reading and dequantizing
every tensor to f16 (bench/peers' `candle_load_f16`).

usage: scripts/bench_load_peers.py FILE [REPEATS]
Build first: cargo build --release -p gguf-loader-cli &&
             cargo build --release --manifest-path bench/peers/Cargo.toml --bin candle_load_f16
"""
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OURS = [os.path.join(ROOT, "target/release/gguf-loader"), "load", "--dtype", "f16"]
CANDLE = [os.path.join(ROOT, "bench/peers/target/release/candle_load_f16")]


def run(cmd: list) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def main() -> None:
    path = sys.argv[1]
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    ours, candle = [], []
    run(OURS + [path])  # warm the page cache
    for _ in range(repeats):
        ours.append(run(OURS + [path]))
        candle.append(run(CANDLE + [path]))
    o, c = statistics.median(ours), statistics.median(candle)
    print(f"{os.path.basename(path)}: gguf-loader load f16 {o*1e3:.0f} ms, "
          f"candle-core {c*1e3:.0f} ms, ratio {c/o:.1f}x (median of {repeats})")


if __name__ == "__main__":
    main()
