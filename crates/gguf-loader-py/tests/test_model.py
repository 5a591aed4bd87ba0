"""``GGUFFile.model()``: the forward pass from Python gives llama.cpp's
logits (NMSE ≤ 1e-4 at every prompt position) and greedy tokens on the F16
GGUFs of both real models, the same bits lazily and in pieces, and refuses
what it cannot run with clear exceptions."""

import gzip
import json
import os

import numpy as np
import pytest

import gguf_loader
from conftest import FIXTURES, GOLDEN, interrupted, run_cli

_F16 = {}


def f16_of(cli, tmp_path_factory, model):
    """`convert --dtype f16` of a real model, once (what llama.cpp's logits
    were made from)."""
    if model not in _F16:
        out = tmp_path_factory.mktemp("model") / f"{model.stem}.f16.gguf"
        run_cli(cli, "convert", str(model), "--dtype", "f16", "-o", str(out))
        _F16[model] = out
    return _F16[model]


def golden(name):
    """llama.cpp's prompts, logits (one row per position) and greedy
    continuations (tests/golden/logits, as crates/gguf-loader-llm reads them)."""
    meta = json.loads((GOLDEN / "logits" / f"{name}.json").read_text())
    blob = gzip.decompress((GOLDEN / "logits" / f"{name}.logits.gz").read_bytes())
    n = meta["n_vocab"]
    at = 0
    out = []
    for p in meta["prompts"]:
        rows = []
        for mean, step in zip(p["mean"], p["step"]):
            hi = np.frombuffer(blob, np.uint8, n, at).astype(np.uint16)
            lo = np.frombuffer(blob, np.uint8, n, at + n).astype(np.uint16)
            q = ((hi << 8) | lo).view(np.int16)
            rows.append((mean + q.astype(np.float64) * step).astype(np.float32))
            at += 2 * n
        out.append((p["ids"], np.stack(rows), p["greedy"]))
    assert at == len(blob)
    return out


def nmse(got, want):
    got, want = got.astype(np.float64), want.astype(np.float64)
    return np.mean((got - want) ** 2) / np.var(want)


@pytest.mark.parametrize("name", ["smollm2", "gemma"])
def test_logits_and_greedy_tokens_of_llama_cpp(cli, tmp_path_factory, request, name):
    f = gguf_loader.open(f16_of(cli, tmp_path_factory, request.getfixturevalue(name)))
    m = f.model("float16")
    assert m.dtype == "float16" and not m.lazy
    n_vocab = m.config["n_vocab"]
    for ids, want, greedy in golden({"smollm2": "smollm2", "gemma": "gemma3"}[name]):
        cache = m.new_cache(len(ids) + len(greedy))
        logits = m.forward(cache, ids, all=True)
        assert logits.shape == (len(ids), n_vocab) and logits.dtype == np.float32
        assert len(cache) == len(ids)
        for pos in range(len(ids)):
            assert nmse(logits[pos], want[pos]) <= 1e-4, (name, pos)
        assert list(m.generate(ids, len(greedy))) == greedy


def test_lazy_pieces_and_the_cache(smollm2):
    """Lazy weights and f32 give a greedy run; a long prompt in pieces of 64
    gives the bits of one token at a time; truncate, copy and clear reuse a
    cache."""
    f = gguf_loader.open(smollm2)
    m = f.model()
    tok = f.tokenizer()
    ids = tok.encode("The quick brown fox jumps over the lazy dog. " * 14)
    assert len(ids) > 130
    cache = m.new_cache(len(ids) + 8)
    whole = m.forward(cache, ids, all=True)
    one = m.new_cache(len(ids))
    rows = np.stack([m.forward(one, [i]) for i in ids])
    assert np.array_equal(whole, rows)
    # A shared prefix: truncated, the next positions give the same logits.
    cache.truncate(100)
    assert len(cache) == 100
    assert np.array_equal(m.forward(cache, ids[100:], all=True), whole[100:])
    copy = cache.copy()
    cache.clear()
    assert len(cache) == 0 and len(copy) == len(ids) and copy.capacity == len(ids) + 8
    lazy = f.model(lazy=True)
    assert lazy.lazy and "lazy" in repr(lazy)
    assert np.array_equal(lazy.forward(lazy.new_cache(len(ids)), ids), whole[-1])
    greedy = list(m.generate(ids[:10], 16))
    assert list(lazy.generate(ids[:10], 16)) == greedy
    assert len(list(f.model("float32").generate(ids[:10], 4))) == 4
    # Sampling: the same seed, the same tokens; stop tokens end it.
    a = list(m.generate(ids[:10], 12, temperature=0.8, top_k=40, top_p=0.95, min_p=0.05, seed=7))
    b = list(m.generate(ids[:10], 12, temperature=0.8, top_k=40, top_p=0.95, min_p=0.05, seed=7))
    assert a == b and len(a) == 12
    assert list(m.generate(ids[:10], 12, stop=[greedy[2]])) == greedy[:3]
    assert list(m.generate([], 5)) == [] and list(m.generate(ids[:3], 0)) == []


