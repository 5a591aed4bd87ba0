"""Open GGUF model files in milliseconds and decode every ggml type to numpy.

``gguf_loader`` is the Python face of the Rust crate ``gguf-loader``: the file
is memory-mapped (or read with positioned reads) and validated in one pass;
metadata and tensor descriptions are views of its bytes; tensors decode on
every core, without the GIL, bit for bit as ggml decodes them.

>>> import gguf_loader
>>> f = gguf_loader.open("model.gguf")
>>> f.metadata["general.architecture"]
'llama'
>>> f.tensors["token_embd.weight"].shape
(49152, 576)
>>> w = f.tensor("token_embd.weight")            # float16, row-major
>>> weights = f.load(dtype="float16")            # every tensor, one buffer

For gguf-py users, :func:`dequantize` takes the arguments of
``gguf.quants.dequantize`` and gives the same float32 arrays.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import (
    Any,
    Callable,
    Dict,
    Iterator,
    Literal,
    NamedTuple,
    Optional,
    Tuple,
    Union,
    overload,
)

import numpy as np

from . import _native
from ._native import Cancelled, DeviceTensor, StringArray

__all__ = [
    "open",
    "dequantize",
    "GGUFFile",
    "GGMLType",
    "TensorInfo",
    "Metadata",
    "Progress",
    "StringArray",
    "DeviceTensor",
    "Cancelled",
    "CUDA",
    "cuda_memory",
    "cuda_release_staging",
    "set_dequantize_cache",
    "simd_features",
    "Tokenizer",
    "TextStream",
    "Model",
    "KvCache",
]

#: True when this build can load onto NVIDIA GPUs (``device="cuda:N"``).
CUDA: bool = bool(_native.CUDA)

#: The package's version (the Rust crates' version it was built from).
__version__: str = _native.__version__

from ._types import GGML_QUANT_SIZES, GGMLType
from ._tokenizer import TextStream, Tokenizer
from ._model import KvCache, Model

#: What `open` takes as a path: as `builtins.open` does, bytes too.
_Path = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]

__all__.append("GGML_QUANT_SIZES")


class TensorInfo(NamedTuple):
    """One tensor's description, as the file gives it."""

    name: str
    #: Its ggml type (``.name`` and ``int()`` give name and id).
    type: GGMLType
    #: Dimensions in GGUF order (ggml's ``ne``: the row length first).
    ne: Tuple[int, ...]
    #: Row-major shape (numpy, PyTorch): ``ne`` reversed.
    shape: Tuple[int, ...]
    #: Absolute byte offset of its data in its file (gguf-py's ``data_offset``).
    offset: int
    #: Bytes of data in the file.
    nbytes: int
    #: Number of elements.
    n_elements: int
    #: Offset relative to the data section, as stored in the tensor info.
    data_section_offset: int


class Progress(NamedTuple):
    """Where a load stands; handed to the ``progress`` callback."""

    tensors_done: int
    tensors_total: int
    bytes_done: int
    bytes_total: int


try:  # bf16 outputs as ml_dtypes.bfloat16 where that package is installed
    import ml_dtypes as _ml_dtypes

    _BFLOAT16: Optional[np.dtype] = np.dtype(_ml_dtypes.bfloat16)
except ImportError:  # pragma: no cover - depends on the environment
    _BFLOAT16 = None

_DTYPES = {
    "float16": "float16",
    "f16": "float16",
    "float32": "float32",
    "f32": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
}


def _dtype_name(dtype: Any) -> str:
    """``"float16"``, ``"float32"`` or ``"bfloat16"`` for a name or numpy dtype."""
    if isinstance(dtype, str) and dtype in _DTYPES:
        name = _DTYPES[dtype]
    elif isinstance(dtype, str) and not _numpy_dtype_string(dtype):
        name = None
    elif _BFLOAT16 is not None and np.dtype(dtype) == _BFLOAT16:
        name = "bfloat16"
    else:
        name = _DTYPES.get(np.dtype(dtype).name)
    if name is None:
        raise ValueError(f'dtype must be "float16", "float32" or "bfloat16", not {dtype!r}')
    if not isinstance(dtype, str) or dtype not in _DTYPES:
        if np.dtype(dtype).byteorder not in "=|" + ("<" if sys.byteorder == "little" else ">"):
            # The outputs are in this machine's byte order.
            raise ValueError(f"dtype {dtype!r}: the outputs are in native byte order")
    return name


