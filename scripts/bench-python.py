#!/usr/bin/env python3
"""The Python package against gguf-py, in one run (docs/BENCHMARKS.md).

  open        `gguf.GGUFReader(path)` against `gguf_loader.open(path)` with
              its metadata keys and tensor infos read (what GGUFReader
              builds), on SmolLM2-135M and Gemma-3-270M;
  dequantize  `gguf.quants.dequantize` against `gguf_loader.dequantize`,
              per type gguf-py has, on two TinyLlama-shaped tensors
              synthesized by `gguf-loader synth` in that type:
              blk.0.attn_q.weight (2048 x 2048, 16.8 MB of float32 out)
              and blk.0.ffn_down.weight (2048 x 5632, 46 MB out). The
              first is under glibc's largest mmap threshold (32 MiB), so
              each output reuses memory freed by the one before; the second
              gets fresh pages that the kernel zeroes on first touch, on
              both sides. `np.ones` of each size is the floor: allocating
              and writing the output once;
  load        every tensor to float16: gguf-py's `dequantize(...)
              .astype(np.float16)` over `reader.tensors` against
              `f.load("float16")`, on both real models.

Medians of repeated runs (gguf-py fewer: it is slow); each ratio comes from
the same run. Prints a markdown table, and JSON with --json FILE.

  scripts/bench-python.py [--reps N] [--types Q4_0,Q4_K] [--json out.json]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

import gguf
import gguf.quants
import gguf_loader

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.environ.get("GGUF_LOADER_CACHE", os.path.expanduser("~/.cache/gguf-loader"))
MODELS = {
    "SmolLM2-135M Q4_1": os.environ.get("GGUF_LOADER_MODEL", os.path.join(CACHE, "SmolLM2-135M-Instruct.Q4_1.gguf")),
    "Gemma-3-270M Q4_K_M": os.environ.get("GGUF_LOADER_GEMMA", os.path.join(CACHE, "gemma-3-270m-q4_k_m.gguf")),
}
CLI = os.environ.get("GGUF_LOADER_CLI", os.path.join(ROOT, "target", "release", "gguf-loader"))


def median_time(fn, reps):
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_open(reps):
    rows = []
    for label, path in MODELS.items():

        def ours():
            f = gguf_loader.open(path)
            len(f.metadata)
            len(f.tensors)

        mine = median_time(ours, reps * 10)
        theirs = median_time(lambda: gguf.GGUFReader(path), max(2, reps // 2))
        rows.append({"model": label, "gguf_py_s": theirs, "ours_s": mine, "ratio": theirs / mine})
    return rows


TENSORS = {"attn_q": "blk.0.attn_q.weight", "ffn_down": "blk.0.ffn_down.weight"}


def bench_dequantize(reps, types):
    rows = []
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as tmp:
        for ty in types:
            path = os.path.join(tmp, f"{ty.name}.gguf")
            subprocess.run(
                [CLI, "synth", "--preset", "tinyllama-1.1b", "--type", ty.name.lower(), "-o", path],
                check=True,
                stdout=subprocess.DEVNULL,
            )
            f = gguf_loader.open(path)
            infos = {short: f.tensors[name] for short, name in TENSORS.items()}
            datas = {
                short: np.array(f.raw(info.name)).reshape(info.shape[0], -1)
                for short, info in infos.items()
            }
            f.close()
            os.unlink(path)
            # The synthesized file's writeback would compete with the timings.
            os.sync()
            time.sleep(1)
            row = {"type": ty.name}
            for short, info in infos.items():
                if int(info.type) != int(ty):
                    print(f"skip {ty.name}: synth wrote {info.type.name}", file=sys.stderr)
                    break
                data = datas[short]
                gguf_loader.dequantize(data, ty)  # warm-up
                mine = median_time(lambda: gguf_loader.dequantize(data, ty), reps * 4)
                with np.errstate(all="ignore"):
                    theirs = median_time(lambda: gguf.quants.dequantize(data, ty), reps)
                floor = median_time(lambda: np.ones(info.n_elements, np.float32), reps * 4)
                row[short] = {
                    "elements": info.n_elements,
                    "gguf_py_s": theirs,
                    "ours_s": mine,
                    "ones_s": floor,
                    "gguf_py_gbs": info.n_elements * 4 / theirs / 1e9,
                    "ours_gbs": info.n_elements * 4 / mine / 1e9,
                    "ratio": theirs / mine,
                }
            if len(row) > 1:
                rows.append(row)
                print(f"  {ty.name}: " + ", ".join(f"{k} {row[k]['ratio']:.0f}x" for k in TENSORS if k in row), file=sys.stderr)
    return rows


def bench_load(reps):
    rows = []
    for label, path in MODELS.items():
        f = gguf_loader.open(path)
        mine = median_time(lambda: f.load("float16"), reps * 4)
        out_bytes = sum(t.n_elements for t in f.tensors.values()) * 2
        reader = gguf.GGUFReader(path)

        def theirs():
            with np.errstate(all="ignore"):
                return {
                    t.name: gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float16)
                    for t in reader.tensors
                }

        slow = median_time(theirs, max(2, reps // 2))
        rows.append(
            {
                "model": label,
                "gguf_py_s": slow,
                "ours_s": mine,
                "ours_gbs": out_bytes / mine / 1e9,
                "ratio": slow / mine,
            }
        )
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--types", help="comma-separated type names (default: every type gguf-py has)")
    ap.add_argument("--skip", default="", help="comma-separated parts to skip: open,dequantize,load")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    types = sorted(gguf.quants._type_traits, key=int)
    if args.types:
        types = [gguf.GGMLQuantizationType[n.strip().upper()] for n in args.types.split(",")]
    skip = set(filter(None, args.skip.split(",")))
    out = {"cpus": os.cpu_count(), "numpy": np.__version__, "gguf_py": gguf.__version__ if hasattr(gguf, "__version__") else "?"}
    if "open" not in skip:
        out["open"] = bench_open(args.reps)
        print("| model | gguf-py GGUFReader | gguf_loader.open | ratio |\n|---|---|---|---|")
        for r in out["open"]:
            print(f"| {r['model']} | {r['gguf_py_s'] * 1e3:.0f} ms | {r['ours_s'] * 1e3:.2f} ms | {r['ratio']:.0f}x |")
    if "dequantize" not in skip:
        out["dequantize"] = bench_dequantize(args.reps, types)
        print(
            "\n| type | attn_q: gguf-py | gguf_loader | ratio | ffn_down: gguf-py | gguf_loader | ratio |"
            "\n|---|---|---|---|---|---|---|"
        )
        for r in out["dequantize"]:
            cells = []
            for k in TENSORS:
                d = r.get(k)
                if d is None:
                    cells += ["-", "-", "-"]
                    continue
                cells += [
                    f"{d['gguf_py_s'] * 1e3:.1f} ms ({d['gguf_py_gbs']:.2f} GB/s)",
                    f"{d['ours_s'] * 1e3:.2f} ms ({d['ours_gbs']:.1f} GB/s)",
                    f"**{d['ratio']:.0f}x**",
                ]
            print(f"| {r['type']} | " + " | ".join(cells) + " |")
        floors = out["dequantize"][0] if out["dequantize"] else {}
        for k in TENSORS:
            if k in floors:
                print(f"\nnp.ones floor, {k}: {floors[k]['ones_s'] * 1e3:.2f} ms")
    if "load" not in skip:
        out["load"] = bench_load(args.reps)
        print("\n| model | gguf-py dequantize + astype(f16) | f.load(\"float16\") | ratio |\n|---|---|---|---|")
        for r in out["load"]:
            print(
                f"| {r['model']} | {r['gguf_py_s']:.2f} s | {r['ours_s'] * 1e3:.0f} ms "
                f"({r['ours_gbs']:.1f} GB/s out) | {r['ratio']:.0f}x |"
            )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
