"""`gguf_loader.dequantize` is gguf-py's `gguf.quants.dequantize`: the same
shapes and bit-identical values on every type gguf-py has (golden blocks,
random blocks, real tensors), and ggml's own values (the golden files made
with ggml's C) on every type."""

import signal
import sys
import time

import gguf
import gguf.quants
import numpy as np
import pytest

import gguf_loader
from conftest import GOLDEN

# gguf-py's numpy arithmetic warns on the NaN and infinite scales.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

Q = gguf.GGMLQuantizationType
GGUF_PY_TYPES = sorted(gguf.quants._type_traits, key=int)
ALL_TYPES = list(gguf_loader.GGMLType)


def bits_equal(a, b):
    """Bit for bit, except that any NaN equals any NaN (numpy and ggml may
    carry different payloads through arithmetic)."""
    assert a.shape == b.shape and a.dtype == b.dtype == np.float32
    nan = np.isnan(a) & np.isnan(b)
    same = a.view(np.uint32) == b.view(np.uint32)
    bad = np.flatnonzero(~(same | nan))
    assert bad.size == 0, f"{bad.size} values differ, first at {bad[0]}: {a.flat[bad[0]]} != {b.flat[bad[0]]}"


def golden(ty):
    name = ty.name.lower()
    raw = GOLDEN / f"{name}.raw"
    if not raw.exists():
        pytest.skip(f"no golden file for {ty.name}")
    return np.fromfile(raw, dtype=np.uint8), np.fromfile(GOLDEN / f"{name}.f32", dtype="<f4")


def test_types_match_gguf_py():
    for ty in Q:
        assert gguf_loader.GGMLType[ty.name] == ty
        if ty == Q.Q8_1:
            # gguf-py still has the old f32 scales (40 bytes); ggml's block_q8_1
            # has been 2 + 2 + 32 = 36 bytes (ggml_half2 ds) for years.
            assert gguf_loader.GGML_QUANT_SIZES[gguf_loader.GGMLType.Q8_1] == (32, 36)
            continue
        assert gguf_loader.GGML_QUANT_SIZES[gguf_loader.GGMLType(ty)] == gguf.GGML_QUANT_SIZES[ty]


@pytest.mark.parametrize("ty", ALL_TYPES, ids=lambda t: t.name)
def test_golden_equals_ggml(ty):
    raw, want = golden(ty)
    got = gguf_loader.dequantize(raw, ty)
    if ty == gguf_loader.GGMLType.F32:
        got = np.ascontiguousarray(got)
    bits_equal(got, want)


@pytest.mark.parametrize("ty", GGUF_PY_TYPES, ids=lambda t: t.name)
def test_golden_equals_gguf_py(ty):
    raw, _ = golden(gguf_loader.GGMLType(ty))
    _, type_size = gguf.GGML_QUANT_SIZES[ty]
    rows = raw.reshape(-1, type_size)
    bits_equal(gguf_loader.dequantize(rows, ty), gguf.quants.dequantize(rows, ty))


@pytest.mark.parametrize("ty", GGUF_PY_TYPES, ids=lambda t: t.name)
def test_random_blocks_equal_gguf_py(ty):
    """Random bytes: every code, and scales that are NaN, infinite or
    subnormal among them."""
    block, type_size = gguf.GGML_QUANT_SIZES[ty]
    rng = np.random.default_rng(int(ty))
    data = rng.integers(0, 256, size=(7, 3, 5 * type_size), dtype=np.uint8)
    ours = gguf_loader.dequantize(data, ty)
    assert ours.shape == (7, 3, 5 * block)
    with np.errstate(all="ignore"):
        theirs = gguf.quants.dequantize(data, ty)
    bits_equal(ours, theirs)


