"""A bounded reader of the GGUF header: metadata and tensor table, checked before use.

Every count, length, offset and size the file declares is checked against the bytes
that remain and against fixed limits *before* anything is allocated or looped over,
so a corrupt or hostile file fails in milliseconds at bounded memory.  (gguf-py's
reader trusts them: an array count of 2**63 makes it loop forever, because reads past
the end return empty slices and its offset stops advancing.)

The walker also records where each field sits in the file (``Field.offsets``,
``TensorInfo.offsets``), which the fuzz test uses to mutate real fields.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import errors
from .constants import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType

#: more keys, tensors, array items, string bytes or dimensions than these is corruption,
#: whatever the file's length (real embedding models use a few hundred of each)
MAX_KV = 1 << 16
MAX_TENSORS = 1 << 16
MAX_KEY_BYTES = 1 << 16
MAX_STRING_BYTES = 1 << 26
MAX_ARRAY_ITEMS = 1 << 24
MAX_ARRAY_DEPTH = 2
MAX_DIMS = 4
MAX_ELEMENTS = 1 << 40
MAX_ALIGNMENT = 1 << 16
DEFAULT_ALIGNMENT = 32

V = GGUFValueType
#: scalar value types: struct format (little-endian)
_SCALAR = {V.UINT8: "<B", V.INT8: "<b", V.UINT16: "<H", V.INT16: "<h", V.UINT32: "<I",
           V.INT32: "<i", V.FLOAT32: "<f", V.BOOL: "<?", V.UINT64: "<Q", V.INT64: "<q",
           V.FLOAT64: "<d"}
_NUMPY = {V.UINT8: "<u1", V.INT8: "<i1", V.UINT16: "<u2", V.INT16: "<i2", V.UINT32: "<u4",
          V.INT32: "<i4", V.FLOAT32: "<f4", V.BOOL: "<u1", V.UINT64: "<u8", V.INT64: "<i8",
          V.FLOAT64: "<f8"}
_VALUE_TYPES = {int(t) for t in V}
_TENSOR_TYPES = {int(t): t for t in GGMLQuantizationType if t in GGML_QUANT_SIZES}


@dataclass(frozen=True)
class Field:
    """One metadata key/value.

    ``offsets`` names positions in the file: ``key_len``, ``type``, ``value`` and, for
    arrays, ``item_type`` and ``count``.
    """

    name: str
    type: GGUFValueType
    item_type: GGUFValueType | None
    raw: Any  # bytes (string), a scalar, np.ndarray (numeric array) or list (other arrays)
    offsets: dict[str, int] = field(default_factory=dict, compare=False)

    @property
    def types(self) -> list[GGUFValueType]:
        return [self.type] if self.item_type is None else [self.type, self.item_type]

    def contents(self) -> Any:
        """The value as Python data (strings decoded as UTF-8, strictly)."""
        return _decode(self.raw)


def _decode(raw: Any) -> Any:
    if isinstance(raw, bytes):
        return raw.decode("utf-8")
    if isinstance(raw, np.ndarray):
        return raw.tolist()
    if isinstance(raw, list):
        try:  # an array of strings (the vocabulary): one comprehension, no recursion
            return [x.decode("utf-8") for x in raw]
        except AttributeError:  # nested arrays
            return [_decode(x) for x in raw]
    return raw


@dataclass(frozen=True)
class TensorInfo:
    """One tensor-table entry.  ``dims`` are GGML's ``ne`` (innermost first)."""

    name: str
    dims: tuple[int, ...]
    tensor_type: GGMLQuantizationType
    offset: int        # relative to the data section
    n_elements: int
    n_bytes: int
    offsets: dict[str, int] = field(default_factory=dict, compare=False)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.dims


@dataclass(frozen=True)
class Header:
    version: int
    fields: dict[str, Field]
    tensors: list[TensorInfo]
    alignment: int
    data_offset: int   # start of the data section
    file_size: int
    offsets: dict[str, int] = field(default_factory=dict, compare=False)


class _Cursor:
    """Reads little-endian values from a buffer, refusing to run past its end."""

    def __init__(self, path: Path, buf, pos: int):
        self.path, self.buf, self.pos, self.size = path, buf, pos, len(buf)

    @property
    def remaining(self) -> int:
        return self.size - self.pos

    def need(self, n: int, what: str) -> None:
        if n > self.remaining:
            raise errors.TruncatedFileError(
                self.path, f"truncated: {what} needs {n} bytes at offset {self.pos}, "
                f"{max(self.remaining, 0)} remain ({self.size} bytes on disk)")

    def scalar(self, fmt: str, what: str):
        n = struct.calcsize(fmt)
        self.need(n, what)
        v = struct.unpack_from(fmt, self.buf, self.pos)[0]
        self.pos += n
        return v

    def count(self, what: str, limit: int, item_bytes: int, error=errors.MetadataError) -> int:
        """A u64 count of items at least ``item_bytes`` each: within ``limit`` and the file."""
        at = self.pos
        n = self.scalar("<Q", what)
        if n > limit:
            raise error(self.path, f"{what} is {n} (at offset {at}); the limit is {limit}")
        self.need(n * item_bytes, f"{what} of {n}")
        return n

    def take(self, n: int) -> bytes:
        out = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        return out

    def string(self, what: str, limit: int = MAX_STRING_BYTES) -> bytes:
        return self.take(self.count(f"{what} length", limit, 1))