def test_a_saved_cache_goes_on_in_a_new_interpreter(smollm2, gemma, tmp_path):
    """``save_cache`` writes a cache as a GGUF file (renamed into place, no
    temporary file left); ``load_cache`` reads it back, in this process or
    a fresh interpreter: the same tokens, and the same logits after them.
    A file that is no cache of this model is ``ValueError`` naming it."""
    import subprocess
    import sys

    f = gguf_loader.open(smollm2)
    m = f.model()
    ids = f.tokenizer().encode("The quick brown fox jumps over the lazy dog. " * 5)
    cache = m.new_cache(len(ids) + 8)
    m.forward(cache, ids)
    assert cache.tokens == ids
    path = tmp_path / "prompt.kvcache"
    m.save_cache(cache, path)
    assert os.listdir(tmp_path) == ["prompt.kvcache"]
    back = m.load_cache(path)
    assert back.tokens == ids and len(back) == len(ids) and back.capacity == cache.capacity
    more = [504, 3458]
    want = m.forward(cache.copy(), more, all=True)
    assert np.array_equal(m.forward(back, more, all=True), want)
    code = (
        "import sys, gguf_loader; m = gguf_loader.open(sys.argv[1]).model(); "
        "c = m.load_cache(sys.argv[2]); "
        f"sys.stdout.buffer.write(m.forward(c, {more!r}, all=True).tobytes())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(smollm2), str(path)], capture_output=True, check=True
    )
    assert np.array_equal(np.frombuffer(out.stdout, np.float32).reshape(want.shape), want)
    # Saved over (a shorter cache), then read by a lazy model.
    cache.truncate(10)
    assert cache.tokens == ids[:10]
    m.save_cache(cache, str(path))
    lazy = f.model(lazy=True)
    assert lazy.load_cache(path).tokens == ids[:10]
    # Not a cache; another model's; missing; a directory in the way.
    for bad, says in ((smollm2, "not a KV cache file"),):
        with pytest.raises(ValueError, match=says) as e:
            m.load_cache(bad)
        assert str(bad) in str(e.value)
    with pytest.raises(ValueError, match="made for another model"):
        gguf_loader.open(gemma).model().load_cache(path)
    with pytest.raises(FileNotFoundError):
        m.load_cache(tmp_path / "nope")
    with pytest.raises(IsADirectoryError):
        m.load_cache(tmp_path)
    if hasattr(os, "mkfifo"):  # (a read of it would block)
        os.mkfifo(tmp_path / "fifo")
        with pytest.raises(ValueError, match="not a regular file"):
            m.load_cache(tmp_path / "fifo")
        os.unlink(tmp_path / "fifo")
    # Never over the model's own file (a link to it included).
    os.symlink(smollm2, tmp_path / "link.gguf")
    for own in (smollm2, tmp_path / "link.gguf"):
        with pytest.raises(ValueError, match="the model's own file"):
            m.save_cache(cache, own)
    os.unlink(tmp_path / "link.gguf")
    (tmp_path / "dir").mkdir()
    with pytest.raises(IsADirectoryError):
        m.save_cache(cache, tmp_path / "dir")
    assert sorted(os.listdir(tmp_path)) == ["dir", "prompt.kvcache"]


def test_a_model_pickles_as_its_file_in_a_new_interpreter(smollm2):
    """A model pickles as its file and how it was loaded, not its weights:
    a fresh interpreter (as a spawned worker) loads it again and gives the
    same logits. (Not under qemu: its interpreter cannot be exec'd there.)"""
    import copy
    import pickle
    import subprocess
    import sys

    f = gguf_loader.open(smollm2)
    m = f.model()
    f.close()  # the model needs the path, not the open file
    ids = [1, 504, 2365, 6354, 15934]
    want = m.forward(m.new_cache(len(ids)), ids)
    code = (
        "import pickle, sys; m = pickle.loads(sys.stdin.buffer.read()); "
        f"ids = {ids!r}; "
        "sys.stdout.buffer.write(m.forward(m.new_cache(len(ids)), ids).tobytes())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], input=pickle.dumps(m), capture_output=True, check=True
    )
    assert np.array_equal(np.frombuffer(out.stdout, np.float32), want)
    # In this process too, as it was loaded: dtype, laziness, views.
    for dtype, lazy, own in (("float16", False, False), ("float32", True, False), ("float16", False, True)):
        here = gguf_loader.open(smollm2).model(dtype, lazy=lazy, own_memory=own)
        again = pickle.loads(pickle.dumps(here))
        assert again is not here and again.dtype == dtype and again.lazy == lazy
        assert again.device == "cpu" and again.config == here.config
        got = again.forward(again.new_cache(len(ids)), ids)
        assert np.array_equal(got, here.forward(here.new_cache(len(ids)), ids))
    # Copies are the model itself (it is immutable); a cache does not pickle.
    assert copy.copy(m) is m and copy.deepcopy(m) is m
    with pytest.raises(TypeError):
        pickle.dumps(m.new_cache(4))


