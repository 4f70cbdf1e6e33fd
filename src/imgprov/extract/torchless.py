"""Read a PyTorch state dict saved by `torch.save` into numpy arrays, without torch.

A `.pth` file is one or more pickles plus raw tensor storages. Unpickling runs whatever callables the
pickle names, so this reader is a security boundary: its unpickler resolves only the handful of globals
a state dict needs (`collections.OrderedDict`, `torch._utils._rebuild_tensor_v2` and the typed storage
classes) to local stand-ins and refuses every other one; `pickle.load` is never called on the file.

Both layouts of `torch.save` are read: the zip archive of torch >= 1.6 (`<name>/data.pkl` and one raw
file per storage under `<name>/data/`) and the legacy stream (magic number, protocol version and system
information pickles, the object pickle, the list of storage keys, then each storage as a little-endian
int64 element count followed by its bytes).
"""

from __future__ import annotations

import collections
import io
import pickle
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import IO, Any

import numpy as np

from imgprov.errors import ImgprovError

LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001

STORAGE_DTYPES: Mapping[str, np.dtype] = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


class TorchFileError(ImgprovError):
    """A `torch.save` file is malformed or names a global outside the reader's allow-list."""


@dataclass(frozen=True)
class StorageType:
    """Stand-in for a `torch.<Type>Storage` class: only its element type matters."""

    dtype: np.dtype


@dataclass(frozen=True)
class StorageRef:
    """A storage the pickle refers to; its bytes are read after the pickle (legacy) or from the zip."""

    key: str
    dtype: np.dtype
    numel: int


@dataclass(frozen=True)
class TensorRef:
    """A strided view of a storage, as `_rebuild_tensor_v2` describes it (offsets in elements)."""

    storage: StorageRef
    offset: int
    shape: tuple[int, ...]
    strides: tuple[int, ...]


def rebuild_tensor_v2(
    storage: StorageRef,
    storage_offset: int,
    size: tuple[int, ...],
    stride: tuple[int, ...],
    requires_grad: bool = False,
    backward_hooks: object = None,
    metadata: object = None,
) -> TensorRef:
    """Stand-in for `torch._utils._rebuild_tensor_v2`: records the view, reads nothing yet."""
    if not isinstance(storage, StorageRef):
        raise TorchFileError(f"tensor built from {type(storage).__name__}, not from a storage")
    return TensorRef(storage, int(storage_offset), tuple(map(int, size)), tuple(map(int, stride)))


