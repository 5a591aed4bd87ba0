"""Big-endian files as llama.cpp's own converter makes them.

gguf-py's `gguf_convert_endian.py` is the script s390x users run to turn a
model big-endian; it converts F32, F16, BF16, Q4_0, Q8_0, Q4_K, Q6_K, MXFP4
and NVFP4. Models of real shapes from `gguf-loader synth` (SmolLM2-135M with
Q4_K weights and a Q8_0 output head; the tiny preset in each other type) are
converted with it, and every tensor of the big-endian file must load bit for
bit as the little-endian original, mapped and read; `verify` checks every
tensor and `convert` writes the same safetensors file.
"""

import argparse
import builtins
import shutil
import subprocess
from importlib.metadata import version

import numpy as np
import pytest

import gguf_loader
from conftest import run_cli

gguf = pytest.importorskip("gguf")
convert_endian = pytest.importorskip("gguf.scripts.gguf_convert_endian")


def to_big_endian(src, dst, monkeypatch):
    """Copies `src` to `dst` and runs gguf_convert_endian.py's conversion on
    it (answering its prompt), in place, as `gguf_convert_endian.py dst big`."""
    if not hasattr(convert_endian, "byteswap_tensors"):
        # Before its table of block swaps (gguf-py 0.19), the script handled
        # fewer types and swapped whole rows of a multi-row Q8_0 tensor as
        # u16 pairs (it indexed rows as if they were bytes): not an oracle.
        pytest.skip(f"gguf-py {version('gguf')}: its gguf_convert_endian.py predates 0.19's")
    shutil.copyfile(src, dst)
    reader = gguf.GGUFReader(str(dst), "r+")
    monkeypatch.setattr(builtins, "input", lambda *_: "YES")
    convert_endian.convert_byteorder(reader, argparse.Namespace(order="big", dry_run=False))
    reader.data.flush()
    del reader


CASES = [("smollm2-135m", "q4_k")] + [
    ("tiny-test", ty) for ty in ["q4_0", "q8_0", "q6_k", "mxfp4", "nvfp4", "f16", "bf16", "f32"]
]


@pytest.mark.parametrize("preset,ty", CASES, ids=[f"{p}-{t}" for p, t in CASES])
def test_gguf_convert_endian_output_loads_as_the_original(cli, tmp_path, monkeypatch, preset, ty):
    le = tmp_path / "le.gguf"
    be = tmp_path / "be.gguf"
    run_cli(cli, "synth", "--preset", preset, "--type", ty, "-o", str(le))
    to_big_endian(le, be, monkeypatch)

    with gguf_loader.open(le) as f:
        want = {name: a.copy() for name, a in f.load("float32").items()}
        types = {t.type.name for t in f.tensors.values()}
    assert ty.upper() in types
    for mode in ["mmap", "read"]:
        with gguf_loader.open(be, mode=mode) as f:
            assert f.endianness == "big"
            got = f.load("float32")
            assert got.keys() == want.keys()
            for name, a in want.items():
                assert np.array_equal(got[name].view(np.uint32), a.view(np.uint32)), (mode, name)
            name = next(iter(want))
            assert np.array_equal(f.tensor(name, "float16"), want[name].astype(np.float16))

    out = subprocess.run([cli, "verify", str(be)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "skipped" not in out.stdout, out.stdout
    for src in [le, be]:
        run_cli(cli, "convert", str(src), "--dtype", "f16", "-o", str(src.with_suffix(".safetensors")))
    assert le.with_suffix(".safetensors").read_bytes() == be.with_suffix(".safetensors").read_bytes()


def test_types_without_a_big_endian_order_are_refused(cli, tmp_path, monkeypatch):
    # gguf_convert_endian.py refuses Q5_0; a big-endian file holding it
    # (written by gguf-py directly) is refused by name, as the CLI says.
    path = tmp_path / "q5.gguf"
    w = gguf.GGUFWriter(str(path), "llama", endianess=gguf.GGUFEndian.BIG)
    block = np.zeros(22, dtype=np.uint8)
    w.add_tensor("w", block, raw_shape=(1, 22), raw_dtype=gguf.GGMLQuantizationType.Q5_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with gguf_loader.open(path) as f:
        with pytest.raises(ValueError, match="Q5_0 data in a big-endian file cannot be decoded"):
            f.tensor("w")
