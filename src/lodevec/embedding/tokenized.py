"""Texts prompted and tokenized once: what flows from the text stage to the engine.

The server tokenizes a request once to check its limits and hands these ids to its
batcher, which concatenates requests into shared forwards (as TEI's queue carries
token ids); the engine never tokenizes them again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Tokenized:
    """A batch of texts ready for a forward.

    Attributes:
        texts: the texts as given (before the task prefix): the cache keys.
        ids: ``[CLS] ... [SEP]`` token ids per text, truncated to the encoder's maximum.
        n_original: token count of each text before truncation.
        task: the validated task name.
        dim: the validated output dimension.
    """

    texts: list[str]
    ids: list[list[int]]
    n_original: list[int]
    task: str
    dim: int

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def n_tokens(self) -> list[int]:
        """Tokens each text uses in the forward (after truncation)."""
        return [len(i) for i in self.ids]

    @property
    def truncated(self) -> list[bool]:
        return [len(i) < n for i, n in zip(self.ids, self.n_original, strict=True)]

    def select(self, indices: Sequence[int]) -> Tokenized:
        """The texts at ``indices``, in that order."""
        return Tokenized([self.texts[i] for i in indices], [self.ids[i] for i in indices],
                         [self.n_original[i] for i in indices], self.task, self.dim)

    @classmethod
    def concat(cls, parts: Sequence[Tokenized]) -> Tokenized:
        """One batch of several parts of the same task and dimension.

        Raises:
            ValueError: no parts, or parts of different tasks or dimensions.
        """
        if not parts:
            raise ValueError("Tokenized.concat needs at least one part")
        task, dim = parts[0].task, parts[0].dim
        if any(p.task != task or p.dim != dim for p in parts):
            raise ValueError("Tokenized.concat: parts differ in task or dimension")
        return cls([t for p in parts for t in p.texts], [i for p in parts for i in p.ids],
                   [n for p in parts for n in p.n_original], task, dim)
