#!/usr/bin/env python3
"""ggml's own C as a decoding oracle.

Builds a tiny shared library from ONLY `ggml/src/ggml-quants.c` of the
llama.cpp vendored in the llama-cpp-python 0.3.36 sdist (plus a few stubs for
the symbols it references from ggml.c) and exposes its reference
`dequantize_row_*` routines through ctypes.

Sdist location: env `LLAMA_CPP_SDIST` (default /tmp/lcp/llama_cpp_python-0.3.36,
the unpacked directory). If it is missing, the script fetches the sdist with

    pip download --no-deps --no-binary :all: --no-build-isolation llama-cpp-python==0.3.36

into the parent directory and unpacks it (or unpacks an already present
`llama_cpp_python-0.3.36.tar.gz` next to it).

Build: `gcc -O1 -fPIC -shared -ffp-contract=off` with no `-march`, so no FMA
contraction and no F16C: C `float` math as written, fp16 conversion by
ggml's portable `ggml_compute_fp16_to_fp32`.

Wrapper-only helpers (not ggml functions):
  * `oracle_dequantize_row_q8_1`: ggml has no Q8_1 dequantizer (it is only a
    dot-product intermediate; ggml-quants.h comments its prototype out). The
    helper applies ggml's Q8_0 formula `y = qs[j]*d` to block_q8_1, ignoring `s`.
  * `oracle_fp16_to_fp32_row` / `oracle_bf16_to_fp32_row`: ggml.c's
    `ggml_fp16_to_fp32_row` / `ggml_bf16_to_fp32_row` bodies (same macros).

Usage as a module: `ggml_oracle.load()` returns an object with
`dequantize(name, raw_bytes) -> np.ndarray[float32]`.
Usage as a script: builds the library and prints its path.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np

VERSION = "0.3.36"
DEFAULT_SDIST = f"/tmp/lcp/llama_cpp_python-{VERSION}"

WRAPPER = r"""
#include "ggml-quants.c"
#include <stdarg.h>

/* stubs for the ggml.c symbols ggml-quants.c references (quantizers only) */
void ggml_abort(const char * file, int line, const char * fmt, ...) {
    va_list ap; va_start(ap, fmt);
    fprintf(stderr, "ggml_abort %s:%d: ", file, line); vfprintf(stderr, fmt, ap);
    va_end(ap); abort();
}
size_t ggml_type_size(enum ggml_type type) { (void)type; abort(); }
size_t ggml_row_size(enum ggml_type type, int64_t ne) { (void)type; (void)ne; abort(); }
const char * ggml_type_name(enum ggml_type type) { (void)type; return "?"; }

/* ggml has no dequantize_row_q8_1; Q8_0's formula on block_q8_1 (s unused) */
void oracle_dequantize_row_q8_1(const block_q8_1 * GGML_RESTRICT x, float * GGML_RESTRICT y, int64_t k) {
    static const int qk = QK8_1;
    const int nb = k / qk;
    for (int i = 0; i < nb; i++) {
        const float d = GGML_FP16_TO_FP32(x[i].d);
        for (int j = 0; j < qk; ++j) {
            y[i*qk + j] = x[i].qs[j]*d;
        }
    }
}

/* bodies of ggml.c's ggml_fp16_to_fp32_row / ggml_bf16_to_fp32_row */
void oracle_fp16_to_fp32_row(const ggml_fp16_t * x, float * y, int64_t n) {
    for (int64_t i = 0; i < n; i++) { y[i] = GGML_FP16_TO_FP32(x[i]); }
}
void oracle_bf16_to_fp32_row(const ggml_bf16_t * x, float * y, int64_t n) {
    for (int64_t i = 0; i < n; i++) { y[i] = GGML_BF16_TO_FP32(x[i]); }
}
"""

# name -> (C symbol, block_size, type_size)
TYPES = {
    "q1_0": ("dequantize_row_q1_0", 128, 18),
    "q2_0": ("dequantize_row_q2_0", 64, 18),
    "q4_0": ("dequantize_row_q4_0", 32, 18),
    "q4_1": ("dequantize_row_q4_1", 32, 20),
    "q5_0": ("dequantize_row_q5_0", 32, 22),
    "q5_1": ("dequantize_row_q5_1", 32, 24),
    "q8_0": ("dequantize_row_q8_0", 32, 34),
    "q8_1": ("oracle_dequantize_row_q8_1", 32, 36),
    "q8_k": ("dequantize_row_q8_K", 256, 292),
    "mxfp4": ("dequantize_row_mxfp4", 32, 17),
    "nvfp4": ("dequantize_row_nvfp4", 64, 36),
    "tq1_0": ("dequantize_row_tq1_0", 256, 54),
    "tq2_0": ("dequantize_row_tq2_0", 256, 66),
    "f16": ("oracle_fp16_to_fp32_row", 1, 2),
    "bf16": ("oracle_bf16_to_fp32_row", 1, 2),
}


def sdist_dir() -> Path:
    d = Path(os.environ.get("LLAMA_CPP_SDIST", DEFAULT_SDIST))
    if (d / "vendor/llama.cpp/ggml/src/ggml-quants.c").is_file():
        return d
    parent = d.parent
    parent.mkdir(parents=True, exist_ok=True)
    tgz = parent / f"llama_cpp_python-{VERSION}.tar.gz"
    if not tgz.is_file():
        print(f"ggml_oracle: downloading llama-cpp-python=={VERSION} sdist into {parent}", file=sys.stderr)
        subprocess.check_call([
            sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
            "--no-build-isolation", "-d", str(parent), f"llama-cpp-python=={VERSION}",
        ])
    with tarfile.open(tgz) as tf:
        members = [m for m in tf.getmembers() if "/vendor/llama.cpp/ggml/" in m.name]
        tf.extractall(parent, members=members)
    return d


def build(out_dir: Path | None = None) -> Path:
    src = sdist_dir() / "vendor/llama.cpp/ggml"
    out_dir = out_dir or Path(os.environ.get("GGML_ORACLE_BUILD", "/tmp/ggml_oracle_build"))
    out_dir.mkdir(parents=True, exist_ok=True)
    tag = hashlib.sha256((WRAPPER + str(src)).encode()).hexdigest()[:12]
    lib = out_dir / f"libggml_oracle_{tag}.so"
    if lib.is_file():
        return lib
    wrapper = out_dir / "ggml_oracle.c"
    wrapper.write_text(WRAPPER)
    cmd = [
        "gcc", "-std=gnu11", "-O1", "-fPIC", "-shared", "-ffp-contract=off",
        f"-I{src}/include", f"-I{src}/src", f"-I{src}/src/ggml-cpu",
        str(wrapper), "-o", str(lib), "-lm",
    ]
    subprocess.check_call(cmd)
    return lib


class Oracle:
    def __init__(self, lib: Path):
        self.lib = ctypes.CDLL(str(lib))
        for sym, _, _ in TYPES.values():
            f = getattr(self.lib, sym)
            f.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
            f.restype = None

    def dequantize(self, name: str, raw: bytes) -> np.ndarray:
        sym, bs, ts = TYPES[name]
        assert len(raw) % ts == 0, (name, len(raw))
        k = len(raw) // ts * bs
        src = np.frombuffer(bytes(raw), dtype=np.uint8).copy()
        out = np.zeros(k, dtype=np.float32)
        getattr(self.lib, sym)(src.ctypes.data, out.ctypes.data, k)
        return out


def load() -> Oracle:
    return Oracle(build())


if __name__ == "__main__":
    print(build())
