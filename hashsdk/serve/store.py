"""``ServedIndex``: an index file that a server reads and writes, losing no acknowledged write.

Files, beside the index ``INDEX`` (a ``.hidx`` file, ``hashsdk.index.index_file``):

    INDEX                      the last folded index, replaced atomically
    INDEX.paths.txt            its image paths (one per code, in id order; "" for none)
    INDEX.journal-NNNNNNNN     journals (``hashsdk.serve.journal``), numbered from 1
    INDEX.uploads/TOKEN.EXT    images added by upload, so that results can show them

Opening reads INDEX and replays every journal over it in number order. A write (``add``,
``remove``) appends one record to the newest journal and fsyncs it, then applies it to the
in-memory index; only then is it acknowledged. Searches read the index's snapshots and never
wait for a write (``HammingIndex`` publishes a new snapshot per write). New ids are handed out
under the write lock, so they reach the index in order and append (ids taken before the lock
would reach it out of order whenever writers overtake each other: a merge, an O(n) copy, and
for ``mih`` a rebuild of its tables, each time).

Folding (every ``fold_every`` records, and on ``close``): under the write lock, a new journal
is started and the index's codes, ids and paths are copied; then, with writes flowing to the
new journal, the copy is written over INDEX atomically and the older journals are deleted. A
crash at any point leaves INDEX (old or new) and every journal not yet folded; replaying them
over either index gives the same state, because replay is idempotent (see ``journal``).

The one window left: INDEX and its paths file are renamed one right after the other, so a
crash between the two renames leaves the new index beside the old paths. The codes are whole
then (no acknowledged write is lost); opening notices the paths file's wrong length, warns, and
keeps only the paths the journals name.
"""

from __future__ import annotations

import glob
import logging
import os
import re
import secrets
import threading
from collections.abc import Iterable

import numpy as np

from hashsdk._atomic import atomic_write
from hashsdk.codes import as_packed
from hashsdk.errors import HashsdkError
from hashsdk.index import HammingIndex, IndexKind, index_file, index_kind
from hashsdk.index.kinds import MAX_ID
from hashsdk.index.writer_lock import WriterLock
from hashsdk.serve.journal import ADD, REMOVE, Journal, Record, fsync_folder

log = logging.getLogger("hashsdk.serve")

DEFAULT_FOLD_EVERY = 10_000  # records between folds: a journal of at most ~10k writes to replay


class Conflict(HashsdkError):
    """An add names an id the index already holds."""


