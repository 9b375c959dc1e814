"""One writer per index: ``INDEX.lock``, held with ``flock`` by whoever writes the index.

``hashsdk serve`` holds it while it serves (its journal and folds write the index), and
``hashsdk index build`` while it writes; a second writer meets a clear error naming the process
that holds it, instead of two journals overwriting each other's records. The lock is the
kernel's (``fcntl.flock`` on an open file), not the file's existence: a writer that crashes or
is killed releases it with its process, so nothing is left stuck. The file itself stays, with
the last holder's process id in it, for the error message. Readers (``hashsdk search``,
``HammingIndex.load``) take no lock: the index file is replaced atomically.

On a platform without ``fcntl`` (not Linux or macOS) there is no lock, and the rule is the
user's to keep.
"""

from __future__ import annotations

import os

from hashsdk.errors import HashsdkError

try:
    import fcntl
except ImportError:  # pragma: no cover  (Windows)
    fcntl = None

LOCK_SUFFIX = ".lock"


class WriterLock:
    """The writer's lock of the index at ``path``; taken when made, released by ``release``
    (or the process's end). ``what``: who takes it, for the other side's error message."""

    def __init__(self, path: str | os.PathLike, what: str = "a writer"):
        self.path = os.fspath(path) + LOCK_SUFFIX
        self._fd: int | None = None
        if fcntl is None:
            return
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:
            raise HashsdkError(f"{os.fspath(path)}: its folder does not exist") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "unknown"
            os.close(fd)
            raise HashsdkError(
                f"{os.fspath(path)} is being written by another process ({holder}); an index "
                "has one writer at a time: stop it first, or serve a copy") from None
        except OSError:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}, {what}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None

    def __enter__(self) -> WriterLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()
