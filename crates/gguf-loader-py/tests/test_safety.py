"""Nothing a file holds crashes the interpreter (the malformed corpus
raises ValueError / OSError), and a file object outlives nothing it hands
out: views keep the mapping alive, closing while they exist is safe."""

import builtins
import gc
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import gguf_loader
from conftest import CORPUS, FIXTURES

CORPUS_FILES = sorted(CORPUS.glob("*.gguf"))


def exercise(path, mode):
    """Opens `path` and touches everything it offers; returns the error
    raised, if any."""
    try:
        with gguf_loader.open(path, mode) as f:
            for key in f.metadata:
                value = f.metadata[key]
                f.metadata.type(key)
                if isinstance(value, gguf_loader.StringArray):
                    value.tolist()
                    if len(value):
                        value[-1]
            for name, info in f.tensors.items():
                f.raw(name)
                f.tensor(name, "float32")
            f.load("float16")
    except (ValueError, OSError, MemoryError, KeyError) as e:
        return e
    return None


@pytest.mark.parametrize("mode", ["mmap", "read"])
@pytest.mark.parametrize("path", CORPUS_FILES, ids=lambda p: p.name)
def test_malformed_corpus_raises(path, mode):
    error = exercise(path, mode)
    assert error is not None, f"{path.name} opened and decoded"
    assert isinstance(error, (ValueError, OSError)), repr(error)
    assert str(error), "an error without a message"


def test_corpus_never_crashes_the_interpreter():
    """The whole corpus in a child interpreter, so that a crash is a failure
    of this test rather than of the run."""
    code = (
        "import sys, gguf_loader\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "from test_safety import exercise, CORPUS_FILES\n"
        "for p in CORPUS_FILES:\n"
        "    for m in ('mmap', 'read'):\n"
        "        exercise(p, m)\n"
        "print('ok')\n"
    )
    here = str(pathlib.Path(__file__).parent)
    r = subprocess.run([sys.executable, "-c", code, here], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_messages_match_the_cli(cli):
    """The same words as `gguf-loader inspect` prints after `error: `."""
    for path in CORPUS_FILES[:10]:
        with pytest.raises((ValueError, OSError)) as e:
            gguf_loader.open(path)
        r = subprocess.run([cli, "inspect", str(path)], capture_output=True, text=True)
        assert r.returncode != 0
        assert str(e.value) in r.stderr, (path.name, str(e.value), r.stderr)


def test_os_errors(tmp_path):
    missing = tmp_path / "missing.gguf"
    with pytest.raises(FileNotFoundError) as e:
        gguf_loader.open(missing)
    # As builtins.open raises it: errno, strerror and filename apart.
    with pytest.raises(FileNotFoundError) as builtin:
        builtins.open(missing, "rb")
    assert (e.value.errno, e.value.strerror, e.value.filename) == (
        builtin.value.errno,
        builtin.value.strerror,
        str(missing),
    )
    assert str(e.value) == str(builtin.value)
    with pytest.raises(IsADirectoryError, match="directory") as e:
        gguf_loader.open(tmp_path)
    assert e.value.errno == 21  # as builtins.open says it
    assert e.value.filename == str(tmp_path)
    for bad in ("a\0b", b"a\0b"):
        with pytest.raises(ValueError, match="embedded null byte"):
            gguf_loader.open(bad)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="not a regular file"):
        gguf_loader.open(fifo)
    empty = tmp_path / "empty.gguf"
    empty.write_bytes(b"")
    with pytest.raises(ValueError):
        gguf_loader.open(empty)


def test_views_outlive_the_file(smollm2):
    f = gguf_loader.open(smollm2)
    raw = f.raw("blk.0.attn_q.weight")
    copy = raw.copy()
    scores = f.metadata["tokenizer.ggml.token_type"]
    tokens = f.metadata["tokenizer.ggml.tokens"]
    weights = f.load(names=["output_norm.weight"])
    f.close()
    assert f.closed
    with pytest.raises(ValueError, match="closed"):
        f.raw("blk.0.attn_q.weight")
    with pytest.raises(ValueError, match="closed"):
        f.metadata["general.architecture"]
    with pytest.raises(ValueError, match="closed"):
        f.load()
    del f
    gc.collect()
    assert np.array_equal(raw, copy)
    assert scores.sum() > 0 and tokens[100] and len(tokens.tolist()) == len(tokens)
    assert weights["output_norm.weight"].shape == (576,)
    with pytest.raises(ValueError):
        raw[0] = 1  # the mapping is read-only, and so is its view


def test_close_twice_and_context_manager(smollm2):
    with gguf_loader.open(smollm2) as f:
        assert not f.closed
        raw = f.raw("output_norm.weight")
    assert f.closed
    f.close()
    assert raw.sum() != 0
    assert "closed" in repr(f)


def test_file_is_unmapped_when_the_last_view_goes(smollm2):
    """The mapping goes with the last view, not before, not never."""

    def mapped():
        with open("/proc/self/maps") as m:
            return sum(str(smollm2) in line for line in m)

    before = mapped()
    f = gguf_loader.open(smollm2)
    raw = f.raw("output_norm.weight")
    del f
    gc.collect()
    assert mapped() > before
    del raw
    gc.collect()
    assert mapped() == before


