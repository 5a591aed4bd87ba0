#!/usr/bin/env python3
"""Compile the CUDA decode kernels with NVRTC, without a GPU, as the CUDA host
side does: one translation unit, `#define GL_NVRTC 1` followed by the files
in the order of `SOURCES` in crates/gguf-loader/src/decode/cuda/mod.rs, with
`--fmad=false`. Reports NVRTC's log, the number of kernels in the PTX (one per
ggml type and output: 35 x 3) and that no fused multiply-add was emitted.

NVRTC comes from the `nvidia-cuda-nvrtc-cu12` wheel (it needs no GPU):
    pip install --target /tmp/nvrtc nvidia-cuda-nvrtc-cu12
    python3 scripts/nvrtc-check.py /tmp/nvrtc/nvidia/cuda_nvrtc/lib/libnvrtc.so.12 [compute_90]
Exits 1 if the compilation fails, a kernel is missing or an fma appears.
"""

from __future__ import annotations

import ctypes
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CUDA = ROOT / "crates/gguf-loader/src/decode/cuda"


def source() -> str:
    """The text `cuda_kernels::source()` returns, from the files SOURCES lists."""
    mod = (CUDA / "mod.rs").read_text()
    names = re.findall(r'\("([\w.]+)", include_str!\("([\w.]+)"\)\)', mod)
    assert names and all(a == b for a, b in names), names
    out = "#define GL_NVRTC 1\n"
    for name, _ in names:
        text = (CUDA / name).read_text()
        out += text if text.endswith("\n") else text + "\n"
    return out


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    lib = ctypes.CDLL(sys.argv[1])
    arch = sys.argv[2] if len(sys.argv) > 2 else "compute_90"
    prog = ctypes.c_void_p()
    rc = lib.nvrtcCreateProgram(ctypes.byref(prog), source().encode(), b"gguf_loader_decode.cu", 0, None, None)
    assert rc == 0, f"nvrtcCreateProgram: {rc}"
    opts = [f"--gpu-architecture={arch}".encode(), b"--fmad=false", b"-std=c++17"]
    rc = lib.nvrtcCompileProgram(prog, len(opts), (ctypes.c_char_p * len(opts))(*opts))
    n = ctypes.c_size_t()
    lib.nvrtcGetProgramLogSize(prog, ctypes.byref(n))
    log = ctypes.create_string_buffer(n.value)
    lib.nvrtcGetProgramLog(prog, log)
    print(log.value.decode().strip() or "(empty log)")
    if rc != 0:
        print(f"compilation failed: {rc}")
        return 1
    lib.nvrtcGetPTXSize(prog, ctypes.byref(n))
    ptx = ctypes.create_string_buffer(n.value)
    lib.nvrtcGetPTX(prog, ptx)
    ptx = ptx.value.decode()
    entries = re.findall(r"\.entry (gl_\w+)\(", ptx)
    fmas = len(re.findall(r"\bfma\.", ptx))
    print(f"{arch}: {len(entries)} kernels, {fmas} fma, {len(ptx)} bytes of PTX")
    return 0 if len(entries) == 35 * 3 and fmas == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
