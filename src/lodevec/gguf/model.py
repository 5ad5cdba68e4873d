"""GGUF file -> typed, validated config + quantized tensors (memory-mapped, never copied).

``GGUFModel.open(path)`` reads the file with the ``gguf`` package's reader and checks
everything the encoder will rely on, so that a bad file fails here, with the file
name and the key or tensor at fault, rather than deep inside a kernel.
"""

from __future__ import annotations

import os
import struct
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from .. import arch as _arch
from .. import errors
from .constants import (
    GGUF_MAGIC,
    GGUF_VERSIONS,
    SUPPORTED_TYPES,
    GGMLQuantizationType,
    Keys,
    Tensors,
)
from .tensors import QuantTensor

_MAGIC_BYTES = struct.pack("<I", GGUF_MAGIC)  # b"GGUF"


@dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters of an encoder, read from GGUF metadata."""

    architecture: str
    name: str
    n_layers: int
    hidden: int
    ffn: int
    n_heads: int
    context_length: int
    layer_norm_eps: float
    rope_base: float | None  # rotary architectures only
    pooling_type: int
    vocab_size: int
    file_type: int | None

    @property
    def head_dim(self) -> int:
        return self.hidden // self.n_heads

    @property
    def arch(self) -> _arch.Architecture:
        return _arch.REGISTRY[self.architecture]

    @property
    def uses_rope(self) -> bool:
        return self.arch.uses_rope

    @property
    def max_tokens(self) -> int:
        """Longest input the model accepts: a multiple of the trained context with NTK
        rope scaling for rotary models (8192 for nomic), the position table otherwise."""
        return self.arch.max_tokens(self.context_length)


class GGUFModel:
    """A GGUF embedding model: config, vocabulary and tensors.

    Attributes:
        path: the file.
        config: the validated ``ModelConfig``.
        tokens: the vocabulary as stored (phantom-space form), ``list[str]``.
        token_types: ``np.ndarray[int32]`` per token (3 = control).
        special: special token ids, e.g. ``{"cls": 101, "sep": 102, ...}``.
    """

    def __init__(self, path: Path, reader, config: ModelConfig, tensors: dict[str, QuantTensor],
                 tokens: list[str], token_types: np.ndarray, special: dict[str, int], lowercase: bool):
        self.path = path
        self._reader = reader  # keeps the memmap alive
        self.config = config
        self.tensors = tensors
        self.tokens = tokens
        self.token_types = token_types
        self.special = special
        self.lowercase = lowercase

    @property
    def arch(self) -> _arch.Architecture:
        """The architecture (``lodevec.arch``) whose graph runs this file."""
        return self.config.arch

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, path: str | os.PathLike) -> GGUFModel:
        """Open and validate a GGUF embedding model.

        Raises:
            NotGGUFError, UnsupportedVersionError, TruncatedFileError,
            UnsupportedArchitectureError, MetadataError, MissingTensorError,
            TensorShapeError, UnsupportedTensorTypeError: each naming the file.
        """
        path = Path(path)
        reader = _read(path)
        fields = reader.fields

        arch = _get(path, fields, Keys.ARCHITECTURE, str)
        graph = _arch.get(arch)
        if graph is None:
            raise errors.UnsupportedArchitectureError(
                path, f"architecture {arch!r} (key {Keys.ARCHITECTURE}) is not supported; "
                f"expected one of {', '.join(_arch.ARCHITECTURES)}")

        def key(template: str) -> str:
            return template.format(arch=arch)

        tokens = _get(path, fields, Keys.TOKENS, list)
        if not tokens:
            raise errors.MetadataError(path, f"{Keys.TOKENS} is empty; expected the vocabulary")
        if Keys.TOKEN_TYPE in fields:
            token_types = np.asarray(_get(path, fields, Keys.TOKEN_TYPE, list), dtype=np.int32)
        else:
            token_types = np.ones(len(tokens), dtype=np.int32)
        tok_model = _get(path, fields, Keys.TOKENIZER_MODEL, str)
        if tok_model != graph.tokenizer_model:
            raise errors.MetadataError(
                path, f"{Keys.TOKENIZER_MODEL} is {tok_model!r}; expected {graph.tokenizer_model!r} (WordPiece)")

        hidden = _get(path, fields, key(Keys.EMBEDDING_LENGTH), int)
        n_heads = _get(path, fields, key(Keys.HEAD_COUNT), int)
        if hidden <= 0 or n_heads <= 0 or hidden % n_heads:
            raise errors.MetadataError(
                path, f"{key(Keys.EMBEDDING_LENGTH)}={hidden} is not a positive multiple of "
                f"{key(Keys.HEAD_COUNT)}={n_heads}")
        config = ModelConfig(
            architecture=arch,
            name=_get(path, fields, Keys.NAME, str, default=path.stem),
            n_layers=_positive(path, fields, key(Keys.BLOCK_COUNT)),
            hidden=hidden,
            ffn=_positive(path, fields, key(Keys.FEED_FORWARD_LENGTH)),
            n_heads=n_heads,
            context_length=_positive(path, fields, key(Keys.CONTEXT_LENGTH)),
            layer_norm_eps=float(_get(path, fields, key(Keys.LAYERNORM_EPS), float)),
            rope_base=(float(_get(path, fields, key(Keys.ROPE_FREQ_BASE), float))
                       if graph.uses_rope else None),
            pooling_type=_get(path, fields, key(Keys.POOLING_TYPE), int, default=1),
            vocab_size=len(tokens),
            file_type=_get(path, fields, Keys.FILE_TYPE, int, default=None),
        )
        if config.pooling_type not in (0, 1):  # 0 none (we pool anyway), 1 mean
            raise errors.MetadataError(
                path, f"{key(Keys.POOLING_TYPE)}={config.pooling_type}: only mean pooling (1) is supported")

        special = {}
        for name, k, default in (("cls", Keys.BOS_ID, 101), ("sep", Keys.SEP_ID, 102),
                                 ("unk", Keys.UNK_ID, 100), ("pad", Keys.PAD_ID, 0),
                                 ("mask", Keys.MASK_ID, 103)):
            tid = _get(path, fields, k, int, default=default)
            if not 0 <= tid < len(tokens):
                raise errors.MetadataError(path, f"{k}={tid} is outside the vocabulary (0..{len(tokens) - 1})")
            special[name] = tid
        lowercase = bool(_get(path, fields, Keys.LOWERCASE, bool, default=True))

        tensors = {}
        for t in reader.tensors:
            tensors[t.name] = t
        model_tensors = _collect_tensors(path, config, tensors)
        return cls(path, reader, config, model_tensors, tokens, token_types, special, lowercase)

    # ------------------------------------------------------------------ access
    def weight(self, template: str, bid: int | None = None) -> QuantTensor:
        """The 2-D tensor named by ``template`` (``{bid}`` filled in)."""
        return self.tensors[template.format(bid=bid)]

    def vector(self, template: str, bid: int | None = None) -> np.ndarray:
        """A 1-D float32 tensor (norm weight or bias), as a read-only array."""
        t = self.tensors[template.format(bid=bid)]
        return np.frombuffer(t.data, dtype=np.float32) if t.qtype == GGMLQuantizationType.F32 \
            else np.frombuffer(t.data, dtype=np.float16).astype(np.float32)

    def has(self, template: str, bid: int | None = None) -> bool:
        return template.format(bid=bid) in self.tensors

    @cached_property
    def digest(self) -> str:
        """sha256 of the whole file (hex): the model's identity for caches and stores."""
        from ..hub import sha256_file

        return sha256_file(self.path)

    def info(self) -> dict:
        """Architecture, sizes, context, vocabulary and tensor types, JSON-ready."""
        types: dict[str, int] = {}
        n_params = 0
        for t in self._reader.tensors:
            types[t.tensor_type.name] = types.get(t.tensor_type.name, 0) + 1
            n_params += int(t.n_elements)
        cfg = asdict(self.config)
        cfg["head_dim"] = self.config.head_dim
        cfg["max_tokens"] = self.config.max_tokens
        return {
            "file": str(self.path),
            "size_bytes": self.path.stat().st_size,
            **cfg,
            "embedding_dim": self.config.hidden,
            "n_params": n_params,
            "tensor_types": dict(sorted(types.items())),
            "n_tensors": len(self._reader.tensors),
        }


