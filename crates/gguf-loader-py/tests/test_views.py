"""``copy=None`` / ``copy=False``: tensors the file already holds as the
asked float are read-only views of its mapping, the same values as the
copies, alive after the file is closed; everything else is decoded as
ever; ``copy=False`` refuses what cannot be a view, before any work."""

import gc
import sys

import numpy as np
import pytest

import gguf_loader
from conftest import FIXTURES, run_cli

FILE_TYPE = {"float16": "F16", "float32": "F32", "bfloat16": "BF16"}


def bits(array):
    return np.ascontiguousarray(array).view(np.uint8)


def in_mapping(f, name, array):
    """Whether ``array`` lies in the bytes of ``f.raw(name)`` (the mapping)."""
    raw = f.raw(name)
    start = raw.ctypes.data
    return start <= array.ctypes.data and array.ctypes.data + array.nbytes <= start + raw.nbytes


@pytest.fixture(scope="module")
def f16_model(cli, tmp_path_factory, smollm2):
    """SmolLM2 written again as an F16 GGUF (norms kept in F32)."""
    out = tmp_path_factory.mktemp("views") / "smollm2-f16.gguf"
    run_cli(cli, "convert", str(smollm2), "--dtype", "f16", "-o", str(out))
    return out


def check_views(path, dtype):
    """``load`` and ``tensor`` with ``copy=None`` against the copies: the
    same bits, views exactly where the file's type is ``dtype``'s, in the
    file's order. Returns how many were views."""
    f = gguf_loader.open(path)
    want = f.load(dtype)
    got = f.load(dtype, copy=None)
    assert list(got) == list(want) == list(f.tensors)
    views = 0
    for name, a in got.items():
        assert a.shape == want[name].shape and a.dtype == want[name].dtype, name
        assert np.array_equal(bits(a), bits(want[name])), name
        is_view = f.tensors[name].type.name == FILE_TYPE[dtype]
        assert in_mapping(f, name, a) == is_view, name
        assert a.flags.writeable == (not is_view), name
        views += is_view
        one = f.tensor(name, dtype, copy=None)
        assert np.array_equal(bits(one), bits(want[name])), name
        assert in_mapping(f, name, one) == is_view, name
    return views


def test_a_real_f16_model_loads_as_views(f16_model):
    f = gguf_loader.open(f16_model)
    n = len(f.tensors)
    norms = sum(t.type.name == "F32" for t in f.tensors.values())
    assert check_views(f16_model, "float16") == n - norms
    assert check_views(f16_model, "float32") == norms
    with pytest.raises(ValueError, match=r"copy=False: .* as float16: the file holds it as F32"):
        f.load(copy=False)
    views = f.load("float16", copy=False, names=[k for k, t in f.tensors.items() if t.type.name == "F16"])
    assert len(views) == n - norms and not any(a.flags.writeable for a in views.values())


def test_real_models_f32_norms_are_views(real_model):
    assert check_views(real_model, "float32") > 0


def test_every_fixture_type(tmp_path):
    """F16, BF16 and F32 tensors of the all-types fixture: views as their
    own type (bf16 as uint16 bits or ml_dtypes), copies as another."""
    path = FIXTURES / "all_types_le.gguf"
    for dtype in ["float16", "float32", "bfloat16"]:
        assert check_views(path, dtype) >= 1, dtype


def test_views_outlive_the_file(f16_model):
    f = gguf_loader.open(f16_model)
    name = "blk.0.ffn_down.weight"
    want = f.tensor(name)
    view = f.load(copy=None, names=[name])[name]
    one = f.tensor(name, copy=False)
    f.close()
    del f
    gc.collect()
    assert np.array_equal(view, want) and np.array_equal(one, want)
    with pytest.raises(ValueError, match="read-only"):
        view[0, 0] = 1.0
    # A copy of a view is memory of its own, writable.
    c = view.copy()
    c[0, 0] = 1.0
    assert c[0, 0] == 1.0 and view[0, 0] == want[0, 0]


def test_progress_counts_views_and_decodes(f16_model):
    f = gguf_loader.open(f16_model)
    total = sum(t.nbytes for t in f.tensors.values())
    seen = []
    f.load(copy=None, progress=seen.append)
    assert seen[-1] == (len(f.tensors), len(f.tensors), total, total)
    assert all(p.tensors_total == len(f.tensors) and p.bytes_total == total for p in seen)
    assert [p.bytes_done for p in seen] == sorted(p.bytes_done for p in seen)
    # Only views, or only decodes: each counted whole.
    f16 = [k for k, t in f.tensors.items() if t.type.name == "F16"]
    seen.clear()
    f.load(copy=None, names=f16[:3], progress=seen.append)
    want = sum(f.tensors[k].nbytes for k in f16[:3])
    assert seen[-1] == (3, 3, want, want)
    with pytest.raises(gguf_loader.Cancelled):
        f.load(copy=None, progress=lambda p: False)


def test_no_views_where_none_can_be(smollm2, f16_model):
    """Read mode, a big-endian file and quantized tensors: copies with
    ``copy=None``, ``ValueError`` with ``copy=False`` naming the reason."""
    read = gguf_loader.open(f16_model, mode="read")
    name = "blk.0.attn_q.weight"
    a = read.tensor(name, copy=None)
    assert a.flags.writeable
    with pytest.raises(ValueError, match='mode="read"'):
        read.tensor(name, copy=False)
    if sys.byteorder == "little":
        be = gguf_loader.open(FIXTURES / "all_types_be.gguf", mode="mmap")
        f16 = next(k for k, t in be.tensors.items() if t.type.name == "F16")
        assert be.tensor(f16, copy=None).flags.writeable
        with pytest.raises(ValueError, match="big-endian"):
            be.tensor(f16, copy=False)
    q = gguf_loader.open(smollm2)
    with pytest.raises(ValueError, match="holds it as Q4_1, not F16"):
        q.tensor(name, copy=False)
    with pytest.raises(KeyError):
        q.tensor("no.such.tensor", copy=False)
    with pytest.raises(TypeError, match="copy must be"):
        q.tensor(name, copy="no")
    with pytest.raises(ValueError, match="always a copy"):
        q.load(device="cuda:0", copy=False)
