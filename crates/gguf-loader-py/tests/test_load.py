"""`tensor` and `load` give exactly what the CLI's `convert` writes, in
every output type and both modes; `load` shares one buffer, reports
progress, cancels on request and on Ctrl-C, and releases the GIL."""

import ctypes
import json
import os
import signal
import struct
import threading
import time

import numpy as np
import pytest

import gguf_loader
from conftest import interrupted, run_cli

SAFETENSORS_DTYPE = {"F16": np.float16, "F32": np.float32, "BF16": np.uint16}


def read_safetensors(path):
    """{name: array} from a safetensors file (its format is 8 bytes of header
    length, a JSON header, then the data)."""
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    header.pop("__metadata__", None)
    out = {}
    for name, t in header.items():
        start, end = t["data_offsets"]
        raw = np.frombuffer(data, dtype=np.uint8, offset=8 + n + start, count=end - start)
        out[name] = raw.view(SAFETENSORS_DTYPE[t["dtype"]]).reshape(t["shape"])
    return out


_CONVERTED = {}


def converted(cli, tmp_path_factory, model, dtype):
    """The CLI's `convert --dtype` of `model` to safetensors, once."""
    key = (str(model), dtype)
    if key not in _CONVERTED:
        out = tmp_path_factory.mktemp("convert") / f"{model.stem}.{dtype}.safetensors"
        run_cli(cli, "convert", str(model), "--dtype", dtype, "-o", str(out))
        _CONVERTED[key] = read_safetensors(out)
    return _CONVERTED[key]


def bits(array):
    """The array's values as raw bits (bf16 from ml_dtypes or uint16 alike)."""
    return np.ascontiguousarray(array).view(np.uint8)


def assert_same(ours, want, name):
    assert ours.shape == want.shape, name
    assert np.array_equal(bits(ours), bits(want)), name


# Every output type on SmolLM2, f16 on Gemma-3 too (the same code path).
CASES = [("smollm2", "f16"), ("smollm2", "f32"), ("smollm2", "bf16"), ("gemma", "f16")]


@pytest.mark.parametrize("model,dtype", CASES)
def test_load_equals_convert(cli, tmp_path_factory, request, model, dtype):
    real_model = request.getfixturevalue(model)
    want = converted(cli, tmp_path_factory, real_model, dtype)
    f = gguf_loader.open(real_model)
    got = f.load(dtype)
    assert list(got) == list(f.tensors)
    assert set(got) == set(want)
    for name, array in got.items():
        assert_same(array, want[name], name)


def test_load_shares_one_aligned_buffer(smollm2):
    f = gguf_loader.open(smollm2)
    got = f.load("float16")
    bases = {id(a.base) for a in got.values()}
    assert len(bases) == 1
    base = next(iter(got.values())).base
    for name, a in got.items():
        assert a.dtype == np.float16 and a.flags.c_contiguous and a.flags.writeable
        assert a.shape == f.tensors[name].shape
        # On a 64-byte boundary of memory, not only of the buffer (numpy's
        # own buffers are aligned to 16).
        assert a.ctypes.data % 64 == 0, name
        assert base.ctypes.data <= a.ctypes.data < base.ctypes.data + base.nbytes
    # The dict owns nothing of the file: closing it changes nothing.
    f.close()
    a = got["token_embd.weight"]
    a[0, 0] = 1.0
    assert a[0, 0] == 1.0


def test_read_mode_equals_mmap(cli, tmp_path_factory, smollm2):
    want = converted(cli, tmp_path_factory, smollm2, "f16")
    f = gguf_loader.open(smollm2, mode="read")
    for name, array in f.load().items():
        assert_same(array, want[name], name)
    name = "blk.3.ffn_down.weight"
    assert_same(f.tensor(name), want[name], name)