# ---------------------------------------------------------------------- helpers
def _read(path: Path):
    """Run the gguf reader, turning its generic failures into specific errors."""
    from gguf import GGUFReader

    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
    except FileNotFoundError:
        raise errors.ModelFileError(path, "no such file") from None
    except IsADirectoryError:
        raise errors.ModelFileError(path, "is a directory; expected a .gguf file") from None
    except OSError as e:
        raise errors.ModelFileError(path, f"cannot read: {e.strerror or e}") from None
    if len(head) < 4 or head[:4] != _MAGIC_BYTES:
        raise errors.NotGGUFError(
            path, f"not a GGUF file: starts with {head[:4]!r}, expected the magic b'GGUF'")
    if len(head) < 8:
        raise errors.TruncatedFileError(path, f"truncated: {size} bytes, the GGUF header alone is 24")
    version = struct.unpack("<I", head[4:8])[0]
    if version not in GGUF_VERSIONS:
        raise errors.UnsupportedVersionError(
            path, f"GGUF version {version} is not supported; expected one of {GGUF_VERSIONS}")
    try:
        reader = GGUFReader(path, "r")
    except (ValueError, IndexError, KeyError, OverflowError, struct.error, MemoryError) as e:
        raise errors.TruncatedFileError(
            path, f"truncated or corrupt: the header, metadata or tensor table cannot be read "
            f"({size} bytes on disk; reader said: {e})") from None
    for t in reader.tensors:
        if t.data.nbytes != t.n_bytes:
            raise errors.TruncatedFileError(
                path, f"truncated: tensor {t.name} needs {t.n_bytes} bytes, "
                f"{t.data.nbytes} are in the file ({size} bytes on disk)")
    return reader


