"""The index room: every kind of index over binary codes, their kernels, storage and file.

    flat.py          HammingIndex: exact scan, the (distance, id) order (kernel: _kernel.c)
    mih.py           MultiIndexHammingIndex: exact, sublinear (tables: _mih.c)
    milvus.py        MilvusIndex: the same verbs on a Milvus collection (the milvus extra)
    kinds.py         CodeIndex, the contract they satisfy; the registry of file kinds
    _search.py       the kernels' Python face and the numpy fallback
    _storage.py      the codes and ids buffers: appends, merges, removals, snapshots
    index_file.py    the .hidx format and its paths file
    writer_lock.py   one writer per index (INDEX.lock)

``from hashsdk import HammingIndex, MultiIndexHammingIndex`` is the public way in.
"""

from hashsdk.index.flat import HammingIndex
from hashsdk.index.kinds import (
    INDEX_KINDS,
    CodeIndex,
    IndexKind,
    index_kind,
    kinds_help,
    register_index_kind,
)
from hashsdk.index.mih import MultiIndexHammingIndex

register_index_kind("flat", HammingIndex, "exact scan, any size (the default)")
register_index_kind("mih", MultiIndexHammingIndex,
                    "multi-index hashing: exact, sublinear on large indexes of long codes")

__all__ = ["INDEX_KINDS", "CodeIndex", "HammingIndex", "IndexKind", "MultiIndexHammingIndex",
           "index_kind", "kinds_help", "register_index_kind"]
