#!/usr/bin/env python3
"""The Python package on a GPU (run by gpu-check.sh where the GPU machine's
Python has numpy): `load(device="cuda:0")` equals the CPU load bit for bit
in every output type, `tensor(..., device=)` too, DLPack hands the buffers
to torch / cupy without a copy where those are installed, the GPU load
is timed against the CPU's, and `model(device="cuda:0")` (the forward pass
in VRAM) gives the CPU pass's logits (NMSE <= 1e-3: cuBLAS sums in its own
order) and is timed against it.

  gpu-python-check.py MODEL.gguf [MORE.gguf ...]
"""

import os
import sys
import time
import traceback

import numpy as np

import gguf_loader

failed = 0
# Tokens each timed generation makes (gpu-check.sh: fewer in a rehearsal).
N_GEN = int(os.environ.get("N_GEN", "64"))


def check(name, ok):
    global failed
    print(("PASS " if ok else "FAIL ") + name)
    failed |= not ok


def bits(a):
    return np.ascontiguousarray(a).view(np.uint8)


def check_file(path):
    f = gguf_loader.open(path)
    print(f"## {path}: {len(f.tensors)} tensors")
    for dtype in ("float16", "float32", "bfloat16"):
        cpu = f.load(dtype)
        gpu = f.load(dtype, device="cuda:0")
        same = list(gpu) == list(cpu) and all(
            gpu[n].device == "cuda:0"
            and gpu[n].__dlpack_device__() == (2, 0)
            and tuple(gpu[n].shape) == cpu[n].shape
            and np.array_equal(bits(gpu[n].numpy()), bits(cpu[n]))
            for n in cpu
        )
        check(f"python load cuda:0 == cpu, {dtype}", same)
        del gpu
    name = next(iter(f.tensors))
    one = f.tensor(name, "float32", device="cuda:0")
    check("python tensor(device=cuda:0)", np.array_equal(one.numpy(), f.tensor(name, "float32")))
    cpu = f.load("float16")
    for lib in ("torch", "cupy"):
        try:
            mod = __import__(lib)
        except ImportError as e:
            print(f"{lib}: not importable ({e}), DLPack not checked with it")
            continue
        try:
            gpu = f.load("float16", device="cuda:0")
            ok = True
            for n, t in gpu.items():
                x = mod.from_dlpack(t)
                host = x.cpu().numpy() if lib == "torch" else mod.asnumpy(x)
                ok &= np.array_equal(host, cpu[n])
        except Exception as e:
            print(f"{lib}: {type(e).__name__}: {e}")
            ok = False
        check(f"python DLPack into {lib}", ok)
    times = {}
    for device in ("cpu", "cuda:0"):
        runs = []
        for _ in range(5):
            start = time.perf_counter()
            out = f.load("float16", device=device)
            runs.append(time.perf_counter() - start)
            del out
        times[device] = sorted(runs)[2]
    print(
        f"python load float16: cpu {times['cpu'] * 1e3:.1f} ms, cuda:0 {times['cuda:0'] * 1e3:.1f} ms "
        f"(median of 5, first call included in neither: warm-up above)"
    )
    check_model(f)


def nmse(got, want):
    got, want = got.astype(np.float64), want.astype(np.float64)
    return float(np.mean((got - want) ** 2) / np.var(want))


def check_model(f):
    cpu = f.model()
    gpu = f.model(device="cuda:0")
    if "tokenizer.ggml.model" in f.metadata:
        ids = f.tokenizer().encode("The quick brown fox jumps over the lazy dog. " * 4)
    else:
        # A synthetic model (no tokenizer): ids spread over the vocabulary.
        n_vocab = cpu.config["n_vocab"]
        ids = [(100 + 37 * i) % n_vocab for i in range(40)]
    want = cpu.forward(cpu.new_cache(len(ids)), ids, all=True)
    got = gpu.forward(gpu.new_cache(len(ids)), ids, all=True)
    worst = max(nmse(got[p], want[p]) for p in range(len(ids)))
    check(f"python model(device=cuda:0) logits vs cpu, worst NMSE {worst:.2e} <= 1e-3", worst <= 1e-3)
    rates = {}
    for name, m in (("cpu", cpu), ("cuda:0", gpu)):
        runs = []
        for _ in range(3):
            start = time.perf_counter()
            n = len(list(m.generate(ids[:8], N_GEN)))
            runs.append(n / (time.perf_counter() - start))
        rates[name] = sorted(runs)[1]
    print(
        f"python generate {N_GEN} tokens: cpu {rates['cpu']:.1f} tok/s, cuda:0 {rates['cuda:0']:.1f} tok/s "
        f"(median of 3, prompt of 8 included)"
    )


for path in sys.argv[1:]:
    # An exception fails this file's check and lets the next file's run.
    try:
        check_file(path)
    except Exception:
        traceback.print_exc()
        check(f"python {path}: no exception", False)

print("ALL PASSED" if not failed else "SOME CHECKS FAILED")
sys.exit(1 if failed else 0)