def test_gpu_model(smollm2):
    """On a GPU: the pass there gives the CPU's logits (NMSE ≤ 1e-3: cuBLAS
    sums in its own order), its cache in VRAM copies and truncates, and a
    cache of the other device is refused. Elsewhere: one clear
    RuntimeError. float32 and lazy weights are refused on either."""
    f = gguf_loader.open(smollm2)
    for bad in [dict(dtype="float32"), dict(lazy=True)]:
        with pytest.raises(ValueError, match="float16 weights loaded whole"):
            f.model(device="cuda:0", **bad)
    with pytest.raises(ValueError, match="device must be"):
        f.model(device="gpu")
    try:
        g = f.model(device="cuda:0")
    except RuntimeError as e:
        if os.environ.get("GGUF_LOADER_REQUIRE_GPU"):
            raise
        assert "cuda:0" in str(e)
        return
    assert (g.device, g.dtype, g.lazy) == ("cuda:0", "float16", False) and "cuda:0" in repr(g)
    m = f.model()
    assert m.device == "cpu"
    ids = f.tokenizer().encode("The quick brown fox jumps over the lazy dog.")
    cache = g.new_cache(len(ids) + 8)
    assert cache.device == "cuda:0" and "cuda:0" in repr(cache) and cache.nbytes > 0
    got = g.forward(cache, ids, all=True)
    want = m.forward(m.new_cache(len(ids)), ids, all=True)
    assert got.shape == want.shape and got.dtype == np.float32
    for pos in range(len(ids)):
        assert nmse(got[pos], want[pos]) <= 1e-3, pos
    # A copy in VRAM goes on as the original does.
    copy = cache.copy()
    assert copy.device == "cuda:0" and len(copy) == len(ids)
    assert np.array_equal(g.forward(cache, ids[:1]), g.forward(copy, ids[:1]))
    cache.truncate(3)
    assert len(cache) == 3
    with pytest.raises(ValueError, match="the cache is on cpu, the model on cuda:0"):
        g.forward(m.new_cache(4), [1])
    with pytest.raises(ValueError, match="the cache is on cuda:0, the model on cpu"):
        m.forward(g.new_cache(4), [1])
    assert len(list(g.generate(ids, 4))) == 4


def test_errors(smollm2, gemma):
    f = gguf_loader.open(smollm2)
    m = f.model()
    cache = m.new_cache(4)
    with pytest.raises(ValueError, match="token id 49152 is out of range"):
        m.forward(cache, [1, 49152])
    assert len(cache) == 0
    m.forward(cache, [1, 2, 3])
    with pytest.raises(ValueError, match="the KV cache holds 4 positions; 3 are used and 2 more"):
        m.forward(cache, [4, 5])
    assert len(cache) == 3
    g = gguf_loader.open(gemma).model()
    with pytest.raises(ValueError, match="the KV cache was made for another model"):
        g.forward(cache, [1])
    with pytest.raises(OverflowError):
        m.forward(m.new_cache(2), [-1])
    with pytest.raises(TypeError):
        m.forward(m.new_cache(2), "abc")
    with pytest.raises(ValueError, match='not \'bfloat16\''):
        f.model("bfloat16")
    with pytest.raises(ValueError, match=r"all_types_le\.gguf: "):
        gguf_loader.open(FIXTURES / "all_types_le.gguf").model()
    with pytest.raises(TypeError):
        m.generate([1], max_tokens=2.5)
    with pytest.raises(ValueError):
        m.new_cache(-1)
    # The model keeps what it needs of the file.
    f.close()
    assert len(list(m.generate([1, 2, 3], 3))) == 3


def test_ctrl_c_stops_a_long_prompt(smollm2):
    """A signal whose handler raises KeyboardInterrupt during a long prompt:
    it comes out of `forward` promptly, and the cache is as it was."""
    f = gguf_loader.open(smollm2)
    m = f.model()
    ids = [(i * 7919) % 49000 + 100 for i in range(4096)]
    cache = m.new_cache(len(ids) + 1)
    m.forward(cache, [1])
    completed, elapsed = interrupted(0.3, lambda: m.forward(cache, ids))
    assert not completed, f"4096 positions ran in {elapsed:.2f} s, before the signal"
    # At most a piece of 64 positions after the signal (seconds natively; a
    # minute leaves room for emulation, as under qemu).
    assert elapsed < 60
    assert len(cache) == 1