def allowed_global(module: str, name: str) -> Callable[..., Any] | StorageType:
    """The stand-in for the global `module.name`; `TorchFileError` for anything outside the allow-list."""
    if (module, name) == ("collections", "OrderedDict"):
        return collections.OrderedDict
    if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
        return rebuild_tensor_v2
    if module == "torch" and name in STORAGE_DTYPES:
        return StorageType(STORAGE_DTYPES[name])
    raise TorchFileError(f"refusing to load the global {module}.{name} from a weight file")


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves globals through `allowed_global` and storages to `StorageRef`s."""

    def find_class(self, module: str, name: str) -> Any:
        return allowed_global(module, name)

    def persistent_load(self, pid: Any) -> StorageRef:
        """Legacy ids are (storage, type, key, location, numel, view); zip ids lack the view."""
        if not isinstance(pid, tuple) or len(pid) not in (5, 6) or pid[0] != "storage":
            raise TorchFileError(f"unsupported persistent id {str(pid)[:80]}")
        storage_type, key, numel = pid[1], pid[2], pid[4]
        if not (isinstance(storage_type, StorageType) and isinstance(key, str) and isinstance(numel, int)):
            raise TorchFileError(f"malformed storage id {str(pid)[:80]}")
        if len(pid) == 6 and pid[5] is not None:
            raise TorchFileError("storage views (torch < 1.0 files) are not supported")
        return StorageRef(key, storage_type.dtype, numel)


def restricted_load(stream: IO[bytes]) -> Any:
    """One pickle from `stream` through `RestrictedUnpickler`; every failure is a `TorchFileError`."""
    try:
        return RestrictedUnpickler(stream).load()
    except TorchFileError:
        raise
    except Exception as error:
        raise TorchFileError(f"cannot unpickle the weight file: {error}") from None


def load_state_dict(data: bytes) -> dict[str, np.ndarray]:
    """The tensors of a state dict saved by `torch.save`, by name, as owned numpy arrays.

    data: the whole file. Returns arrays with the tensors' shapes and dtypes, C-contiguous.
    """
    if zipfile.is_zipfile(io.BytesIO(data)):
        tensors, storages = read_zip(data)
    else:
        tensors, storages = read_legacy(data)
    return {name: materialize(ref, storages) for name, ref in tensors.items()}


def read_zip(data: bytes) -> tuple[Mapping[str, TensorRef], Mapping[str, np.ndarray]]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        pickles = [name for name in archive.namelist() if name.endswith("/data.pkl")]
        if len(pickles) != 1:
            raise TorchFileError("the zip archive does not hold exactly one data.pkl")
        prefix = pickles[0].removesuffix("data.pkl")
        tensors = tensor_refs(restricted_load(io.BytesIO(archive.read(pickles[0]))))
        storages = {
            ref.storage.key: storage_array(archive.read(f"{prefix}data/{ref.storage.key}"), ref.storage)
            for ref in tensors.values()
        }
    return tensors, storages


def read_legacy(data: bytes) -> tuple[Mapping[str, TensorRef], Mapping[str, np.ndarray]]:
    stream = io.BytesIO(data)
    if restricted_load(stream) != LEGACY_MAGIC_NUMBER:
        raise TorchFileError("not a torch.save file (wrong magic number)")
    if restricted_load(stream) != LEGACY_PROTOCOL_VERSION:
        raise TorchFileError("unsupported torch.save protocol version")
    restricted_load(stream)  # system information: endianness and type sizes
    tensors = tensor_refs(restricted_load(stream))
    storage_keys = restricted_load(stream)
    refs = {ref.storage.key: ref.storage for ref in tensors.values()}
    if not isinstance(storage_keys, list) or set(storage_keys) != set(refs):
        raise TorchFileError("the storage keys do not match the tensors")
    storages = {key: read_legacy_storage(stream, refs[key]) for key in storage_keys}
    return tensors, storages


def read_legacy_storage(stream: io.BytesIO, storage: StorageRef) -> np.ndarray:
    count = int.from_bytes(stream.read(8), "little", signed=True)
    if count != storage.numel:
        raise TorchFileError(f"storage {storage.key} holds {count} elements, the pickle says {storage.numel}")
    return storage_array(stream.read(count * storage.dtype.itemsize), storage)


def storage_array(raw: bytes, storage: StorageRef) -> np.ndarray:
    """(numel,) array of the storage's dtype over `raw`, which must hold exactly numel elements."""
    if len(raw) != storage.numel * storage.dtype.itemsize:
        raise TorchFileError(f"storage {storage.key} is truncated")
    return np.frombuffer(raw, dtype=storage.dtype)


def tensor_refs(state: Any) -> Mapping[str, TensorRef]:
    if not isinstance(state, dict) or not all(
        isinstance(name, str) and isinstance(ref, TensorRef) for name, ref in state.items()
    ):
        raise TorchFileError("the weight file does not hold a state dict of tensors")
    return state


def materialize(ref: TensorRef, storages: Mapping[str, np.ndarray]) -> np.ndarray:
    """A C-contiguous copy of the view `ref`, after checking it stays inside its storage.

    The check matters: `as_strided` trusts its arguments, and these come from the file.
    """
    storage = storages[ref.storage.key]
    if len(ref.shape) != len(ref.strides) or min((*ref.shape, *ref.strides, ref.offset), default=0) < 0:
        raise TorchFileError(f"tensor of storage {ref.storage.key} has a malformed shape or stride")
    if 0 in ref.shape:
        return np.zeros(ref.shape, storage.dtype)
    last = ref.offset + sum((size - 1) * stride for size, stride in zip(ref.shape, ref.strides, strict=True))
    if last >= storage.size:
        raise TorchFileError(f"tensor of storage {ref.storage.key} reaches past its end")
    start = storage[ref.offset :]
    byte_strides = tuple(stride * storage.itemsize for stride in ref.strides)
    view = np.lib.stride_tricks.as_strided(start, ref.shape, byte_strides, writeable=False)
    return np.ascontiguousarray(view)