def test_dlpack_capsule_on_the_cpu(smollm2):
    """The DLPack export (the GPU's path) through numpy on the CPU."""
    from gguf_loader import _native

    f = gguf_loader.open(smollm2)
    name = "blk.0.attn_q.weight"
    for dtype in ("float16", "float32"):
        ((_, t),) = _native.load_device(f._native, "cpu", dtype, None, None, [name])
        assert t.__dlpack_device__() == (1, 0) and t.device == "cpu"
        a = np.from_dlpack(t)
        assert a.dtype == dtype and a.shape == tuple(t.shape) == f.tensors[name].shape
        assert np.array_equal(a, f.tensor(name, dtype))
        assert np.array_equal(t.numpy(), a)
        del t
        gc.collect()
        assert np.array_equal(a, f.tensor(name, dtype))  # the capsule keeps it alive
    capsule = _native.load_device(f._native, "cpu", "float16", None, None, [name])[0][1].__dlpack__()
    del capsule  # never consumed: freed by its destructor
    with pytest.raises(BufferError):
        _native.load_device(f._native, "cpu", "float16", None, None, [name])[0][1].__dlpack__(dl_device=(2, 0))
    bf = _native.load_device(f._native, "cpu", "bfloat16", None, None, [name])[0][1]
    assert bf.dtype == "bfloat16" and bf.numpy().dtype == np.uint16


def test_dlpack_tensors_are_writable_memory(smollm2):
    """A tensor the file holds as the asked float (SmolLM2's F32 norms as
    float32) is copied for DLPack, never a view of the read-only mapping: a
    consumer that writes into it (as torch.from_dlpack allows) must not end
    the process, nor change the file."""
    import ctypes

    from gguf_loader import _native

    f = gguf_loader.open(smollm2)
    name = "output_norm.weight"
    assert f.tensors[name].type.name == "F32"
    want = f.tensor(name, "float32").copy()
    ((_, t),) = _native.load_device(f._native, "cpu", "float32", None, None, [name])
    a = np.from_dlpack(t)
    ctypes.memset(a.ctypes.data, 0, a.nbytes)  # a write, whatever numpy's flags say
    assert not a.any()
    assert np.array_equal(f.tensor(name, "float32"), want)
    assert np.array_equal(gguf_loader.open(smollm2).tensor(name, "float32"), want)


def test_fixtures_decode_everywhere():
    """Every fixture tensor decodes in both byte orders to the same values."""
    le = gguf_loader.open(FIXTURES / "all_types_le.gguf")
    be = gguf_loader.open(FIXTURES / "all_types_be.gguf", mode="read")
    for name, info in le.tensors.items():
        a = le.tensor(name, "float32")
        if info.type.name != "Q4_1":
            assert np.array_equal(a, be.tensor(name, "float32"), equal_nan=True), name
        else:  # no converter defines a big-endian layout for Q4_1 blocks
            with pytest.raises(ValueError, match="Q4_1 data in a big-endian file"):
                be.tensor(name)


def test_split_model_opens_as_one(tmp_path):
    """A model in shards (gguf-py writes them) is one file object; each
    tensor's raw view is of its own shard, and shards outlive the object."""
    import gguf

    def shard(no, count, tensors, total):
        path = tmp_path / f"model-{no + 1:05}-of-{count:05}.gguf"
        w = gguf.GGUFWriter(path, arch="llama")
        w.add_uint16("split.no", no)
        w.add_uint16("split.count", count)
        w.add_int32("split.tensors.count", total)
        for name in tensors:
            w.add_tensor(name, np.full(4, no + 0.5, dtype=np.float32))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        return path

    first = shard(0, 2, ["a", "b"], 3)
    second = shard(1, 2, ["c"], 3)
    for mode in ("mmap", "read"):
        f = gguf_loader.open(first, mode)
        assert list(f.tensors) == ["a", "b", "c"]
        assert f.paths == (str(first), str(second))
        assert f.metadata["general.architecture"] == "llama"
        raw_c = f.raw("c")
        loaded = f.load("float32")
        # Views of each shard's own mapping (in mmap mode).
        viewed = f.load("float32", copy=None)
        assert [a.flags.writeable for a in viewed.values()] == [mode == "read"] * 3
        f.close()
        assert np.array_equal(raw_c.view(np.float32), np.full(4, 1.5, np.float32))
        for got in (loaded, viewed):
            assert np.array_equal(got["a"], np.full(4, 0.5, np.float32))
            assert np.array_equal(got["c"], np.full(4, 1.5, np.float32))
    second.unlink()
    with pytest.raises(FileNotFoundError, match="shard 2 of 2 is missing") as e:
        gguf_loader.open(first)
    assert (e.value.errno, e.value.filename) == (2, str(second))


def _run_python(code: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """`code` in a Python of its own (a crash there fails the test, not the
    test run)."""
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout
    )