def _numpy_dtype_string(name: str) -> bool:
    """Whether numpy reads ``name`` as a dtype (``"<f4"``, ``"e"``…)."""
    try:
        np.dtype(name)
    except TypeError:
        return False
    return True


def _tensor_name(name: Any) -> Any:
    """``name``, or ``KeyError`` for a ``str`` no file can hold (a lone
    surrogate, which UTF-8 cannot encode): not a tensor, as any other
    missing name."""
    if isinstance(name, str):
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            raise KeyError(name) from None
    return name


def _threads(threads: Any) -> Optional[int]:
    """``threads`` checked: ``None`` (every core) or an ``int`` from 1 to
    4 per available core (``TypeError`` / ``ValueError`` otherwise, before
    any work, whatever there is to decode)."""
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)):
        raise TypeError(f"threads must be an int or None, not {type(threads).__name__}")
    most = _native.max_threads()
    if not 1 <= threads <= most:
        raise ValueError(
            f"threads must be 1 to {most} (4 per available core), not {int(threads)}"
        )
    return int(threads)


# The file type each output dtype can be a view of.
_FILE_TYPES = {"float16": "F16", "float32": "F32", "bfloat16": "BF16"}


def _views(copy: Any, device: str) -> bool:
    """Whether ``copy`` (numpy's meaning: ``True``, ``None`` or ``False``)
    asks for views of the file; ``ValueError`` for ``copy=False`` on a GPU
    (its tensors are copies) and ``TypeError`` for anything else."""
    if copy is not None and not isinstance(copy, (bool, np.bool_)):
        raise TypeError(f"copy must be True, False or None, not {type(copy).__name__}")
    if device != "cpu":
        if _views_only(copy):
            raise ValueError(f"copy=False: a tensor on {device} is always a copy")
        return False
    return copy is None or not copy


def _views_only(copy: Any) -> bool:
    """Whether ``copy`` is ``False`` (views or an error), not ``None``."""
    return copy is not None and not copy


def _as_bf16(array: np.ndarray) -> np.ndarray:
    """bf16 bits (uint16) as ``ml_dtypes.bfloat16`` where installed."""
    return array.view(_BFLOAT16) if _BFLOAT16 is not None else array


def _progress(callback: Optional[Callable[[Progress], Any]]) -> Optional[Callable[..., Any]]:
    if callback is None:
        return None
    if not callable(callback):
        # Said now, not once the load has started and first reports.
        raise TypeError(f"progress must be callable, not {type(callback).__name__}")
    return lambda *p: callback(Progress(*p))


class Metadata(Mapping):
    """The file's key–value metadata: a read-only ``Mapping`` in file order.

    Values are converted when read: scalars to ``int`` / ``float`` / ``bool``
    / ``str``, numeric arrays to read-only numpy views of the file's bytes,
    string arrays to :class:`StringArray` (lazy: no string is built until
    asked), arrays of arrays to lists.
    """

    __slots__ = ("_native", "_keys", "_index", "_source")

    def __init__(self, native: "_native.File") -> None:
        self._native = native
        self._keys = tuple(native.metadata_keys())
        self._index = frozenset(self._keys)
        self._source: Optional[_Source] = None

    # Pickled as its file (see ``GGUFFile.__reduce__``): a pickle opens the
    # file again and holds its metadata, not a copy of the values.
    def __reduce__(self) -> Tuple[Any, Tuple[Any, ...]]:
        if self._source is None:
            raise TypeError("cannot pickle metadata made without a GGUFFile")
        if self._native.closed:
            raise ValueError("cannot pickle the metadata of a closed GGUF file")
        return (_metadata_of, (self._source,))

    def __getitem__(self, key: str) -> Any:
        if key not in self._index:
            raise KeyError(key)
        return self._native.metadata_get(key)

    def __contains__(self, key: object) -> bool:
        return key in self._index

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def type(self, key: str) -> str:
        """The GGUF type of ``key``'s value: ``"uint32"``, ``"string"``,
        ``"array[string]"``…; an array of arrays of mixed types is
        ``"array[array]"``."""
        if key not in self._index:
            raise KeyError(key)
        return self._native.metadata_type(key)

    def __repr__(self) -> str:
        return f"<gguf_loader.Metadata: {len(self)} keys>"


