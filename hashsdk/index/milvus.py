"""``MilvusIndex``: the HammingIndex verbs on a Milvus collection, one machine or a cluster.

    from hashsdk.index.milvus import MilvusIndex
    index = MilvusIndex("codes.db", "images", bits=48)       # Milvus Lite, in this process
    index = MilvusIndex("http://host:19530", "images", bits=48)   # a Milvus server or cluster
    index.add(codes, ids)
    distances, ids = index.search(queries, k=10)
    lims, distances, ids = index.range_search(queries, radius=2)
    index.remove(ids); index.ntotal; index.to_hamming_index()

Needs the ``milvus`` extra (pymilvus, and Milvus Lite for local files; Milvus Lite 3.x has no
binary vectors, so the extra pins the 2.5 line).

The collection: ``id`` INT64 (primary key, our ids) and ``code`` BINARY_VECTOR of
``dim = 8 * ceil(bits / 8)``, metric HAMMING, index BIN_FLAT (exact) or BIN_IVF_FLAT
(approximate: ``nlist`` lists, ``nprobe`` searched; a Milvus server only, Milvus Lite builds
BIN_FLAT alone), strong consistency. The true code length
is kept in the collection's description ("hashsdk bits=N"), so a reopened collection knows it.

Byte and bit order: Milvus receives each code as ``dim / 8`` bytes with dimension i at bit
``i % 8`` of byte ``i // 8``, the least significant bit first, as Milvus's user guide builds
binary vectors from bit lists. hashsdk packs the most significant bit first (np.packbits), so
each byte is bit-reversed on the way in and out; codes shorter than a multiple of 8 bits are
padded with zero bits. Neither changes a Hamming distance.

Results follow HammingIndex: distances int32 and ids int64, sorted by (distance, id), padded
with (2**31 - 1, -1). Milvus returns ties at the k-th distance in its own choice, so ids can
differ from HammingIndex's where that distance is tied; distances never do. Milvus caps a
result list at 16,384 (k, and the results of one range query), and it accepts duplicate ids and
vectors of the wrong width without complaint, so this class checks both before it sends.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator

import numpy as np

from hashsdk._args import check_int
from hashsdk.codes import as_packed, check_bits, code_size
from hashsdk.errors import HashsdkError

INDEX_TYPES = ("BIN_FLAT", "BIN_IVF_FLAT")
MAX_RESULTS = 16_384  # Milvus's topk limit
PAD_DISTANCE = np.iinfo(np.int32).max
_REVERSED = np.array([int(f"{b:08b}"[::-1], 2) for b in range(256)], np.uint8)  # bit order


def to_milvus_bytes(packed: np.ndarray) -> np.ndarray:
    """Packed codes (MSB first) to Milvus's byte layout (LSB first); the same shape."""
    return _REVERSED[packed]


def from_milvus_bytes(data: np.ndarray) -> np.ndarray:
    """The inverse of to_milvus_bytes (bit reversal is its own inverse)."""
    return _REVERSED[data]


def _client(uri: str, **kwargs):
    try:
        with warnings.catch_warnings():  # milvus-lite 2.5 imports the deprecated pkg_resources
            warnings.simplefilter("ignore", UserWarning)
            from pymilvus import MilvusClient
    except ImportError as exc:
        raise HashsdkError(f"MilvusIndex needs pymilvus: pip install 'hashsdk[milvus]' ({exc})"
                           ) from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return MilvusClient(uri=uri, **kwargs)
    except Exception as exc:  # noqa: BLE001  (grpc and pymilvus raise many types)
        raise HashsdkError(f"cannot open Milvus at {uri!r}: {exc}") from None


