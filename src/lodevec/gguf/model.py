"""GGUF file -> typed, validated config + quantized tensors (memory-mapped, never copied).

``GGUFModel.open(path)`` reads the file with the bounded header reader (``header.py``) and checks
everything the encoder will rely on, so that a bad file fails here, with the file
name and the key or tensor at fault, rather than deep inside a kernel.
"""

from __future__ import annotations

import math
import mmap
import os
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from .. import arch as _arch
from .. import errors
from .constants import (
    SUPPORTED_TYPES,
    GGMLQuantizationType,
    Keys,
    Tensors,
)
from .header import Header, read_header
from .tensors import QuantTensor

#: plausible ranges of an encoder's hyper-parameters (beyond them a file is corrupt)
MAX_CONTEXT = 1 << 20
MAX_LAYERS = 1024
MAX_HIDDEN = 1 << 16
MAX_FFN = 1 << 18


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

    def __init__(self, path: Path, header: Header, config: ModelConfig, tensors: dict[str, QuantTensor],
                 tokens: list[str], token_types: np.ndarray, special: dict[str, int], lowercase: bool):
        self.path = path
        self._header = header  # the tensors' data views keep the file mapped
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
            TensorShapeError, UnsupportedTensorTypeError, TensorOffsetError: each naming
            the file, the key or tensor, and the bound.
        """
        path = Path(path)
        header, data = _read(path)
        fields = header.fields

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
        if not set(map(type, tokens)) <= {str}:  # (a set of types: C speed on 30k tokens)
            raise errors.MetadataError(path, f"{Keys.TOKENS} holds non-strings; expected the vocabulary")
        if Keys.TOKEN_TYPE in fields:
            types = _get(path, fields, Keys.TOKEN_TYPE, list)
            if len(types) != len(tokens) or not set(map(type, types)) <= {int} or (
                    types and not -2**31 <= min(types) <= max(types) < 2**31):
                raise errors.MetadataError(
                    path, f"{Keys.TOKEN_TYPE} has {len(types)} entries; expected one int32 per token ({len(tokens)})")
            token_types = np.asarray(types, dtype=np.int32)
        else:
            token_types = np.ones(len(tokens), dtype=np.int32)
        tok_model = _get(path, fields, Keys.TOKENIZER_MODEL, str)
        if tok_model != graph.tokenizer_model:
            raise errors.MetadataError(
                path, f"{Keys.TOKENIZER_MODEL} is {tok_model!r}; expected {graph.tokenizer_model!r} (WordPiece)")

        hidden = _bounded(path, fields, key(Keys.EMBEDDING_LENGTH), MAX_HIDDEN)
        n_heads = _bounded(path, fields, key(Keys.HEAD_COUNT), MAX_HIDDEN)
        if hidden <= 0 or n_heads <= 0 or hidden % n_heads:
            raise errors.MetadataError(
                path, f"{key(Keys.EMBEDDING_LENGTH)}={hidden} is not a positive multiple of "
                f"{key(Keys.HEAD_COUNT)}={n_heads}")
        config = ModelConfig(
            architecture=arch,
            name=_get(path, fields, Keys.NAME, str, default=path.stem),
            n_layers=_bounded(path, fields, key(Keys.BLOCK_COUNT), MAX_LAYERS),
            hidden=hidden,
            ffn=_bounded(path, fields, key(Keys.FEED_FORWARD_LENGTH), MAX_FFN),
            n_heads=n_heads,
            context_length=_bounded(path, fields, key(Keys.CONTEXT_LENGTH), MAX_CONTEXT),
            layer_norm_eps=_finite_positive(path, fields, key(Keys.LAYERNORM_EPS)),
            rope_base=(_finite_positive(path, fields, key(Keys.ROPE_FREQ_BASE))
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
            # [CLS]/[SEP] are written into the tokenizer's template, where ':' and blanks
            # are syntax: such a token is a corrupt id, not a real special token
            text = tokens[tid]
            if name in ("cls", "sep") and (not text.strip() or ":" in text or any(c.isspace() for c in text)):
                raise errors.MetadataError(
                    path, f"{k}={tid} names token {text[:40]!r}; a {name} token must be non-empty, "
                    f"without ':' or blanks")
            special[name] = tid
        lowercase = bool(_get(path, fields, Keys.LOWERCASE, bool, default=True))

        problem = graph.check_config(config)
        if problem:
            raise errors.MetadataError(path, problem)
        found = {t.name: t for t in header.tensors}
        model_tensors = _collect_tensors(path, config, found, data, header.data_offset)
        problem = graph.check_tensors(config, model_tensors)
        if problem:
            raise errors.MetadataError(path, problem)
        return cls(path, header, config, model_tensors, tokens, token_types, special, lowercase)

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
        """sha256 of the whole file (hex): the model's identity for caches and stores
        (remembered across runs while the file is unchanged, see :mod:`lodevec.digests`)."""
        from ..digests import file_digest

        return file_digest(self.path)

    def info(self) -> dict:
        """Architecture, sizes, context, vocabulary and tensor types, JSON-ready."""
        types: dict[str, int] = {}
        n_params = 0
        for t in self._header.tensors:
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
            "n_tensors": len(self._header.tensors),
        }


# ---------------------------------------------------------------------- helpers
def _read(path: Path) -> tuple[Header, np.ndarray]:
    """Map the file and walk its header with the bounded reader: (header, the file's bytes)."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
    except FileNotFoundError:
        raise errors.ModelFileError(path, "no such file") from None
    except IsADirectoryError:
        raise errors.ModelFileError(path, "is a directory; expected a .gguf file") from None
    except (OSError, ValueError) as e:
        raise errors.ModelFileError(path, f"cannot read: {getattr(e, 'strerror', None) or e}") from None
    header = read_header(path, buf)
    return header, np.frombuffer(buf, dtype=np.uint8)


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


def _bounded(path: Path, fields, key: str, limit: int) -> int:
    v = _get(path, fields, key, int)
    if not 0 < v <= limit:
        raise errors.MetadataError(path, f"metadata key {key}={v}; expected an integer in 1..{limit}")
    return v


def _finite_positive(path: Path, fields, key: str) -> float:
    v = float(_get(path, fields, key, float))
    if not (math.isfinite(v) and v > 0):
        raise errors.MetadataError(path, f"metadata key {key}={v}; expected a finite number > 0")
    return v


def _required(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor the graph reads, with its shape as (rows, cols) or (n,)."""
    return config.arch.required_tensors(config.hidden, config.ffn, config.vocab_size,
                                        config.context_length, config.n_layers)


def _collect_tensors(path: Path, config: ModelConfig, found: dict, data: np.ndarray,
                     data_offset: int) -> dict[str, QuantTensor]:
    """The required tensors, checked for shape and type, as views of the mapped file."""
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
        start = data_offset + t.offset  # inside the file: checked by the header reader
        try:
            out[name] = QuantTensor.from_array(name, qtype, data[start:start + t.n_bytes], cols)
        except ValueError as e:
            raise errors.TensorShapeError(path, str(e)) from None
    return out


def _fmt(shape) -> str:
    return "(" + ", ".join("*" if s == -1 else str(s) for s in shape) + ")"