Sequence.register(StringArray)


class GGUFFile:
    """An open GGUF file (or split model). Use :func:`open`.

    Everything it hands out (``raw`` views, metadata arrays, loaded arrays)
    keeps what it needs alive on its own: closing the file, or dropping it,
    while they exist is safe; the mapping goes when the last of them does.
    After :meth:`close`, what reads the file (a metadata value, ``raw``,
    ``tensor``, ``load``, a first look at ``tensors``) raises
    ``ValueError``, as a closed Python file does; the keys of a
    :class:`Metadata` and a ``tensors`` mapping already had stay readable.
    """

    def __init__(self, path: _Path, mode: str = "mmap") -> None:
        # fsdecode: str, bytes and path-like objects, any bytes the OS allows.
        path = os.fsdecode(path)
        if "\0" in path:
            raise ValueError("embedded null byte")  # as builtins.open says it
        self._native = _native.File(path, mode)
        # Every shard's path, absolute while the working directory is the
        # one they were opened from.
        self._files = tuple(os.path.abspath(p) for p in self._native.paths)
        self._source = _source(self._files, self._native)
        self._metadata: Optional[Metadata] = None
        self._tensors: Optional[Mapping[str, TensorInfo]] = None

    # -- the header ----------------------------------------------------
    @property
    def version(self) -> int:
        """GGUF version: 1, 2 or 3."""
        return self._native.version

    @property
    def alignment(self) -> int:
        """Alignment of the data section and of every tensor's data."""
        return self._native.alignment

    @property
    def data_offset(self) -> int:
        """Absolute offset of the (first file's) data section."""
        return self._native.data_offset

    @property
    def endianness(self) -> str:
        """``"little"`` or ``"big"``."""
        return self._native.endianness

    @property
    def mode(self) -> str:
        """``"mmap"`` or ``"read"``."""
        return self._native.mode

    @property
    def paths(self) -> Tuple[str, ...]:
        """The file, or every shard of a split model."""
        return tuple(str(p) for p in self._native.paths)

    @property
    def closed(self) -> bool:
        return self._native.closed

    @property
    def metadata(self) -> Metadata:
        """The key–value metadata (see :class:`Metadata`)."""
        if self._metadata is None:
            self._metadata = Metadata(self._native)
            self._metadata._source = self._source
        return self._metadata

    @property
    def tensors(self) -> Mapping[str, TensorInfo]:
        """Every tensor's :class:`TensorInfo` by name, in file order (read-only)."""
        if self._tensors is None:
            infos = {}
            for name, ty, dims, offset, rel, nbytes, n in self._native.tensor_infos():
                ne = tuple(dims)
                infos[name] = TensorInfo(
                    name, GGMLType(ty), ne, ne[::-1], offset, nbytes, n, rel
                )
            self._tensors = MappingProxyType(infos)
        return self._tensors

    # -- tensor data ---------------------------------------------------
    def raw(self, name: str) -> np.ndarray:
        """The tensor's bytes as stored, a read-only 1-D ``uint8`` array: a
        view of the mapping (no copy), or in read mode a new array."""
        return self._native.raw(_tensor_name(name))

    @overload
    def tensor(
        self,
        name: str,
        dtype: Any = ...,
        *,
        threads: Optional[int] = ...,
        device: Literal["cpu"] = ...,
        copy: Optional[bool] = ...,
    ) -> np.ndarray: ...

    @overload
    def tensor(
        self,
        name: str,
        dtype: Any = ...,
        *,
        threads: Optional[int] = ...,
        device: str,
        copy: Optional[bool] = ...,
    ) -> Union[np.ndarray, DeviceTensor]: ...

    def tensor(
        self,
        name: str,
        dtype: Any = "float16",
        *,
        threads: Optional[int] = None,
        device: str = "cpu",
        copy: Optional[bool] = True,
    ) -> Union[np.ndarray, DeviceTensor]:
        """Decodes one tensor to ``dtype`` (``"float16"``, ``"float32"`` or
        ``"bfloat16"``) as a new array of its row-major shape, on every core
        (or ``threads``), without the GIL.

        bf16 comes as ``ml_dtypes.bfloat16`` where that package is installed,
        else as its ``uint16`` bits. With ``device="cuda:N"`` (a ``CUDA``
        build) the tensor is decoded on the GPU and returned as a
        :class:`DeviceTensor`.

        ``copy`` as numpy's: ``True`` (the default) always gives a new,
        writable array; ``None`` gives a read-only view of the file's
        mapping where the file holds the tensor as ``dtype`` already (an F16
        tensor as float16, BF16 as bfloat16, F32 as float32, in ``mmap``
        mode and this machine's byte order), no copy, its pages read in; and
        ``False`` the same, but ``ValueError`` where it cannot be a view.
        A view keeps the file mapped as long as it lives (see
        :meth:`close`).
        """
        dtype = _dtype_name(dtype)
        name = _tensor_name(name)
        threads = _threads(threads)
        views = _views(copy, device)
        if device != "cpu":
            ((_, t),) = _native.load_device(self._native, device, dtype, threads, None, [name])
            return t
        if _views_only(copy):
            self._check_views([name], dtype)
        array = _native.tensor(self._native, name, dtype, threads, views)
        return _as_bf16(array) if dtype == "bfloat16" else array

    def _check_views(self, names: Sequence[str], dtype: str) -> None:
        """``ValueError`` naming the first of ``names`` that cannot be a
        view of the file as ``dtype`` (for ``copy=False``), and why."""
        for name in names:
            if _native.loads_as_view(self._native, name, dtype):
                continue
            info = self.tensors.get(name)
            if info is None:
                raise KeyError(name)
            if self.mode != "mmap":
                why = 'the file is read (mode="read"), not mapped'
            elif self.endianness != sys.byteorder:
                why = f"the file is {self.endianness}-endian, this machine {sys.byteorder}-endian"
            elif info.type.name != _FILE_TYPES[dtype]:
                why = f"the file holds it as {info.type.name}, not {_FILE_TYPES[dtype]}"
            else:
                why = "its data is not aligned for it"
            raise ValueError(f"copy=False: {name} cannot be a view of the file as {dtype}: {why}")

    @overload
    def load(
        self,
        dtype: Any = ...,
        *,
        threads: Optional[int] = ...,
        progress: Optional[Callable[[Progress], Any]] = ...,
        device: Literal["cpu"] = ...,
        names: Optional[Sequence[str]] = ...,
        copy: Optional[bool] = ...,
    ) -> Dict[str, np.ndarray]: ...

    @overload
    def load(
        self,
        dtype: Any = ...,
        *,
        threads: Optional[int] = ...,
        progress: Optional[Callable[[Progress], Any]] = ...,
        device: str,
        names: Optional[Sequence[str]] = ...,
        copy: Optional[bool] = ...,
    ) -> Union[Dict[str, np.ndarray], Dict[str, DeviceTensor]]: ...

    def load(
        self,
        dtype: Any = "float16",
        *,
        threads: Optional[int] = None,
        progress: Optional[Callable[[Progress], Any]] = None,
        device: str = "cpu",
        names: Optional[Sequence[str]] = None,
        copy: Optional[bool] = True,
    ) -> Union[Dict[str, np.ndarray], Dict[str, DeviceTensor]]:
        """Decodes every tensor (or those in ``names``) to ``dtype``: a dict
        of name → array in file order.

        On the CPU the arrays are views of one new buffer (no copy; each
        starts on a 64-byte boundary), decoded in parallel on every core (or
        ``threads``: 1 to 4 per core, else ``ValueError``) without the GIL.
        ``progress(Progress)`` is called about every 50 ms and at the end;
        returning ``False`` cancels the load
        (:class:`Cancelled`), and so does Ctrl-C (``KeyboardInterrupt``).

        With ``device="cuda:N"`` the quantized bytes go to the GPU and are
        decoded there: the values are :class:`DeviceTensor` objects, which
        ``torch.from_dlpack`` / ``cupy.from_dlpack`` take without a copy.

        ``copy=None`` makes each tensor the file holds as ``dtype`` already
        a read-only view of the file's mapping, not a copy (see
        :meth:`tensor`): an F16 model loads as float16 with no memory of
        the process's own, its pages read in before ``load`` returns, the
        progress counting them. ``copy=False`` asks for views of every
        tensor, and raises ``ValueError`` before any work where one cannot
        be. GPU tensors are always copies (``copy=False`` is refused).
        """
        dtype = _dtype_name(dtype)
        threads = _threads(threads)
        if isinstance(names, (str, bytes)):
            # A lone name would be taken letter by letter.
            raise TypeError(f"names must be a sequence of tensor names, not {type(names).__name__}")
        # Each tensor once (the result is a dict): a name given twice would
        # be decoded twice into the one buffer.
        names = None if names is None else list(dict.fromkeys(map(_tensor_name, names)))
        callback = _progress(progress)
        views = _views(copy, device)
        if device != "cpu":
            return dict(
                _native.load_device(self._native, device, dtype, threads, callback, names)
            )
        if _views_only(copy):
            self._check_views(list(self.tensors) if names is None else names, dtype)
        buffer, layout, viewed = _native.load(
            self._native, dtype, threads, callback, names, views
        )
        if dtype == "bfloat16":
            buffer = _as_bf16(buffer)
        decoded: Dict[str, np.ndarray] = {}
        for name, start, shape in layout:
            n = 1
            for d in shape:
                n *= d
            decoded[name] = buffer[start : start + n].reshape(shape)
        if not viewed:
            return decoded
        mapped = dict(viewed)
        if dtype == "bfloat16":
            mapped = {k: _as_bf16(v) for k, v in mapped.items()}
        order = list(self.tensors) if names is None else names
        return {n: mapped[n] if n in mapped else decoded[n] for n in order}

    # -- tokenizer -----------------------------------------------------
    def tokenizer(self) -> Tokenizer:
        """The model's tokenizer, from this file's ``tokenizer.*`` metadata
        (see :class:`Tokenizer`); ``ValueError`` where it has none this
        package supports, with the message of ``gguf-loader tokenize``.
        What the metadata leaves unclear comes as ``RuntimeWarning``."""
        t = Tokenizer(_native.tokenizer(self._native))
        for w in t.warnings:
            warnings.warn(f"{self.paths[0]}: {w}", RuntimeWarning, stacklevel=2)
        return t

    def model(
        self, dtype: Any = "float16", *, lazy: bool = False, own_memory: bool = False, device: str = "cpu"
    ) -> Model:
        """The weights loaded for this project's forward pass (llama and
        gemma3; see :class:`Model`): the matrices as ``dtype``
        (``"float16"`` or ``"float32"``), norms as float32. The matrices the
        file holds as ``dtype`` stay views of its mapping unless
        ``own_memory``; ``lazy`` decodes each layer as a step reaches it.
        With ``device="cuda:N"`` (float16, not lazy) the quantized bytes go
        to the GPU, are decoded there, and every step runs there
        (``RuntimeError`` where the GPU cannot be used or the build has no
        ``cuda`` feature, as ``load``). ``ValueError`` for an architecture
        it has no pass for, naming the file."""
        dtype = _dtype_name(dtype)
        if dtype not in ("float16", "float32"):
            raise ValueError(f'the forward pass runs on "float16" or "float32" weights, not {dtype!r}')
        native = _native.model(self._native, dtype, bool(lazy), not own_memory, device)
        return Model(native, (self._source, dtype, bool(lazy), bool(own_memory), device), self._files)

    # -- life ----------------------------------------------------------
    def close(self) -> None:
        """Lets go of the file; what was handed out stays valid, and keeps
        the file (its mapping, and one descriptor) open until the last of it
        goes: ``raw`` views, metadata arrays and the views of ``tensor`` /
        ``load`` with ``copy=None`` are views of the file's bytes, and a
        :class:`Model` keeps its weights' views (or, lazy, the file). Decoded
        arrays and tokenizers hold nothing of it."""
        self._native.close()

    def __enter__(self) -> "GGUFFile":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        native = getattr(self, "_native", None)  # None when __init__ raised
        return repr(native) if native is not None else "<gguf_loader.GGUFFile (not opened)>"

    # Pickled as its absolute path, mode and shard sizes (see ``_reopen``):
    # a pickle opens the file again, in this process or another
    # (multiprocessing's spawn and forkserver workers, ``datasets.map``),
    # and ``copy.copy`` / ``deepcopy`` are files opened anew. A closed file
    # does not pickle (``ValueError``).
    def __reduce__(self) -> Tuple[Any, Tuple[Any, ...]]:
        if self.closed:
            raise ValueError("cannot pickle a closed GGUF file")
        return (_reopen, (*self._source, type(self)))