def test_real_tensors_equal_gguf_py(real_model):
    """The first tensor of each type in the real models, as gguf-py reads it;
    and `tensor` in float16 and bfloat16 equal to gguf-py's values rounded
    by numpy and by ml_dtypes (both to nearest-even): an oracle independent
    of our rounding, for the fused kernels and the f32-scratch path alike."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    r = gguf.GGUFReader(real_model)
    f = gguf_loader.open(real_model)
    seen = set()
    for t in r.tensors:
        if t.tensor_type in seen:
            continue
        seen.add(t.tensor_type)
        ours = gguf_loader.dequantize(t.data, t.tensor_type)
        theirs = gguf.quants.dequantize(t.data, t.tensor_type)
        bits_equal(np.ascontiguousarray(ours), np.ascontiguousarray(theirs))
        flat = np.ascontiguousarray(theirs).reshape(-1)
        for dtype, rounded in (
            ("float16", flat.astype(np.float16)),
            ("bfloat16", flat.astype(ml_dtypes.bfloat16)),
        ):
            got = np.ascontiguousarray(f.tensor(t.name, dtype)).reshape(-1)
            assert np.array_equal(got.view(np.uint16), rounded.view(np.uint16)), (t.name, dtype)
    assert len(seen) >= 3


def test_shapes_and_arguments():
    raw, _ = golden(gguf_loader.GGMLType.Q4_K)
    one = raw[:144]
    for qtype in (12, Q.Q4_K, gguf_loader.GGMLType.Q4_K, np.int64(12)):
        assert gguf_loader.dequantize(one, qtype).shape == (256,)
    assert gguf_loader.dequantize(np.tile(one, (2, 3, 2)), Q.Q4_K).shape == (2, 3, 512)
    # Not contiguous: decoded from a copy, as numpy would.
    rows = np.tile(one, (4, 1))[::2]
    assert np.array_equal(gguf_loader.dequantize(rows, Q.Q4_K), gguf.quants.dequantize(rows, Q.Q4_K))
    with pytest.raises(ValueError, match="not a multiple of Q4_K type size"):
        gguf_loader.dequantize(one[:100], Q.Q4_K)
    with pytest.raises(ValueError):
        gguf_loader.dequantize(one, 5)  # Q4_2: removed from ggml
    with pytest.raises(ValueError):
        gguf_loader.dequantize(one, 1000)
    # Bytes-like objects are one row of bytes; a list (whose numbers would
    # become int64s, 8 bytes each) is refused.
    want = gguf_loader.dequantize(one, Q.Q4_K)
    for data in (one.tobytes(), bytearray(one.tobytes()), memoryview(one.tobytes())):
        bits_equal(gguf_loader.dequantize(data, Q.Q4_K), want)
    for qtype in (Q.F32, Q.F16, Q.BF16):
        assert gguf_loader.dequantize(one.tobytes(), qtype).size == 144 // (4 if qtype == Q.F32 else 2)
    with pytest.raises(TypeError, match="not list"):
        gguf_loader.dequantize(one.tolist(), Q.Q4_K)
    # A float or a bool is no type id (int() would have made 2.9 Q4_0).
    for qtype in (2.9, True, "12", None):
        with pytest.raises(TypeError, match="qtype"):
            gguf_loader.dequantize(one, qtype)
    bits_equal(gguf_loader.dequantize(one, np.int32(int(Q.Q4_K))), want)
    # A memoryview that is not contiguous: its bytes in logical order.
    strided = np.repeat(one, 2)[::2]
    bits_equal(gguf_loader.dequantize(memoryview(strided), Q.Q4_K), want)
    # A 0-d array has no rows (it was one row of one element for I8).
    for qtype in (Q.I8, Q.Q8_0):
        with pytest.raises(ValueError, match="0-d"):
            gguf_loader.dequantize(np.array(5, np.int8), qtype)


def test_ctrl_c_stops_a_long_dequantize():
    """A signal whose handler raises KeyboardInterrupt (as Ctrl-C's does)
    stops a long decode (1 GiB of output) between two of its pieces: it came
    out only when all was done."""
    data = np.ones(((1 << 28) // 32) * 34, np.uint8)  # 1 GiB as float32

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    # How the native call ended: by its exception (stopped inside), or by
    # returning (the interrupt raised after it, at the next bytecode).
    ends = []

    def profile(frame, event, arg):
        if event in ("c_return", "c_exception") and getattr(arg, "__name__", "") == "dequantize":
            ends.append(event)

    def attempt(delay):
        ends.clear()
        old = signal.signal(signal.SIGALRM, interrupt)
        start = time.perf_counter()
        try:
            signal.setitimer(signal.ITIMER_REAL, delay)
            sys.setprofile(profile)
            gguf_loader.dequantize(data, Q.Q8_0)
            completed = True
        except KeyboardInterrupt:
            completed = False
        finally:
            sys.setprofile(None)
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)
        return completed, time.perf_counter() - start

    # On a slow machine (qemu) the signal can come before the call has
    # begun (no end seen): then again, with the signal later.
    for delay in (0.01, 0.05, 0.25, 1.0):
        completed, elapsed = attempt(delay)
        if completed:
            pytest.skip(f"the decode finished in {elapsed:.3f} s, before the signal")
        if ends:
            break
    # (Raised after a return, it would have waited for the whole decode.)
    assert ends == ["c_exception"], f"{ends} after {elapsed:.3f} s"
    # Still usable, and right, after.
    assert gguf_loader.dequantize(data[:34], Q.Q8_0).shape == (32,)


def test_ctrl_c_during_a_first_call_in_a_new_interpreter_is_not_a_panic():
    """rust-numpy reaches numpy's C API on first use and panics where that
    fails: a signal handler that raised during numpy's version check (Python
    code) made the first `dequantize` of a process a PanicException (3 runs
    in 27 with SIGALRM 0.5 to 3 ms in). The module now reaches that API at
    import. In a fresh process, an exception is raised at the first call of
    numpy's Python code inside a first `dequantize`, as a signal handler
    would raise it there: the call must end in that exception or succeed."""
    import subprocess

    script = (
        "import sys\n"
        "import numpy as np\n"
        "import gguf_loader\n"
        "data = np.ones(34 * 4, np.uint8)\n"
        "def hook(frame, event, arg):\n"
        "    if event == 'call' and 'numpy' in frame.f_code.co_filename:\n"
        "        raise KeyboardInterrupt\n"
        "try:\n"
        "    sys.setprofile(hook)\n"
        "    gguf_loader.dequantize(data, 8)\n"
        "    sys.setprofile(None)\n"
        "    print('completed')\n"
        "except KeyboardInterrupt:\n"
        "    sys.setprofile(None)\n"
        "    print('interrupted')\n"
    )
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() in ("completed", "interrupted"), (
        f"exit {r.returncode}: {r.stdout}{r.stderr[-2000:]}"
    )


def test_float_types_as_gguf_py():
    x = np.linspace(-3, 3, 64, dtype=np.float32).reshape(4, 16)
    view = gguf_loader.dequantize(x, Q.F32)
    assert np.shares_memory(view, x) and view.shape == x.shape
    h = x.astype(np.float16)
    bits_equal(gguf_loader.dequantize(h, Q.F16), gguf.quants.dequantize(h, Q.F16))
    b = h.view(np.uint8)
    assert gguf_loader.dequantize(b, Q.F16).shape == (4, 16)
    bf = (x.view(np.uint32) >> 16).astype(np.uint16).view(np.uint8)
    bits_equal(gguf_loader.dequantize(bf, Q.BF16), gguf.quants.dequantize(bf, Q.BF16))


def test_types_gguf_py_lacks():
    """gguf-py raises NotImplementedError; we decode them (golden above)."""
    missing = [t for t in gguf_loader.GGMLType if int(t) not in {int(q) for q in GGUF_PY_TYPES}]
    assert {t.name for t in missing} >= {"Q8_1", "Q8_K", "I8", "I16", "I32", "I64", "F64"}
    for t in missing:
        block, size = gguf_loader.GGML_QUANT_SIZES[t]
        out = gguf_loader.dequantize(np.zeros(2 * size, np.uint8), t)
        assert out.shape == (2 * block,) and out.dtype == np.float32


def test_reused_outputs_stay_correct():
    """Freed outputs are decoded into again; live ones never are."""
    raw, _ = golden(gguf_loader.GGMLType.Q4_K)
    blocks = raw.reshape(-1, 144)
    rng = np.random.default_rng(5)
    # 2 MiB of float32 out: large enough to be kept.
    datas = [blocks[rng.integers(0, len(blocks), 2048)] for _ in range(4)]
    wants = [gguf.quants.dequantize(d, Q.Q4_K) for d in datas]
    a = gguf_loader.dequantize(datas[0], Q.Q4_K)
    b = gguf_loader.dequantize(datas[1], Q.Q4_K)
    bits_equal(a, wants[0])
    a_view = a[3:7]
    a_copy = a.copy()
    del a
    c = gguf_loader.dequantize(datas[2], Q.Q4_K)  # a lives on in its view
    assert np.array_equal(a_view, a_copy[3:7])
    del a_view
    d = gguf_loader.dequantize(datas[3], Q.Q4_K)  # may reuse a's memory
    for got, want in zip((b, c, d), wants[1:]):
        bits_equal(got, want)
    assert d.flags.writeable
    d[:] = 0
    old = gguf_loader.set_dequantize_cache(0)
    assert old > 0
    assert gguf_loader.set_dequantize_cache(old) == 0
    with pytest.raises(ValueError):
        gguf_loader.set_dequantize_cache(-1)


def test_generated_types_match_the_native_table():
    """python/gguf_loader/_types.py is what scripts/gen-python-types.py makes
    of the Rust crate's table."""
    import subprocess
    import sys

    from conftest import ROOT

    script = ROOT / "scripts" / "gen-python-types.py"
    r = subprocess.run([sys.executable, str(script), "--check"])
    assert r.returncode == 0, "stale _types.py: run scripts/gen-python-types.py"
    assert [(int(t), t.name) for t in gguf_loader.GGMLType] == [
        (i, n) for i, n, _, _ in gguf_loader._native.ggml_types()
    ]