@pytest.mark.parametrize(
    "model,dtype",
    CASES[:3] + [("smollm2", np.float16), ("smollm2", np.float32), ("gemma", "float16")],
)
def test_tensor_equals_convert(cli, tmp_path_factory, request, model, dtype):
    real_model = request.getfixturevalue(model)
    name = dtype if isinstance(dtype, str) else np.dtype(dtype).name
    short = {"float16": "f16", "float32": "f32", "bfloat16": "bf16"}.get(name, name)
    want = converted(cli, tmp_path_factory, real_model, short)
    f = gguf_loader.open(real_model)
    for name in list(f.tensors)[:: max(1, len(f.tensors) // 12)] + ["token_embd.weight"]:
        t = f.tensor(name, dtype)
        assert t.flags.writeable and t.base is not None
        assert_same(t, want[name], name)


def test_bf16_dtypes(smollm2, monkeypatch):
    f = gguf_loader.open(smollm2)
    name = "blk.0.attn_k.weight"
    t = f.tensor(name, "bfloat16")
    try:
        import ml_dtypes
    except ImportError:  # (not installed, e.g. the aarch64 run under qemu)
        ml_dtypes = None
    if ml_dtypes is not None:
        assert t.dtype == ml_dtypes.bfloat16
        assert f.tensor(name, ml_dtypes.bfloat16).dtype == ml_dtypes.bfloat16
    monkeypatch.setattr(gguf_loader, "_BFLOAT16", None)
    u = f.tensor(name, "bfloat16")
    assert u.dtype == np.uint16 and np.array_equal(u, t.view(np.uint16))
    assert f.load("bfloat16", names=[name])[name].dtype == np.uint16
    # bf16 is f32's top half, rounded to nearest-even.
    bits = f.tensor(name, "float32").view(np.uint32).astype(np.uint64)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
    assert np.array_equal(u, rounded)


def test_names_threads_and_bad_arguments(smollm2):
    f = gguf_loader.open(smollm2)
    names = ["output_norm.weight", "blk.0.attn_q.weight"]
    some = f.load(names=names, threads=1)
    assert list(some) == names
    for name in names:
        assert np.array_equal(some[name], f.tensor(name, threads=2))
    # KeyError(name), as a dict raises it.
    for call in (lambda: f.load(names=["nope"]), lambda: f.tensor("nope"), lambda: f.raw("nope")):
        with pytest.raises(KeyError) as e:
            call()
        assert e.value.args == ("nope",)
    for bad in (0, -1, 10**9, 2**64, -(2**70)):
        # Refused before a thread starts (a billion once took minutes),
        # and when there is nothing to decode.
        with pytest.raises(ValueError, match="threads"):
            f.load(threads=bad)
        with pytest.raises(ValueError, match="threads"):
            f.load(threads=bad, names=[])
        with pytest.raises(ValueError, match="threads"):
            f.tensor(names[0], threads=bad)
    for bad in (1.5, True, "2"):
        with pytest.raises(TypeError, match="threads"):
            f.load(threads=bad, names=[])
    assert f.load(threads=np.int64(1), names=names[:1]).keys() == {names[0]}
    # A lone name is not a list of letters; a progress that is no callable
    # is said before the load starts.
    with pytest.raises(TypeError, match="names must be a sequence"):
        f.load(names=names[0])
    with pytest.raises(TypeError, match="progress must be callable"):
        f.load(progress=3)
    with pytest.raises(ValueError, match="dtype"):
        f.tensor(names[0], "int8")
    # Any name numpy gives a float16 / float32 dtype.
    for name, dtype in (("<f4", np.float32), ("e", np.float16), ("half", np.float16)):
        assert f.tensor(names[0], name).dtype == dtype
    # The outputs are in native byte order: another is refused, not ignored.
    for other in (">f4", np.dtype(">f2")):
        with pytest.raises(ValueError, match="native byte order"):
            f.tensor(names[0], other)
    # A name given twice is decoded once.
    twice = f.load(names=[names[1], names[0], names[1]])
    assert list(twice) == [names[1], names[0]]
    assert twice[names[0]].base.nbytes < 2 * sum(a.nbytes for a in twice.values())
    for bad in ("tpu", "cuda:", "cuda:+1", "cuda:-1", "CUDA"):
        with pytest.raises(ValueError, match="device"):
            f.load(device=bad)
    # A GPU that cannot be used is said so with nothing to load too.
    try:
        gguf_loader.cuda_memory("cuda:0")
    except RuntimeError:
        with pytest.raises(RuntimeError):
            f.load(device="cuda:0", names=[])
    else:  # pragma: no cover - on a GPU machine
        assert f.load(device="cuda:0", names=[]) == {}
    with pytest.raises(ValueError, match="mode"):
        gguf_loader.open(smollm2, mode="fast")
    assert f.load(names=[]) == {}


def test_progress(smollm2):
    f = gguf_loader.open(smollm2)
    seen = []
    f.load("float32", threads=1, progress=seen.append)
    assert seen, "no progress reported"
    last = seen[-1]
    assert last.tensors_done == last.tensors_total == len(f.tensors)
    assert last.bytes_done == last.bytes_total == sum(t.nbytes for t in f.tensors.values())
    assert all(a.bytes_done <= b.bytes_done for a, b in zip(seen, seen[1:]))
    # Nothing to decode: the end is still reported, once.
    seen.clear()
    assert f.load(names=[], progress=seen.append) == {}
    assert seen == [gguf_loader.Progress(0, 0, 0, 0)]


def test_progress_cancels(gemma):
    f = gguf_loader.open(gemma)
    with pytest.raises(gguf_loader.Cancelled):
        f.load("float32", threads=1, progress=lambda p: False)
    # numpy's False too (what a comparison in numpy code returns).
    with pytest.raises(gguf_loader.Cancelled) as cancelled:
        f.load("float32", threads=1, progress=lambda p: np.bool_(p.bytes_done < 0))
    # It pickles as itself: a load cancelled in a multiprocessing worker
    # reaches the parent as Cancelled.
    import pickle

    again = pickle.loads(pickle.dumps(cancelled.value))
    assert type(again) is gguf_loader.Cancelled and str(again) == str(cancelled.value)

    class Boom(Exception):
        pass

    def boom(p):
        raise Boom("from the callback")

    with pytest.raises(Boom):
        f.load("float32", threads=1, progress=boom)

    def interrupt(p):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        f.load("float32", threads=1, progress=interrupt)
    # The file is still usable.
    assert f.tensor("output_norm.weight").shape == (640,)


def test_ctrl_c_cancels_a_load(gemma):
    """A signal whose handler raises KeyboardInterrupt (as Ctrl-C's does)
    during a load without a callback: KeyboardInterrupt comes out of `load`,
    promptly, and nothing is left running. The kernel delivers it (an
    interval timer), so it cannot wait on a Python thread."""
    f = gguf_loader.open(gemma)
    completed, elapsed = interrupted(0.05, lambda: f.load("float32", threads=1))
    assert not completed, f"the load finished in {elapsed:.2f} s, before the signal"
    assert elapsed < 5
    assert f.load(names=["output_norm.weight"])["output_norm.weight"].shape == (640,)


def test_sigint_reaches_a_load(gemma):
    """The real SIGINT, sent by another thread (Python's own handler)."""
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        # A shell starts background jobs with SIGINT ignored, and Python
        # then leaves it so (the test above covers the same path).
        pytest.skip("SIGINT is not Python's KeyboardInterrupt in this process")
    f = gguf_loader.open(gemma)
    timer = threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGINT))
    start = time.perf_counter()
    timer.start()
    try:
        f.load("float32", threads=1)
        completed = True
    except KeyboardInterrupt:
        completed = False
    elapsed = time.perf_counter() - start
    timer.join()
    if completed:
        try:  # the signal may still be on its way
            time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        pytest.skip(f"the load finished in {elapsed:.2f} s, before SIGINT came")
    assert elapsed < 5