#: What a pickle of a file, its metadata or a model holds of the file: its
#: absolute path, mode, each shard's size when it was opened, and the data
#: section's offset.
_Source = Tuple[str, str, Optional[Tuple[int, ...]], int]


def _source(files: Tuple[str, ...], native: "_native.File") -> _Source:
    """What a pickle holds of a file opened as ``native``, whose shards'
    absolute paths are ``files``."""
    try:
        sizes: Optional[Tuple[int, ...]] = tuple(os.stat(p).st_size for p in files)
    except OSError:  # gone since it was opened: a pickle does not check them
        sizes = None
    return (files[0], native.mode, sizes, native.data_offset)


def _reopen(
    path: str, mode: str, sizes: Optional[Tuple[int, ...]], data_offset: int, cls: type = GGUFFile
) -> GGUFFile:
    """The file a pickle holds (see ``GGUFFile.__reduce__``), opened again
    as ``cls``; ``ValueError`` where it is not the file that was pickled
    (a shard's size, or the header's length, differs)."""
    f: GGUFFile = cls(path, mode)
    now = f._source
    if (sizes is not None and now[2] != sizes) or now[3] != data_offset:
        f.close()
        raise ValueError(
            f"{path}: not the file that was pickled: shards of {sizes} bytes "
            f"and a {data_offset}-byte header then, {now[2]} and {now[3]} now"
        )
    return f