# A child process's address space limited to what it holds plus `room`
# bytes: outputs larger than that cannot be allocated, whatever the machine.
_LIMIT_ADDRESS_SPACE = """
import resource

def limit_address_space(room):
    with open("/proc/self/status") as status:
        vm = next(int(l.split()[1]) * 1024 for l in status if l.startswith("VmSize:"))
    resource.setrlimit(resource.RLIMIT_AS, (vm + room, vm + room))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc: Linux")
def test_outputs_that_cannot_be_allocated_raise_memory_error(tmp_path):
    """`dequantize`, `tensor` and `load` raise MemoryError when their output
    cannot be had; they once aborted the interpreter (dequantize) or raised
    a PanicException (load, tensor)."""
    import gguf

    path = tmp_path / "sparse.gguf"
    n = 64 << 20  # Q4_0 elements: 36 MiB in the file (sparse), 256 MiB as f32
    nbytes = n // 32 * 18
    w = gguf.GGUFWriter(str(path), arch="llama")
    w.add_tensor_info("big", [nbytes], np.dtype(np.uint8), nbytes, raw_dtype=gguf.GGMLQuantizationType.Q4_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    w.close()
    os.truncate(path, (os.path.getsize(path) + 31) // 32 * 32 + nbytes)
    code = _LIMIT_ADDRESS_SPACE + f"""
import numpy as np, gguf_loader
f = gguf_loader.open({str(path)!r})
data = np.ones(34 * 2_000_000, np.uint8)  # Q8_0: 256 MB as f32
gguf_loader.dequantize(data[:34 * 100], 8)  # the decoding threads start
f.tensor("big", "float16", threads=1)[:1]
limit_address_space(96 << 20)
for call in (
    lambda: gguf_loader.dequantize(data, 8),
    lambda: f.tensor("big", "float32"),
    lambda: f.load("float32"),
):
    try:
        call()
        print("allocated")
    except MemoryError as e:
        print("MemoryError:", e)
"""
    r = _run_python(code)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 3 and all(l.startswith("MemoryError:") for l in lines), r.stdout
    assert "Q8_0" in lines[0]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork")
def test_decoding_in_a_forked_child(smollm2):
    """A child of os.fork() (multiprocessing's default on Linux before 3.14)
    decodes after its parent did: rayon's thread pool does not survive a
    fork, and work queued on it there once waited forever."""
    code = f"""
import os, signal, numpy as np, gguf_loader
f = gguf_loader.open({str(smollm2)!r})
want = f.load()
raw = f.raw("token_embd.weight")
deq = gguf_loader.dequantize(raw, f.tensors["token_embd.weight"].type)
def child():
    signal.alarm(60)  # a hang fails the test instead of the run
    assert all(np.array_equal(v, want[k]) for k, v in f.load().items())
    assert np.array_equal(f.tensor("blk.0.attn_q.weight"), want["blk.0.attn_q.weight"])
    assert np.array_equal(gguf_loader.dequantize(raw, f.tensors["token_embd.weight"].type), deq)
    if os.fork() == 0:  # and its own child
        assert np.array_equal(f.tensor("output_norm.weight"), want["output_norm.weight"])
        os._exit(0)
    _, status = os.wait()
    assert status == 0
pid = os.fork()
if pid == 0:
    try:
        child()
        os._exit(0)
    except BaseException as e:
        print("child:", repr(e), flush=True)
        os._exit(1)
_, status = os.waitpid(pid, 0)
print("child exit", status)
"""
    r = _run_python(code, timeout=240)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("child exit 0"), r.stdout + r.stderr


def test_rayon_num_threads_is_cut_at_four_per_core(smollm2):
    """RAYON_NUM_THREADS=8000 once started 8000 decoding threads (41 s for
    a load of a fifth of a second): the pool is cut at four per core, as
    the CLI's, with a warning."""
    code = (
        "import os, sys, gguf_loader\n"
        "f = gguf_loader.open(sys.argv[1])\n"
        "f.load()\n"
        "print(len(os.listdir('/proc/self/task')))\n"
    )
    env = dict(os.environ, RAYON_NUM_THREADS="8000")
    r = subprocess.run(
        [sys.executable, "-c", code, str(smollm2)],
        capture_output=True, text=True, timeout=120, env=env,
    )
    assert r.returncode == 0, r.stderr
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    # The decoding pool, the thread a load runs on, Python's own.
    assert int(r.stdout.split()[-1]) <= 4 * cores + 8, r.stdout
    assert "RAYON_NUM_THREADS=8000 is more than" in r.stderr


def test_unreadable_rayon_num_threads_is_warned(smollm2):
    """rayon ignores a RAYON_NUM_THREADS it cannot read; the package says so
    (as the CLI does) and starts one thread per core."""
    code = "import sys, gguf_loader\ngguf_loader.open(sys.argv[1]).load()\n"
    for value in ("abc", "-1"):
        env = dict(os.environ, RAYON_NUM_THREADS=value)
        r = subprocess.run(
            [sys.executable, "-c", code, str(smollm2)],
            capture_output=True, text=True, timeout=120, env=env,
        )
        assert r.returncode == 0, r.stderr
        assert f"RAYON_NUM_THREADS={value} is not a thread count" in r.stderr, r.stderr
