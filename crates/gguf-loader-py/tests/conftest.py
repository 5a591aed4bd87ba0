"""Shared fixtures: the repository's files, the real models and the CLI.

The real models come from `$GGUF_LOADER_MODEL` / `$GGUF_LOADER_GEMMA`, else
the cache `scripts/fetch-model.sh` fills (`$GGUF_LOADER_CACHE`, else
`~/.cache/gguf-loader`); a missing one skips its tests with a message,
unless `GGUF_LOADER_REQUIRE_MODEL` is set (as `scripts/test.sh` sets it).
"""

import os
import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[3]
FIXTURES = ROOT / "tests" / "fixtures"
CORPUS = ROOT / "tests" / "corpus"
GOLDEN = ROOT / "tests" / "golden"


def _real_model(var: str, name: str, fetch: str) -> pathlib.Path:
    path = os.environ.get(var)
    if path is None:
        cache = os.environ.get("GGUF_LOADER_CACHE", os.path.expanduser("~/.cache/gguf-loader"))
        path = os.path.join(cache, name)
    if not os.path.isfile(path):
        message = f"{name} not found (run scripts/fetch-model.sh {fetch}, or set {var})"
        if os.environ.get("GGUF_LOADER_REQUIRE_MODEL"):
            pytest.fail(message)
        pytest.skip(message)
    return pathlib.Path(path)


@pytest.fixture(scope="session")
def smollm2() -> pathlib.Path:
    return _real_model("GGUF_LOADER_MODEL", "SmolLM2-135M-Instruct.Q4_1.gguf", "smollm2")


@pytest.fixture(scope="session")
def gemma() -> pathlib.Path:
    return _real_model("GGUF_LOADER_GEMMA", "gemma-3-270m-q4_k_m.gguf", "gemma3")


@pytest.fixture(scope="session", params=["smollm2", "gemma"])
def real_model(request) -> pathlib.Path:
    return request.getfixturevalue(request.param)


@pytest.fixture(scope="session")
def cli() -> str:
    """The CLI binary: `$GGUF_LOADER_CLI`, else the workspace's release build."""
    path = os.environ.get("GGUF_LOADER_CLI") or str(ROOT / "target" / "release" / "gguf-loader")
    if not os.path.isfile(path):
        found = shutil.which("gguf-loader")
        if found is None:
            pytest.fail(f"the CLI is not built ({path}): cargo build --release -p gguf-loader-cli")
        path = found
    return path


def run_cli(cli: str, *args: str) -> None:
    subprocess.run([cli, *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def interrupted(seconds: float, call) -> tuple:
    """Runs `call()` with a signal due after `seconds` whose handler raises
    KeyboardInterrupt (as Ctrl-C's does), delivered by the kernel (an
    interval timer), so that it cannot wait on a Python thread: whether
    `call` completed, and how long it took."""
    import signal
    import time

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGALRM, interrupt)
    start = time.perf_counter()
    try:
        signal.setitimer(signal.ITIMER_REAL, seconds)
        call()
        completed = True
    except KeyboardInterrupt:
        completed = False
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    return completed, time.perf_counter() - start