def _metadata_of(source: _Source) -> Metadata:
    """The metadata a pickle holds: its file's, opened again (and open while
    the metadata lives, as the metadata of any open file)."""
    return _reopen(*source).metadata


def _model_of(source: _Source, dtype: str, lazy: bool, own_memory: bool, device: str) -> Model:
    """The model a pickle holds: loaded again from its file, as it was."""
    with _reopen(*source) as f:
        return f.model(dtype, lazy=lazy, own_memory=own_memory, device=device)


def open(path: _Path, mode: str = "mmap") -> GGUFFile:
    """Opens and validates a GGUF file: ``mode="mmap"`` maps it (zero-copy),
    ``mode="read"`` reads the header and reads tensor data with positioned
    reads (for network filesystems, or files that may change). The first
    shard of a split model (``-00001-of-0000N.gguf``) opens every shard.

    Raises ``OSError`` (``FileNotFoundError``…, with ``errno`` and
    ``filename`` as ``builtins.open`` sets them) when the file cannot be
    read, and ``ValueError`` when it is not a valid GGUF file, with the
    message the CLI prints. Usable as a context manager.
    """
    return GGUFFile(path, mode)


def dequantize(
    data: Union[np.ndarray, bytes, bytearray, memoryview], qtype: Union[int, GGMLType]
) -> np.ndarray:
    """gguf-py's ``gguf.quants.dequantize``, on every core: ``data`` holds
    rows of ``qtype`` blocks (a numpy array of any dtype, whose bytes are
    used, or a bytes-like object: one row), the result is float32 with the
    last dimension in elements instead of bytes. Anything else (a list)
    raises ``TypeError``; an output that cannot be allocated, ``MemoryError``.

    ``qtype`` is an ``int`` or gguf-py's ``GGMLQuantizationType`` (a float
    or a bool is ``TypeError``). As in gguf-py, F32 data comes back as a
    view and F16 data is widened; this function decodes every ggml type,
    including those gguf-py lacks. The bits are gguf-py's, but for F16's
    signalling NaNs, which come out quiet as ggml's conversion makes them
    (numpy keeps them signalling). The GIL is released while it decodes, and
    Ctrl-C (``KeyboardInterrupt``) stops a long decode.
    """
    if isinstance(qtype, bool) or not isinstance(qtype, (int, np.integer)):
        raise TypeError(f"qtype must be an int or a GGMLType, not {type(qtype).__name__}")
    qtype = GGMLType(int(qtype))
    if not isinstance(data, np.ndarray):
        # Bytes-like objects are bytes; anything else (a list of numbers
        # would become int64s, 8 bytes each) is not what the caller meant.
        try:
            view = memoryview(data)
            if not view.c_contiguous:
                view = memoryview(view.tobytes())  # its bytes in logical order
            data = np.frombuffer(view.cast("B"), np.uint8)
        except TypeError:
            raise TypeError(
                f"data must be a numpy array or a bytes-like object, not {type(data).__name__}"
            ) from None
    if qtype == GGMLType.F32:
        return data.view(np.float32)
    if qtype == GGMLType.F16:
        data = data.view(np.float16)
        shape = data.shape
        out = _native.dequantize(np.ascontiguousarray(data).reshape(-1).view(np.uint8), int(qtype))
        return out.reshape(shape)
    block_size, type_size = GGML_QUANT_SIZES[qtype]
    if data.ndim == 0:
        # (ascontiguousarray would make it one row of one element)
        raise ValueError(
            f"Quantized tensor bytes per row (a 0-d array has no rows) are not a multiple "
            f"of {qtype.name} type size ({type_size})"
        )
    rows = np.ascontiguousarray(data).view(np.uint8)
    shape = rows.shape
    if len(shape) == 0 or shape[-1] % type_size != 0:
        last = shape[-1] if len(shape) else 0
        raise ValueError(
            f"Quantized tensor bytes per row ({last}) is not a multiple of "
            f"{qtype.name} type size ({type_size})"
        )
    out = _native.dequantize(rows.reshape(-1), int(qtype))
    return out.reshape((*shape[:-1], shape[-1] // type_size * block_size))


def set_dequantize_cache(max_bytes: int) -> int:
    """Bounds the memory :func:`dequantize` keeps for reuse and returns the
    previous bound.

    An output of 1 MiB or more, once freed, is kept (at most four, 256 MiB
    in all by default) and decoded into again by the next call of the same
    size: a new output costs a page fault and the kernel's zeroing per page,
    about as much as the decoding. ``set_dequantize_cache(0)`` frees them
    and keeps none.
    """
    if max_bytes < 0:
        raise ValueError("max_bytes must be at least 0")
    return _native.set_dequantize_cache(max_bytes)


def cuda_memory(device: str = "cuda:0") -> Tuple[int, int]:
    """Free and total memory of a GPU (``"cuda"`` or ``"cuda:N"``) in bytes,
    counted once the work queued on it is done, so that the memory of tensors
    already dropped counts as free.

    Sets the GPU up if no load has. Raises ``RuntimeError`` where the GPU
    cannot be used (no driver, no such device, no NVRTC) or the build has no
    ``cuda`` feature (:data:`CUDA` is false), ``ValueError`` for a device
    that is not a GPU.
    """
    free, total = _native.cuda_memory(device)
    return int(free), int(total)


def cuda_release_staging(device: str = "cuda:0") -> None:
    """Frees the staging buffers a GPU keeps between loads (64 MiB of VRAM
    and as much pinned host memory by default), for a program done loading;
    a later load makes them again.

    Does nothing for a GPU no load has used, or where the build has no
    ``cuda`` feature. Raises ``ValueError`` for a device that is not a GPU.
    """
    _native.cuda_release_staging(device)


def simd_features() -> str:
    """The SIMD the decoders use in this process: ``"AVX-512 + AVX2"``,
    ``"AVX2"`` (both with F16C), ``"NEON"`` or ``"scalar"`` (no SIMD path
    on this CPU, or the environment variable ``GGUF_LOADER_SIMD=scalar``).

    ``GGUF_LOADER_SIMD`` is read once, at the first decode: ``avx2`` keeps
    x86-64 to AVX2, ``scalar`` (or ``none``) runs the scalar references,
    ``widest`` (or unset, or any other value) uses all the CPU has; every
    path gives the same bits.
    """
    return _native.simd_features()