class ServedIndex:
    """An index with its journals and uploads; see the module docstring.

    Args:
        path: the index file; created empty with ``bits`` when missing.
        bits: code length for a new index (must match an existing one's).
        kind: a registered index kind (hashsdk.index.kinds): "flat" (HammingIndex), "mih"
            (MultiIndexHammingIndex), ...
        threads: search threads (None: every core).
        fold_every: journal records between folds.
    """

    def __init__(self, path: str | os.PathLike, *, bits: int | None = None, kind: str = "flat",
                 threads: int | None = None, fold_every: int = DEFAULT_FOLD_EVERY):
        self.path, self.kind, self.fold_every = os.fspath(path), kind, fold_every
        self.uploads = self.path + ".uploads"
        self._lock = threading.Lock()  # serializes writes (and new ids) and folds' switch
        self._fold_lock = threading.Lock()  # one fold at a time
        self._folder: threading.Thread | None = None
        self._writer = WriterLock(self.path, "hashsdk serve")  # one writer per index
        try:
            self._open(bits, kind, threads)
        except BaseException:
            self._writer.release()
            raise

    def _open(self, bits: int | None, kind: str, threads: int | None) -> None:
        self.index = self._load_index(bits, index_kind(kind), threads)
        self.paths = self._load_paths()
        numbers = self._journal_numbers()
        self.replayed = sum(self._replay(self._journal_path(n)) for n in numbers[:-1])
        self._journal = Journal.open(self._journal_path(numbers[-1] if numbers else 1),
                                     self.index.bits)
        for record in self._journal.records:
            self._apply(record)
        self.replayed += len(self._journal.records)  # records replayed at open
        if len(numbers) > 1:  # a fold was interrupted: finish it now
            self.fold()

    # ---- opening ---------------------------------------------------------------------------

    def _load_index(self, bits: int | None, kind: IndexKind,
                    threads: int | None) -> HammingIndex:
        if not os.path.exists(self.path):
            if bits is None:
                raise HashsdkError(f"{self.path}: no such index; give the bits (or a model) to "
                                   f"create an empty one")
            index = kind.create(bits, threads)
            index.save(self.path)
            return index
        index = kind.load(self.path, threads)
        if bits is not None and bits != index.bits:
            raise HashsdkError(f"{self.path} holds {index.bits}-bit codes, the model makes "
                               f"{bits}-bit codes: serve it with the model that built it")
        return index

    def _load_paths(self) -> dict[int, str]:
        try:
            lines = index_file.read_paths(self.path, self.index.ntotal)
        except HashsdkError as exc:  # the rename window of the module docstring
            log.warning("%s; serving without those paths", exc)
            return {}
        if lines is None:
            return {}
        return {i: p for i, p in zip(self.index.ids.tolist(), lines, strict=True) if p}

    def _journal_numbers(self) -> list[int]:
        pattern = re.compile(re.escape(os.path.basename(self.path)) + r"\.journal-(\d{8})$")
        found = (pattern.match(os.path.basename(p))
                 for p in glob.glob(glob.escape(self.path) + ".journal-*"))
        return sorted(int(m.group(1)) for m in found if m)

    def _journal_path(self, n: int) -> str:
        return f"{self.path}.journal-{n:08d}"

    def _replay(self, path: str) -> int:
        """Applies an older journal's records (a torn last one dropped); returns their count."""
        journal = Journal.open(path, self.index.bits)
        journal.close()
        for record in journal.records:
            self._apply(record)
        return len(journal.records)

    def _apply(self, record: Record) -> None:
        """Applies a record idempotently: an add replaces codes its ids already have."""
        self.index.remove(record.ids)
        for i in record.ids.tolist():
            self.paths.pop(i, None)
        if record.op == ADD:
            self.index.add(record.codes, record.ids)
            for i, p in zip(record.ids.tolist(), record.paths, strict=True):
                if p:
                    self.paths[i] = p

    def image_file(self, item_id: int) -> str | None:
        """The image file of an item, from the current directory (paths are stored relative
        to the index's folder, hashsdk.index.index_file.resolve_path), or None."""
        stored = self.paths.get(item_id)
        return None if stored is None else index_file.resolve_path(self.path, stored)

    def missing_images(self) -> int:
        """How many of the items' image files do not exist (told at start: thumbnails of
        those are 404)."""
        return sum(not os.path.isfile(index_file.resolve_path(self.path, p))
                   for p in self.paths.values())

    # ---- writes ----------------------------------------------------------------------------

    def check_new(self, ids: np.ndarray) -> None:
        """Raises Conflict for ids present, HashsdkError for negative or repeated ones."""
        ids = np.asarray(ids, np.int64)
        if (ids < 0).any() or (ids > MAX_ID).any():
            raise HashsdkError(f"ids must be from 0 to {MAX_ID}")
        if len(np.unique(ids)) != len(ids):
            raise HashsdkError("ids repeat within the request")
        present = self.index.lookup(ids)[0]
        if len(present):
            raise Conflict(f"ids already in the index: {present[:10].tolist()}")

    def add(self, codes: np.ndarray, ids: np.ndarray | None = None,
            paths: list[str | None] | None = None) -> np.ndarray:
        """Adds codes (packed or unpacked) under the given ids, or under new ones (None: the
        next ids, never used before); returns the ids, int64 (n,). Durable when it returns."""
        packed = as_packed(codes, self.index.bits, "add")
        if ids is not None:
            ids = np.asarray(ids, np.int64)
            if len(ids) != len(packed):
                raise HashsdkError(f"add: {len(packed)} codes but {len(ids)} ids")
        with self._lock:
            if ids is None:
                ids = self.index.default_ids(len(packed))
            else:
                self.check_new(ids)
            record = Record(ADD, ids, packed, paths or [None] * len(ids))
            self._journal.append(record)
            self._apply(record)
        self._maybe_fold()
        return ids

    def remove(self, ids: Iterable[int]) -> list[int]:
        """Removes the ids present; returns them (durable when this returns)."""
        with self._lock:
            present = self.index.lookup(np.asarray(list(ids), np.int64))[0]
            if not len(present):
                return []
            record = Record(REMOVE, present)
            self._journal.append(record)
            self._apply(record)
        self._maybe_fold()
        return present.tolist()

    # ---- uploads ---------------------------------------------------------------------------

    def save_upload(self, data: bytes, ext: str) -> str:
        """Stores an uploaded image as ``INDEX.uploads/TOKEN.EXT`` (fsynced) and returns its
        path, which the add's journal record then names. The name holds no id (the id is
        handed out later, under the write lock); the random token keeps one upload from
        replacing another's file."""
        os.makedirs(self.uploads, exist_ok=True)
        path = os.path.join(os.path.abspath(self.uploads), f"{secrets.token_hex(8)}{ext}")
        with atomic_write(path) as f:
            f.write(data)
        return path

    def drop_upload(self, path: str | None) -> None:
        """Deletes a stored upload (never a file outside the uploads folder)."""
        if path and os.path.dirname(path) == os.path.abspath(self.uploads):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    # ---- folding ---------------------------------------------------------------------------

    def _maybe_fold(self) -> None:
        if self._journal.appended < self.fold_every or self._fold_lock.locked():
            return
        if self._folder is None or not self._folder.is_alive():
            self._folder = threading.Thread(target=self._fold_logged, name="hashsdk-fold",
                                            daemon=True)
            self._folder.start()

    def _fold_logged(self) -> None:
        try:
            self.fold()
        except Exception:  # the journals stay; the next fold tries again
            log.exception("folding the journal into %s failed", self.path)

    def fold(self) -> None:
        """Writes the index over INDEX and deletes the journals it holds (module docstring)."""
        with self._fold_lock:
            with self._lock:
                old = self._journal_numbers()
                if not self._journal.records and not self._journal.appended and len(old) <= 1:
                    return
                self._journal.close()
                self._journal = Journal.open(self._journal_path(old[-1] + 1), self.index.bits)
                codes, ids = self.index.codes.copy(), self.index.ids.copy()
                next_id = self.index.next_id
                paths = [self.paths.get(i, "") for i in ids.tolist()] \
                    if self.paths or os.path.exists(index_file.paths_path(self.path)) else None
            index_file.write(self.path, self.index.bits, codes, ids, next_id, paths)
            for n in old:
                os.unlink(self._journal_path(n))
            fsync_folder(self.path)
            log.info("folded %d journal(s) into %s (%d codes)", len(old), self.path, len(ids))

    def close(self) -> None:
        """Folds what the journal holds and closes it."""
        if self._folder is not None:
            self._folder.join()
        self.fold()
        self._journal.close()
        self._writer.release()

    @property
    def journal_records(self) -> int:
        """Records in the journal now written (replayed at open, plus appended since)."""
        return len(self._journal.records) + self._journal.appended
