"""The forward pass on the loaded weights (see :class:`Model`)."""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from typing import Any, Dict, Iterable, Iterator, Optional, Tuple, Union

import numpy as np

from . import _native
from ._tokenizer import _ids

#: A KV cache: the positions a model has run (``len(cache)``, the ids
#: there ``cache.tokens``), with room for ``cache.capacity``, in host
#: memory or in VRAM (``cache.device``: its model's, ``nbytes`` of it);
#: ``clear()``, ``truncate(n)`` (keep a shared prefix) and ``copy()``;
#: ``Model.save_cache`` writes it to a file, ``Model.load_cache`` reads it.
KvCache = _native.KvCache


class Model:
    """A model's weights, loaded for its forward pass
    (``GGUFFile.model()``): this project's own llama and gemma3 passes on
    the CPU (``gguf_loader_llm``), held to llama.cpp's logits (NMSE ≤ 1e-4
    at every position) and greedy tokens on both real models; or, on a GPU
    (``device="cuda:N"``), the same pass over the f16 weights the GPU load
    put in VRAM (cuBLAS and small NVRTC kernels; only the logits come
    back). Each step releases the GIL and runs on every core; a long prompt
    runs in pieces of 64 positions, between which Ctrl-C stops it (the
    cache is then as it was). One model serves many threads, each with a
    cache of its own.
    """

    __slots__ = ("_native", "_source", "_files")

    def __init__(
        self,
        native: _native.Model,
        source: Optional[Tuple[Any, ...]] = None,
        files: Tuple[str, ...] = (),
    ) -> None:
        self._native = native
        # The file and arguments it was loaded with, for a pickle.
        self._source = source
        # Its file's paths (every shard), which save_cache never replaces.
        self._files = files

    @property
    def config(self) -> Dict[str, Any]:
        """The hyper-parameters: ``arch``, ``n_layer``, ``n_embd``,
        ``n_head``, ``n_head_kv``, ``head_dim``, ``n_ff``, ``n_vocab``,
        ``context_length``, ``sliding_window``."""
        return self._native.config

    @property
    def dtype(self) -> str:
        """The matrices' float: ``"float16"`` or ``"float32"`` (norms are f32)."""
        return self._native.dtype

    @property
    def lazy(self) -> bool:
        """Whether each layer is decoded as a step reaches it."""
        return self._native.lazy

    @property
    def device(self) -> str:
        """Where the weights are and the pass runs: ``"cpu"`` or ``"cuda:N"``."""
        return self._native.device

    def new_cache(self, capacity: int) -> KvCache:
        """An empty KV cache for ``capacity`` positions (f16 keys and values,
        on the model's device; ``MemoryError`` where they cannot be had)."""
        return self._native.new_cache(_count(capacity, "capacity"))

    def forward(self, cache: KvCache, ids: Iterable[int], *, all: bool = False) -> np.ndarray:
        """Runs ``ids`` at the next positions of ``cache`` and returns the
        float32 logits of the last position (``n_vocab``), or with ``all``
        of every position (``len(ids) × n_vocab``). ``ValueError`` for an id
        outside the vocabulary, a cache without room (the cache is then as
        it was) or one made for another device."""
        return self._native.forward(cache, _ids(ids), all)

    def save_cache(self, cache: KvCache, path: Union[str, "os.PathLike[str]"]) -> None:
        """Writes ``cache`` (of this model, on the CPU) to ``path`` as a
        GGUF file: its filled positions' keys and values, their tokens, its
        capacity. Written to a temporary file in the same directory (only
        its owner can read it: the tokens are a prompt's) and renamed over
        ``path`` once complete, so that a reader never sees part of one.
        A later process continues from it with :meth:`load_cache` (a long
        prompt's common prefix computed once)."""
        path = os.fsdecode(path)
        for f in self._files:
            try:
                own = os.path.samefile(path, f)
            except OSError:  # (one of them is not there)
                own = False
            if own:
                raise ValueError(f"{path}: is the model's own file; save the cache elsewhere")
        fd, temp = tempfile.mkstemp(
            prefix=".", suffix=".kvcache.tmp", dir=os.path.dirname(os.path.abspath(path))
        )
        os.close(fd)
        try:
            self._native.write_cache(cache, temp)
            os.replace(temp, path)
        except BaseException:
            try:
                os.unlink(temp)
            except OSError:
                pass
            raise

    def load_cache(self, path: Union[str, "os.PathLike[str]"]) -> KvCache:
        """The KV cache :meth:`save_cache` wrote to ``path``, for this model
        (or one of the same architecture and widths): the same positions,
        tokens and capacity; the next :meth:`forward` goes on from them,
        with the logits the saved cache would have given. ``ValueError``
        for a file that is no such cache (every count, size and id in it
        is checked) or a cache of another model, ``OSError`` where it
        cannot be read."""
        path = os.fsdecode(path)
        mode = os.stat(path).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, "is a directory, not a regular file", path)
        if not stat.S_ISREG(mode):  # a FIFO would block the read
            raise ValueError(f"{path}: not a regular file")
        return self._native.read_cache(path)

    def generate(
        self,
        ids: Iterable[int],
        max_tokens: int,
        *,
        temperature: float = 0.0,
        top_p: float = 1.0,
        top_k: int = 0,
        min_p: float = 0.0,
        seed: int = 0,
        stop: Optional[Iterable[int]] = None,
        cache: Optional[KvCache] = None,
    ) -> Iterator[int]:
        """Runs the prompt ``ids``, then yields up to ``max_tokens`` ids, each
        run in turn: greedy at ``temperature`` 0 (the default), else drawn
        after temperature, top-k, top-p and min-p from a generator seeded
        with ``seed``. Ends after an id of ``stop`` (yielded; pass a
        tokenizer's ``eog``), or when ``cache`` is full (by default a new
        one with room for the prompt and ``max_tokens``; a cache given goes
        on from where it is)."""
        prompt = _ids(ids)
        n = _count(max_tokens, "max_tokens")
        stops = frozenset(int(s) for s in stop) if stop is not None else frozenset()
        sampler = _native.Sampler(temperature, top_p, _count(top_k, "top_k"), min_p, seed)
        if cache is None:
            cache = self.new_cache(len(prompt) + n)
        return self._generate(cache, prompt, n, stops, sampler)

    def _generate(
        self, cache: KvCache, prompt: list, n: int, stops: frozenset, sampler: Any
    ) -> Iterator[int]:
        if not prompt or n == 0:
            return
        logits = self._native.forward(cache, prompt, False)
        for made in range(n):
            t = sampler.sample(logits)
            if t is None:
                return
            yield t
            if t in stops or made + 1 == n or len(cache) == cache.capacity:
                return
            logits = self._native.forward(cache, [t], False)

    def __repr__(self) -> str:
        return repr(self._native)

    # Pickled as its file's path (see ``GGUFFile.__reduce__``) and the
    # arguments of ``GGUFFile.model``, not its weights: a pickle loads the
    # model again from the file, as it was loaded here (a spawned worker
    # has it in the milliseconds of a load). ``copy.copy`` / ``deepcopy``
    # are the model itself: it is immutable (the state is in a cache).
    def __reduce__(self) -> Tuple[Any, Tuple[Any, ...]]:
        if self._source is None:
            raise TypeError("cannot pickle a model made without a GGUFFile")
        from . import _model_of

        return (_model_of, self._source)

    def __copy__(self) -> "Model":
        return self

    def __deepcopy__(self, memo: Any) -> "Model":
        return self


def _count(n: Any, what: str) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"{what} must be an int, not {type(n).__name__}")
    if n < 0:
        raise ValueError(f"{what} must be at least 0, not {n}")
    return int(n)