class MilvusIndex:
    """Exact (BIN_FLAT) or approximate (BIN_IVF_FLAT) Hamming search in a Milvus collection.

    Args:
        uri: a local file path (Milvus Lite runs in this process) or ``http://host:19530``.
        collection: the collection's name; opened if it exists, else created (needs ``bits``).
        bits: the code length; for an existing collection, checked against its own.
        index_type: "BIN_FLAT" or "BIN_IVF_FLAT" (for a new collection).
        nlist: BIN_IVF_FLAT's lists.
        nprobe: how many lists a BIN_IVF_FLAT search visits.
        **client_kwargs (Any): passed to pymilvus's MilvusClient (token, db_name, ...).
    """

    def __init__(self, uri: str, collection: str, bits: int | None = None, *,
                 index_type: str = "BIN_FLAT", nlist: int = 128, nprobe: int = 16,
                 **client_kwargs):
        if index_type not in INDEX_TYPES:
            raise HashsdkError(f"index_type must be one of {INDEX_TYPES}, got {index_type!r}")
        self.uri, self.collection = uri, collection
        self.nprobe = check_int(nprobe, "nprobe")
        self._client = _client(uri, **client_kwargs)
        if self._client.has_collection(collection):
            self._bits = self._existing_bits(bits)
        else:
            if bits is None:
                raise HashsdkError(f"collection {collection!r} does not exist at {uri}; pass "
                                   "bits to create it")
            self._bits = check_bits(bits)
            self._create(index_type, check_int(nlist, "nlist"))
        self._next_id: int | None = None  # found on the first default-id add

    # ---- the collection ------------------------------------------------------------------

    def _create(self, index_type: str, nlist: int) -> None:
        from pymilvus import DataType, MilvusClient

        schema = MilvusClient.create_schema(auto_id=False,
                                            description=f"hashsdk bits={self._bits}")
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("code", DataType.BINARY_VECTOR, dim=8 * code_size(self._bits))
        params = self._client.prepare_index_params()
        params.add_index("code", index_type=index_type, metric_type="HAMMING",
                         params={"nlist": nlist} if index_type == "BIN_IVF_FLAT" else {})
        try:
            self._client.create_collection(self.collection, schema=schema, index_params=params,
                                           consistency_level="Strong")
        except Exception as exc:  # noqa: BLE001  (pymilvus's MilvusException and grpc's)
            if self._client.has_collection(self.collection):  # half made: no index on it
                self._client.drop_collection(self.collection)
            lite = "" if "://" in self.uri else (
                "; Milvus Lite (a local file) builds BIN_FLAT only, BIN_IVF_FLAT needs a "
                "Milvus server")
            raise HashsdkError(f"Milvus at {self.uri} refused to create {self.collection!r} "
                               f"with {index_type}: {getattr(exc, 'message', exc)}{lite}"
                               ) from None

    def _existing_bits(self, bits: int | None) -> int:
        info = self._client.describe_collection(self.collection)
        fields = {f["name"]: f for f in info["fields"]}
        code = fields.get("code")
        if "id" not in fields or code is None or "dim" not in code.get("params", {}):
            raise HashsdkError(f"collection {self.collection!r} at {self.uri} is not a hashsdk "
                               "collection (expected fields id and code)")
        dim = int(code["params"]["dim"])
        found = re.search(r"hashsdk bits=(\d+)", info.get("description", ""))
        have = int(found.group(1)) if found else dim
        if bits is not None and check_bits(bits) != have:
            raise HashsdkError(f"collection {self.collection!r} holds {have}-bit codes "
                               f"(dim {dim}); got bits={bits}")
        return have

    @property
    def bits(self) -> int:
        return self._bits

    @property
    def code_size(self) -> int:
        return code_size(self._bits)

    @property
    def ntotal(self) -> int:
        return self._count("")

    def __len__(self) -> int:
        return self.ntotal

    def _count(self, where: str) -> int:
        rows = self._client.query(self.collection, filter=where, output_fields=["count(*)"])
        return int(rows[0]["count(*)"])

    def close(self) -> None:
        self._client.close()

    def __repr__(self) -> str:
        return f"MilvusIndex({self.uri!r}, {self.collection!r}, bits={self._bits})"

    # ---- add and remove ------------------------------------------------------------------

    def add(self, codes: np.ndarray, ids: np.ndarray | None = None,
            batch_size: int = 10_000) -> np.ndarray:
        """Adds codes (packed, or unpacked outputs, as HammingIndex.add); ids default to
        consecutive ids after the largest id present. Returns the ids, int64 (n,)."""
        packed = as_packed(codes, self._bits, "add")
        if len(packed) == 0:
            raise HashsdkError("add: expected at least one code, got an empty batch")
        if ids is None:
            start = self._next_default_id()
            ids = np.arange(start, start + len(packed), dtype=np.int64)
        else:
            ids = self._check_new_ids(np.asarray(ids), len(packed))
        data = to_milvus_bytes(packed)
        for s in range(0, len(ids), batch_size):
            self._client.insert(self.collection, [
                {"id": int(i), "code": row.tobytes()}
                for i, row in zip(ids[s:s + batch_size], data[s:s + batch_size], strict=True)])
        if self._next_id is not None:
            self._next_id = max(self._next_id, int(ids.max()) + 1)
        return ids

    def _check_new_ids(self, ids: np.ndarray, n: int) -> np.ndarray:
        if ids.ndim != 1 or len(ids) != n or (ids.size and ids.dtype.kind not in "iu"):
            raise HashsdkError(f"add: expected {n} integer ids (int64, 1-D), got {ids.dtype} "
                               f"{ids.shape}")
        ids = ids.astype(np.int64)
        if (ids < 0).any():
            raise HashsdkError("add: ids must be >= 0 (-1 marks a missing result)")
        if len(np.unique(ids)) != n:
            raise HashsdkError("add: ids must be unique within the batch")
        present = self._present(ids)
        if len(present):
            raise HashsdkError(f"add: {len(present)} ids are already in the collection, e.g. "
                               f"{present[:5]}; remove them first (Milvus would keep both)")
        return ids

    def _present(self, ids: np.ndarray, chunk: int = 4096) -> list[int]:
        out: list[int] = []
        for s in range(0, len(ids), chunk):
            rows = self._client.query(self.collection,
                                      filter=f"id in {ids[s:s + chunk].tolist()}",
                                      output_fields=["id"])
            out += [int(r["id"]) for r in rows]
        return sorted(out)

    def _next_default_id(self) -> int:
        """One past the largest id present: a binary search over count queries, once."""
        if self._next_id is None:
            if self._count("") == 0:
                self._next_id = 0
            else:
                low, high = 0, 2**63 - 1  # the largest id lies in [low, high]
                while low < high:
                    mid = (low + high + 1) // 2
                    low, high = (mid, high) if self._count(f"id >= {mid}") else (low, mid - 1)
                self._next_id = low + 1
        return self._next_id

    def remove(self, ids: np.ndarray) -> int:
        """Removes the codes with these ids (others are ignored); returns how many were."""
        ids = np.unique(np.atleast_1d(np.asarray(ids)).astype(np.int64))
        present = self._present(ids)
        for s in range(0, len(present), 4096):
            self._client.delete(self.collection, filter=f"id in {present[s:s + 4096]}")
        return len(present)

    # ---- search ----------------------------------------------------------------------------

    def search(self, queries: np.ndarray, k: int,
               batch_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest codes of each query: distances int32 (nq, k) and ids int64 (nq, k),
        sorted by (distance, id), padded with (2**31 - 1, -1)."""
        q = self._queries(queries, "search")
        k = check_int(k, "k")
        if k > MAX_RESULTS:
            raise HashsdkError(f"k must be at most {MAX_RESULTS} in Milvus, got {k}")
        dist = np.full((len(q), k), PAD_DISTANCE, np.int32)
        ids = np.full((len(q), k), -1, np.int64)
        for row, hits in enumerate(self._search(q, k, {}, batch_size)):
            found = sorted((int(h["distance"]), int(h["id"])) for h in hits)[:k]
            if found:
                dist[row, :len(found)], ids[row, :len(found)] = zip(*found, strict=True)
        return dist, ids

    def range_search(self, queries: np.ndarray, radius: int,
                     batch_size: int = 1024) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every code within ``radius`` (inclusive): lims int64 (nq + 1,), distances int32 and
        ids int64 (lims[-1],), each query's sorted by (distance, id), as HammingIndex's.
        Raises where one query has more than 16,384 results (Milvus's cap)."""
        q = self._queries(queries, "range_search")
        radius = check_int(radius, "radius", minimum=0)
        # Milvus keeps range_filter <= distance < radius
        params = {"radius": radius + 1, "range_filter": -1}
        lims, dist, ids = [0], [], []
        for row, hits in enumerate(self._search(q, MAX_RESULTS, params, batch_size)):
            if len(hits) >= MAX_RESULTS:
                raise HashsdkError(f"range_search: query {row} has more than {MAX_RESULTS} "
                                   "codes within the radius, Milvus's cap; search a smaller "
                                   "radius, or use HammingIndex")
            found = sorted((int(h["distance"]), int(h["id"])) for h in hits)
            dist += [d for d, _ in found]
            ids += [i for _, i in found]
            lims.append(len(ids))
        return (np.array(lims, np.int64), np.array(dist, np.int32), np.array(ids, np.int64))

    def _search(self, q: np.ndarray, limit: int, params: dict,
                batch_size: int) -> Iterator[list]:
        data = to_milvus_bytes(q)
        params = dict(params, nprobe=self.nprobe)
        for s in range(0, len(q), batch_size):
            yield from self._client.search(
                self.collection, data=[row.tobytes() for row in data[s:s + batch_size]],
                limit=limit, anns_field="code",
                search_params={"metric_type": "HAMMING", "params": params})

    def _queries(self, queries: np.ndarray, what: str) -> np.ndarray:
        q = as_packed(queries, self._bits, what)
        if len(q) == 0:
            raise HashsdkError(f"{what}: expected at least one query, got an empty batch")
        return q

    # ---- both ways ----------------------------------------------------------------------------

    def to_hamming_index(self, batch_size: int = 10_000, progress: bool = True):
        """Every code and id of the collection in a HammingIndex."""
        from tqdm import tqdm

        from hashsdk.index.kinds import index_kind

        out = index_kind("flat").create(self._bits)  # the registry: flat.py imports this module
        total = self.ntotal
        iterator = self._client.query_iterator(self.collection, batch_size=batch_size,
                                               filter="", output_fields=["id", "code"])
        with tqdm(total=total, desc="from Milvus", unit="code", disable=not progress) as bar:
            while True:
                rows = iterator.next()
                if not rows:
                    iterator.close()
                    break
                data = np.frombuffer(b"".join(r["code"][0] for r in rows), np.uint8)
                codes = from_milvus_bytes(data.reshape(len(rows), -1))
                out.add(codes, np.array([r["id"] for r in rows], np.int64))
                bar.update(len(rows))
        return out


def push(index, uri: str, collection: str, batch_size: int = 10_000, progress: bool = True,
         **kwargs) -> MilvusIndex:
    """A HammingIndex's codes and ids into a new or empty Milvus collection, batch by batch."""
    from tqdm import tqdm

    target = MilvusIndex(uri, collection, index.bits, **kwargs)
    codes, ids = index.codes, index.ids
    for s in tqdm(range(0, len(ids), batch_size), desc="to Milvus", unit="batch",
                  disable=not progress):
        target.add(codes[s:s + batch_size], ids[s:s + batch_size], batch_size)
    return target