_MISSING = object()


def _get(path: Path, fields, key: str, kind: type, default=_MISSING):
    """Read one metadata value, checking its type."""
    field = fields.get(key)
    if field is None:
        if default is _MISSING:
            raise errors.MetadataError(path, f"metadata key {key} is missing")
        return default
    try:
        value = field.contents()
    except Exception as e:  # malformed field payload
        raise errors.MetadataError(path, f"metadata key {key} cannot be read: {e}") from None
    ok = {
        str: isinstance(value, str),
        int: isinstance(value, (int, np.integer)) and not isinstance(value, bool),
        float: isinstance(value, (int, float, np.number)) and not isinstance(value, bool),
        bool: isinstance(value, (bool, np.bool_)),
        list: isinstance(value, list),
    }[kind]
    if not ok:
        raise errors.MetadataError(
            path, f"metadata key {key} is {type(value).__name__} {str(value)[:40]!r}; expected {kind.__name__}")
    return int(value) if kind is int else value


def _positive(path: Path, fields, key: str) -> int:
    v = _get(path, fields, key, int)
    if v <= 0:
        raise errors.MetadataError(path, f"metadata key {key}={v}; expected a positive integer")
    return v


def _required(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor the graph reads, with its shape as (rows, cols) or (n,)."""
    return config.arch.required_tensors(config.hidden, config.ffn, config.vocab_size,
                                        config.context_length, config.n_layers)


def _collect_tensors(path: Path, config: ModelConfig, found: dict) -> dict[str, QuantTensor]:
    out: dict[str, QuantTensor] = {}
    for name, shape in _required(config).items():
        t = found.get(name)
        if t is None:
            raise errors.MissingTensorError(
                path, f"tensor {name} is missing; the {config.architecture} graph needs it "
                f"with shape {_fmt(shape)}")
        qtype = GGMLQuantizationType(int(t.tensor_type))
        # GGML lists dimensions innermost first: ne0 = columns
        ne = [int(x) for x in t.shape]
        dims = tuple(reversed([d for d in ne])) if len(ne) > 1 else (ne[0],)
        while len(dims) > len(shape) and dims[0] == 1:
            dims = dims[1:]
        ok = len(dims) == len(shape) and all(s in (-1, d) for s, d in zip(shape, dims, strict=True))
        if name == Tensors.TOKEN_TYPES and ok and dims[0] < 1:
            ok = False
        if name == Tensors.POS_EMBD and len(dims) == 2 and dims[1] == shape[1] and dims[0] >= 1:
            ok = True  # fewer positions than context_length is handled by truncation
        if not ok:
            raise errors.TensorShapeError(
                path, f"tensor {name} has shape {_fmt(dims)}; expected {_fmt(shape)} "
                f"for {config.architecture} with hidden={config.hidden}, ffn={config.ffn}")
        if qtype not in SUPPORTED_TYPES:
            raise errors.UnsupportedTensorTypeError(
                path, f"tensor {name} is stored as {qtype.name}; supported types are "
                f"{', '.join(q.name for q in SUPPORTED_TYPES)}")
        if len(shape) == 1 and qtype not in (GGMLQuantizationType.F32, GGMLQuantizationType.F16):
            raise errors.UnsupportedTensorTypeError(
                path, f"tensor {name} (a norm or bias) is {qtype.name}; expected F32 or F16")
        cols = dims[-1]
        try:
            out[name] = QuantTensor.from_array(name, qtype, np.asarray(t.data), cols)
        except ValueError as e:
            raise errors.TensorShapeError(path, str(e)) from None
    return out


def _fmt(shape) -> str:
    return "(" + ", ".join("*" if s == -1 else str(s) for s in shape) + ")"
