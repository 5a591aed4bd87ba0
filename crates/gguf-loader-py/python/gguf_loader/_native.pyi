"""Type stubs of the native half of `gguf_loader` (see `__init__.py` for the
public API built on it)."""

from os import PathLike
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence, Tuple, Union, overload

import numpy as np
import numpy.typing as npt
from typing_extensions import final

__all__ = [
    "File",
    "StringArray",
    "Owner",
    "DeviceTensor",
    "ggml_types",
    "max_threads",
    "dequantize",
    "set_dequantize_cache",
    "PooledOutput",
    "tensor",
    "load",
    "load_device",
    "loads_as_view",
    "cuda_memory",
    "cuda_release_staging",
    "simd_features",
    "Cancelled",
    "CUDA",
    "__version__",
]

CUDA: bool
__version__: str

def simd_features() -> str: ...

class Cancelled(Exception):
    """A load cancelled by its progress callback (which returned False)."""

@final
class StringArray(Sequence[str]):
    """A metadata array of strings, decoded one at a time when asked."""

    def __len__(self) -> int: ...
    @overload
    def __getitem__(self, key: int, /) -> str: ...
    @overload
    def __getitem__(self, key: slice, /) -> List[str]: ...
    def tolist(self) -> List[str]: ...
    def index(self, value: Any, start: Optional[int] = None, stop: Optional[int] = None) -> int: ...
    def count(self, value: Any) -> int: ...
    def __copy__(self) -> "StringArray": ...
    def __deepcopy__(self, memo: Any, /) -> "StringArray": ...
    def __reduce__(self) -> Tuple[Any, Tuple[List[str]]]: ...

@final
class DeviceTensor:
    """A decoded tensor on a device, exported without a copy by DLPack."""

    @property
    def shape(self) -> List[int]: ...
    @property
    def dtype(self) -> str: ...
    @property
    def device(self) -> str: ...
    @property
    def nbytes(self) -> int: ...
    def __dlpack_device__(self) -> Tuple[int, int]: ...
    def __dlpack__(
        self,
        *,
        stream: Any = None,
        max_version: Optional[Tuple[int, int]] = None,
        dl_device: Optional[Tuple[int, int]] = None,
        copy: Optional[bool] = None,
    ) -> Any: ...
    def numpy(self) -> np.ndarray: ...

@final
class Owner: ...
@final
class PooledOutput: ...

@final
class File:
    def __new__(cls, path: Union[str, PathLike[str]], mode: str = "mmap") -> "File": ...
    def close(self) -> None: ...
    @property
    def closed(self) -> bool: ...
    @property
    def mode(self) -> str: ...
    @property
    def version(self) -> int: ...
    @property
    def alignment(self) -> int: ...
    @property
    def data_offset(self) -> int: ...
    @property
    def endianness(self) -> str: ...
    @property
    def paths(self) -> List[Path]: ...
    def metadata_keys(self) -> List[str]: ...
    def metadata_get(self, key: str) -> Any: ...
    def metadata_type(self, key: str) -> str: ...
    def tensor_infos(self) -> List[Tuple[str, int, List[int], int, int, int, int]]: ...
    def raw(self, name: str) -> npt.NDArray[np.uint8]: ...

def ggml_types() -> List[Tuple[int, str, int, int]]: ...
def max_threads() -> int: ...
def dequantize(data: npt.NDArray[np.uint8], qtype: int) -> npt.NDArray[np.float32]: ...
def set_dequantize_cache(max_bytes: int) -> int: ...
def tensor(
    file: File,
    name: str,
    dtype: str = "float16",
    threads: Optional[int] = None,
    views: bool = False,
) -> np.ndarray: ...
def load(
    file: File,
    dtype: str = "float16",
    threads: Optional[int] = None,
    progress: Optional[Callable[[int, int, int, int], Any]] = None,
    names: Optional[List[str]] = None,
    views: bool = False,
) -> Tuple[np.ndarray, List[Tuple[str, int, List[int]]], List[Tuple[str, np.ndarray]]]: ...
def loads_as_view(file: File, name: str, dtype: str) -> bool: ...
def load_device(
    file: File,
    device: str,
    dtype: str = "float16",
    threads: Optional[int] = None,
    progress: Optional[Callable[[int, int, int, int], Any]] = None,
    names: Optional[List[str]] = None,
) -> List[Tuple[str, DeviceTensor]]: ...

def cuda_memory(device: str = "cuda:0") -> Tuple[int, int]:
    """Free and total bytes of a GPU, once its queued work is done."""

def cuda_release_staging(device: str = "cuda:0") -> None:
    """Frees the staging buffers a GPU keeps between loads."""