def test_gil_is_released(gemma):
    """Python threads run while a load decodes."""
    f = gguf_loader.open(gemma)
    done = threading.Event()
    ticks = 0

    def load():
        f.load("float32", threads=1)
        done.set()

    t = threading.Thread(target=load)
    t.start()
    while not done.is_set():
        ticks += 1
        time.sleep(0.001)
    t.join()
    assert ticks > 10


class _DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class _DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class _DLTensor(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("device", _DLDevice),
        ("ndim", ctypes.c_int32),
        ("dtype", _DLDataType),
        ("shape", ctypes.POINTER(ctypes.c_int64)),
        ("strides", ctypes.POINTER(ctypes.c_int64)),
        ("byte_offset", ctypes.c_uint64),
    ]


class _DLManagedTensor(ctypes.Structure):
    pass


_DLManagedTensor._fields_ = [
    ("dl_tensor", _DLTensor),
    ("manager_ctx", ctypes.c_void_p),
    ("deleter", ctypes.CFUNCTYPE(None, ctypes.POINTER(_DLManagedTensor))),
]


def dlpack_consume_on_gpu(t):
    """What a DLPack consumer such as torch does with a GPU tensor, through
    ctypes and the CUDA driver (so it runs where torch is not installed):
    takes the capsule, checks device, dtype, shape and strides, copies the
    device bytes to the host in the primary context, renames the capsule
    used and calls its deleter. The host bytes, as a numpy array of t's
    dtype and shape."""
    api = ctypes.pythonapi
    api.PyCapsule_GetPointer.restype = ctypes.c_void_p
    api.PyCapsule_GetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
    api.PyCapsule_SetName.argtypes = [ctypes.py_object, ctypes.c_char_p]
    cap = t.__dlpack__(stream=None)
    managed = ctypes.cast(
        api.PyCapsule_GetPointer(cap, b"dltensor"), ctypes.POINTER(_DLManagedTensor)
    )
    dl = managed.contents.dl_tensor
    assert (dl.device.device_type, dl.device.device_id) == (2, 0)
    shape = tuple(dl.shape[i] for i in range(dl.ndim))
    assert shape == tuple(t.shape)
    dtype = {(2, 16): np.float16, (2, 32): np.float32, (4, 16): np.uint16}[(dl.dtype.code, dl.dtype.bits)]
    assert dl.dtype.lanes == 1
    if dl.strides:
        row_major = [int(np.prod(shape[i + 1 :], dtype=np.int64)) for i in range(dl.ndim)]
        assert [dl.strides[i] for i in range(dl.ndim)] == row_major
    out = np.empty(shape, dtype)
    cuda = ctypes.CDLL("libcuda.so.1")
    ctx = ctypes.c_void_p()
    assert cuda.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), 0) == 0
    assert cuda.cuCtxPushCurrent_v2(ctx) == 0
    try:
        if out.nbytes:
            rc = cuda.cuMemcpyDtoH_v2(
                out.ctypes.data_as(ctypes.c_void_p),
                ctypes.c_uint64(dl.data + dl.byte_offset),
                ctypes.c_size_t(out.nbytes),
            )
            assert rc == 0, f"cuMemcpyDtoH: {rc}"
    finally:
        cuda.cuCtxPopCurrent_v2(ctypes.byref(ctypes.c_void_p()))
        cuda.cuDevicePrimaryCtxRelease_v2(0)
    api.PyCapsule_SetName(cap, b"used_dltensor")
    managed.contents.deleter(managed)
    return out