def read_header(path: str | Path, buf=None) -> Header:
    """Walk the header, metadata and tensor table of ``path`` (or of ``buf``, its bytes).

    Raises:
        NotGGUFError, UnsupportedVersionError, TruncatedFileError, MetadataError,
        TensorShapeError, UnsupportedTensorTypeError, TensorOffsetError: each naming
        the file, the key or tensor, and the bound.
    """
    path = Path(path)
    if buf is None:
        with open(path, "rb") as f:
            if f.seek(0, 2) == 0:
                raise errors.NotGGUFError(path, "not a GGUF file: it is empty")
            buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    c = _Cursor(path, buf, 0)
    from .constants import GGUF_MAGIC, GGUF_VERSIONS

    magic = bytes(buf[:4])
    if magic != struct.pack("<I", GGUF_MAGIC):
        raise errors.NotGGUFError(path, f"not a GGUF file: starts with {magic!r}, expected the magic b'GGUF'")
    c.pos = 4
    version = c.scalar("<I", "the version")
    if version not in GGUF_VERSIONS:
        raise errors.UnsupportedVersionError(
            path, f"GGUF version {version} is not supported; expected one of {GGUF_VERSIONS}")
    # the smallest tensor-info record: name length, n_dims, one dim, type, offset
    n_tensors = c.count("the tensor count", MAX_TENSORS, 8 + 4 + 8 + 4 + 8)
    n_kv = c.count("the metadata key count", MAX_KV, 8 + 4 + 1)
    offsets = {"tensor_count": 8, "kv_count": 16}

    fields: dict[str, Field] = {}
    for _ in range(n_kv):
        start = c.pos
        key_bytes = c.string("a metadata key", MAX_KEY_BYTES)
        key = _utf8(path, key_bytes, f"the metadata key at offset {start}")
        if key in fields:
            raise errors.MetadataError(path, f"metadata key {key} appears twice (offset {start})")
        type_at = c.pos
        vtype = _value_type(c, key)
        value_at = c.pos
        f_offsets = {"key_len": start, "type": type_at, "value": value_at}
        item_type, raw = _value(c, key, vtype, f_offsets, 0)
        fields[key] = Field(key, vtype, item_type, raw, f_offsets)

    tensors = [_tensor_info(c) for _ in range(n_tensors)]
    names = set()
    for t in tensors:
        if t.name in names:
            raise errors.TensorShapeError(path, f"tensor {t.name} appears twice in the tensor table")
        names.add(t.name)

    alignment = _alignment(path, fields)
    data_offset = -(-c.pos // alignment) * alignment
    _check_offsets(path, tensors, alignment, data_offset, len(buf))
    return Header(version, fields, tensors, alignment, data_offset, len(buf), offsets)


def _utf8(path: Path, raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise errors.MetadataError(path, f"{what} is not valid UTF-8 ({e.reason} at byte {e.start})") from None


def _value_type(c: _Cursor, key: str) -> GGUFValueType:
    at = c.pos
    t = c.scalar("<I", f"the type of metadata key {key}")
    if t not in _VALUE_TYPES:
        raise errors.MetadataError(
            c.path, f"metadata key {key} has value type {t} (at offset {at}); known types are 0..{max(_VALUE_TYPES)}")
    return V(t)


def _value(c: _Cursor, key: str, vtype: GGUFValueType, offs: dict, depth: int):
    """(item type, raw value) of one value of type ``vtype`` at the cursor."""
    if vtype == V.STRING:
        return None, c.string(f"metadata key {key}")
    if vtype in _SCALAR:
        return None, c.scalar(_SCALAR[vtype], f"metadata key {key}")
    # an array: item type, count, items
    if depth >= MAX_ARRAY_DEPTH:
        raise errors.MetadataError(c.path, f"metadata key {key} nests arrays deeper than {MAX_ARRAY_DEPTH}")
    if depth == 0:
        offs["item_type"] = c.pos
    item = _value_type(c, key)
    if depth == 0:
        offs["count"] = c.pos
    if item in _NUMPY:
        size = struct.calcsize(_SCALAR[item])
        n = c.count(f"the item count of metadata key {key}", MAX_ARRAY_ITEMS, size)
        arr = np.frombuffer(c.buf, dtype=_NUMPY[item], count=n, offset=c.pos).copy()
        c.pos += n * size
        return item, arr.astype(bool) if item == V.BOOL else arr
    # strings (8-byte length each) or nested arrays (4-byte type + 8-byte count each)
    n = c.count(f"the item count of metadata key {key}", MAX_ARRAY_ITEMS, 8 if item == V.STRING else 12)
    if item == V.STRING:
        return item, _strings(c, key, n)
    return item, [_value(c, key, item, offs, depth + 1)[1] for _ in range(n)]


_U64 = struct.Struct("<Q")


def _strings(c: _Cursor, key: str, n: int) -> list[bytes]:
    """``n`` length-prefixed strings at the cursor (a vocabulary: tens of thousands).

    One tight loop for the well-formed ones; at the first length past the limit or the
    file's end the checked reader takes over and raises its precise error."""
    buf, pos, end = c.buf, c.pos, c.size
    unpack, out = _U64.unpack_from, []
    append = out.append
    for _ in range(n):
        if pos + 8 > end:
            break
        size = unpack(buf, pos)[0]
        start = pos + 8
        if size > MAX_STRING_BYTES or start + size > end:
            break
        append(bytes(buf[start:start + size]))
        pos = start + size
    c.pos = pos
    while len(out) < n:
        out.append(c.string(f"metadata key {key}"))
    return out


def _tensor_info(c: _Cursor) -> TensorInfo:
    start = c.pos
    raw_name = c.string("a tensor name", MAX_KEY_BYTES)
    name = _utf8(c.path, raw_name, f"the tensor name at offset {start}")
    dims_at = c.pos
    n_dims = c.scalar("<I", f"the dimension count of tensor {name}")
    if not 1 <= n_dims <= MAX_DIMS:
        raise errors.TensorShapeError(c.path, f"tensor {name} has {n_dims} dimensions; expected 1..{MAX_DIMS}")
    c.need(8 * n_dims, f"the dimensions of tensor {name}")
    dims = struct.unpack_from(f"<{n_dims}Q", c.buf, c.pos)
    c.pos += 8 * n_dims
    n_elements = 1
    for d in dims:
        n_elements *= d
    if min(dims) < 1 or n_elements > MAX_ELEMENTS:
        raise errors.TensorShapeError(
            c.path, f"tensor {name} has dimensions {list(dims)}; each must be >= 1 and their "
            f"product <= {MAX_ELEMENTS}")
    type_at = c.pos
    raw_type = c.scalar("<I", f"the type of tensor {name}")
    qtype = _TENSOR_TYPES.get(raw_type)
    if qtype is None:
        raise errors.UnsupportedTensorTypeError(c.path, f"tensor {name} has unknown GGML type id {raw_type}")
    block, size = GGML_QUANT_SIZES[qtype]
    if dims[0] % block:
        raise errors.TensorShapeError(
            c.path, f"tensor {name}: {dims[0]} columns is not a multiple of the {qtype.name} block ({block})")
    offset_at = c.pos
    offset = c.scalar("<Q", f"the data offset of tensor {name}")
    return TensorInfo(name, tuple(int(d) for d in dims), qtype, offset, n_elements,
                      n_elements // block * size,
                      {"name_len": start, "n_dims": dims_at, "type": type_at, "offset": offset_at})


def _alignment(path: Path, fields: dict[str, Field]) -> int:
    from .constants import Keys

    f = fields.get(Keys.ALIGNMENT)
    if f is None:
        return DEFAULT_ALIGNMENT
    if f.type != V.UINT32:
        raise errors.MetadataError(path, f"metadata key {Keys.ALIGNMENT} is {f.type.name}; expected UINT32")
    a = f.raw
    if a == 0 or a & (a - 1) or a > MAX_ALIGNMENT:
        raise errors.MetadataError(
            path, f"metadata key {Keys.ALIGNMENT}={a}; expected a power of two <= {MAX_ALIGNMENT}")
    return a


def _check_offsets(path: Path, tensors: list[TensorInfo], alignment: int, data_offset: int,
                   size: int) -> None:
    """Each tensor aligned, inside the data section, sized for its type and shape, and
    not overlapping the next one."""
    room = size - data_offset
    for t in tensors:
        if t.offset % alignment:
            raise errors.TensorOffsetError(
                path, f"tensor {t.name}: data offset {t.offset} is not aligned to {alignment} bytes")
        if t.offset + t.n_bytes > room:
            raise errors.TruncatedFileError(
                path, f"truncated: tensor {t.name} needs {t.n_bytes} bytes at data offset {t.offset}, "
                f"the data section holds {max(room, 0)} ({size} bytes on disk)")
    # writers lay tensors out back to back, padded to the alignment: a gap larger than
    # the padding means a type or shape was edited to need fewer bytes than are there
    ordered = sorted(tensors, key=lambda t: t.offset)
    for a, b in zip(ordered, ordered[1:], strict=False):
        end = a.offset + a.n_bytes
        if end > b.offset:
            raise errors.TensorOffsetError(
                path, f"tensor {b.name} (data offset {b.offset}) overlaps tensor {a.name} "
                f"({a.n_bytes} bytes at data offset {a.offset})")
        if b.offset - end >= alignment:
            raise errors.TensorOffsetError(
                path, f"tensor {a.name} ({a.tensor_type.name}, dimensions {list(a.dims)}) needs "
                f"{a.n_bytes} bytes but {b.offset - a.offset} lie before the next tensor {b.name}: "
                f"its type or shape does not match its data")
