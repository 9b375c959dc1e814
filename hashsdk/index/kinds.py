"""Index kinds: the contract every index satisfies, and the registry of the kinds that live in
a ``.hidx`` file.

``CodeIndex`` is what search, evaluation and ``hashsdk serve`` may rely on, whatever holds the
codes: ``HammingIndex`` (flat, exact scan), ``MultiIndexHammingIndex`` (exact, sublinear) and
the Milvus adapter (``hashsdk.index.milvus.MilvusIndex``) all satisfy it. Codes are packed uint8
(n, ceil(bits / 8)), MSB first (``hashsdk.codes``); ids int64 from 0 to ``MAX_ID``
(2**63 - 2); results sorted by (distance, id), missing top-k results at distance 2**31 - 1
and id -1.

A *file kind* is a ``CodeIndex`` class that is made from its bits (``cls(bits, threads=)``)
and saved to and loaded from a ``.hidx`` file (``save(path)``, ``cls.load(path, threads=)``).
``hashsdk index build --kind``, ``hashsdk search --kind`` and ``hashsdk serve --kind`` list
and take the registered names. A new kind is one module with its class, plus one line::

    register_index_kind("mykind", MyIndex, "what it is for")

in ``hashsdk/index/__init__.py`` (docs/architecture.md shows the whole example).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from hashsdk.errors import HashsdkError
from hashsdk.index._storage import MAX_ID  # noqa: F401  (part of the contract)


@runtime_checkable
class CodeIndex(Protocol):
    """The verbs every index kind has (faiss's few plain verbs)."""

    @property
    def bits(self) -> int: ...

    @property
    def code_size(self) -> int: ...

    @property
    def ntotal(self) -> int: ...

    def add(self, codes: np.ndarray, ids: np.ndarray | None = None) -> np.ndarray:
        """Adds codes, packed (n, code_size) or outputs (n, bits); returns their int64 ids."""
        ...

    def remove(self, ids: np.ndarray) -> int:
        """Removes the codes of ``ids``; returns how many were present."""
        ...

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """k nearest: (distances int32 (nq, k), ids int64 (nq, k))."""
        ...

    def range_search(self, queries: np.ndarray, radius: int
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every code within ``radius``: (lims int64 (nq + 1,), distances, ids), faiss's
        layout (query i's results at lims[i]:lims[i + 1])."""
        ...


@dataclass(frozen=True)
class IndexKind:
    """One registered file kind: its name, its class, and a line for help texts."""

    name: str
    cls: type
    about: str

    def create(self, bits: int, threads: int | None = None) -> CodeIndex:
        return self.cls(bits, threads=threads)

    def load(self, path: str, threads: int | None = None, **kwargs) -> CodeIndex:
        """The index of a ``.hidx`` file as this kind; ``kwargs`` go to ``cls.load`` (such as
        ``mmap=True``)."""
        return self.cls.load(path, threads=threads, **kwargs)


INDEX_KINDS: dict[str, IndexKind] = {}


def register_index_kind(name: str, cls: type, about: str) -> IndexKind:
    """Adds a file kind; a name registered twice is an error (one home for each name)."""
    if name in INDEX_KINDS:
        raise HashsdkError(f"index kind {name!r} is already registered")
    for verb in ("save", "load", "add", "remove", "search", "range_search"):
        if not callable(getattr(cls, verb, None)):
            raise HashsdkError(f"index kind {name!r}: {cls.__name__} has no {verb}()")
    INDEX_KINDS[name] = kind = IndexKind(name, cls, about)
    return kind


def index_kind(name: str) -> IndexKind:
    """The registered kind ``name``, or an error that lists the names."""
    try:
        return INDEX_KINDS[name]
    except KeyError:
        raise HashsdkError(f"index kind: expected one of {sorted(INDEX_KINDS)}, "
                           f"got {name!r}") from None


def kinds_help() -> str:
    """One line for a ``--kind`` option's help: each registered name and what it is for."""
    return "; ".join(f"{k.name}: {k.about}" for k in INDEX_KINDS.values()) + "."