def test_gpu_load(smollm2):
    """On a GPU: equal to the CPU, and handed over by DLPack. Elsewhere: one
    clear RuntimeError."""
    f = gguf_loader.open(smollm2)
    names = ["blk.0.attn_q.weight", "output_norm.weight"]
    try:
        got = f.load(device="cuda:0", names=names)
    except RuntimeError as e:
        if os.environ.get("GGUF_LOADER_REQUIRE_GPU"):
            raise
        assert "cuda:0" in str(e)
        return
    for name, t in got.items():
        assert t.device == "cuda:0" and t.__dlpack_device__() == (2, 0)
        assert np.array_equal(t.numpy(), f.tensor(name)), name
        assert np.array_equal(dlpack_consume_on_gpu(t), f.tensor(name)), name
        # The tensor outlives the consumer's deleter.
        assert np.array_equal(t.numpy(), f.tensor(name)), name
        try:
            import torch
        except ImportError:
            continue
        tt = torch.from_dlpack(t)
        assert tt.device.type == "cuda" and tuple(tt.shape) == t.shape
        assert np.array_equal(tt.cpu().numpy(), f.tensor(name)), name
    one = f.tensor(names[0], "float32", device="cuda:0")
    assert np.array_equal(one.numpy(), f.tensor(names[0], "float32"))


def test_gpu_memory_and_release_staging(smollm2):
    """cuda_memory counts a load's VRAM and gives it back on the drop;
    cuda_release_staging frees the staging ring (four 16 MiB slots). Without
    a GPU: one clear RuntimeError, and releasing nothing is no error."""
    for bad in ["cpu", "cuda:x", "gpu", ""]:
        with pytest.raises(ValueError, match="cuda"):
            gguf_loader.cuda_memory(bad)
        with pytest.raises(ValueError, match="cuda"):
            gguf_loader.cuda_release_staging(bad)
    try:
        free_a, total = gguf_loader.cuda_memory("cuda:0")
    except RuntimeError as e:
        if os.environ.get("GGUF_LOADER_REQUIRE_GPU"):
            raise
        assert "cuda:0" in str(e)
        gguf_loader.cuda_release_staging("cuda:0")
        gguf_loader.cuda_release_staging()
        return
    assert 0 < free_a <= total
    f = gguf_loader.open(smollm2)
    name = "token_embd.weight"
    t = f.tensor(name, "float32", device="cuda:0")
    free_b, _ = gguf_loader.cuda_memory()
    nbytes = t.nbytes
    assert free_a - free_b >= nbytes, (free_a, free_b, nbytes)
    del t
    free_c, _ = gguf_loader.cuda_memory("cuda")
    assert free_c - free_b >= nbytes, (free_b, free_c, nbytes)
    gguf_loader.cuda_release_staging("cuda:0")
    free_d, _ = gguf_loader.cuda_memory("cuda:0")
    assert free_d - free_c >= 64 << 20, (free_c, free_d)
    # A load after makes the ring again.
    t = f.tensor(name, "float16", device="cuda:0")
    assert np.array_equal(t.numpy(), f.tensor(name, "float16"))


def test_readme_example_runs(smollm2, capsys):
    """The README's Python example, as written, on SmolLM2."""
    import re

    from conftest import ROOT

    readme = (ROOT / "README.md").read_text()
    code = re.search(r"## Python.*?```python\n(.*?)```", readme, re.S).group(1)
    code = code.replace('"SmolLM2-135M-Instruct.Q4_1.gguf"', repr(str(smollm2)))
    scope = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert scope["w"].shape == (576, 576) and scope["w"].dtype == np.float16
    assert len(scope["weights"]) == 272
    assert scope["dequantize"] is gguf_loader.dequantize
    assert "Progress(" in capsys.readouterr().out
