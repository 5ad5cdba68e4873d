"""The exception tree: every error lodevec raises on purpose is a ``LodevecError``.

``InputError`` subclasses are the caller's fault (bad file, bad argument, bad text):
the CLI maps them to exit code 2 and the server to a 4xx status.  Everything else
maps to exit code 1 / 5xx.
"""

from __future__ import annotations


class LodevecError(Exception):
    """Base class of every lodevec error."""


class InputError(LodevecError, ValueError):
    """Something the caller gave us is invalid (CLI exit 2, HTTP 4xx)."""


# --- model files -----------------------------------------------------------------
class ModelFileError(InputError):
    """A model file cannot be used.  The message names the file and what was expected."""

    def __init__(self, path: object, message: str):
        self.path = str(path)
        super().__init__(f"{self.path}: {message}")


class NotGGUFError(ModelFileError):
    """The file does not start with the GGUF magic."""


class UnsupportedVersionError(ModelFileError):
    """The GGUF version is not one we read."""


class TruncatedFileError(ModelFileError):
    """The file ends before the header, metadata or tensor data says it should."""


class UnsupportedArchitectureError(ModelFileError):
    """``general.architecture`` names a graph we do not implement."""


class MetadataError(ModelFileError):
    """A metadata key is missing or has the wrong type or value."""


class MissingTensorError(ModelFileError):
    """A tensor the architecture needs is not in the file."""


class TensorShapeError(ModelFileError):
    """A tensor has a shape other than the config implies."""


class UnsupportedTensorTypeError(ModelFileError):
    """A tensor is stored in a GGML type we cannot compute with."""


class TensorOffsetError(ModelFileError):
    """A tensor's data offset is unaligned or overlaps another tensor's bytes."""


class NonFiniteEmbeddingError(ModelFileError):
    """The model produced a NaN or infinite vector for a text.

    A ``ModelFileError``: a finite input that gives a non-finite output means the
    weights are bad (the file is what the user must replace), so it is reported like
    any other unusable model file, naming the file and the text.
    """


# --- texts and vectors -----------------------------------------------------------
class TextError(InputError):
    """A text cannot be embedded (empty where not allowed, wrong type, too long)."""


class DimensionError(InputError):
    """A vector or requested dimension does not match the model / table."""


class ModelNotFoundError(InputError):
    """No model was given and none is in the cache."""


class DownloadError(LodevecError):
    """A model download failed or did not match its manifest entry."""


# --- the store -----------------------------------------------------------------------
class StoreError(LodevecError):
    """A database / collection operation failed."""


class ModelMismatchError(StoreError, InputError):
    """A collection was created with another model (or dimension) than the one in use."""


class CollectionNotFoundError(StoreError, InputError):
    """The database or collection does not exist."""


class QueryError(StoreError, InputError):
    """A search/count/delete filter (SQL ``where``) or a full-text query cannot be parsed."""


class RecordError(InputError):
    """An input record is malformed (no text, bad id, bad metadata)."""


# --- the server's embedding queue ----------------------------------------------------
class QueueFull(LodevecError):
    """The embedding queue is full: the server is overloaded (HTTP 429, retry later)."""


class BatcherClosed(LodevecError):
    """The embedding queue is not running: the server is starting or stopping (HTTP 503)."""
