"""``hashsdk serve`` in a child process: started on a free port, waited for, stopped or killed.
The tests and ``benchmarks/serve.py`` use it to test the server as users run it; a test
harness, so it lives here and not in the wheel."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

from hashsdk.errors import HashsdkError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """``python -m hashsdk.cli serve INDEX ARGS... --port PORT`` on 127.0.0.1 (``python``: this
    interpreter unless given).

    ``start()`` returns once /healthz answers (or raises with the server's output).
    """

    def __init__(self, index: str | os.PathLike, *args: str, port: int | None = None,
                 log: str | os.PathLike | None = None, cwd: str | os.PathLike | None = None,
                 python: str | os.PathLike = sys.executable):
        self.index, self.args, self.cwd, self.python = os.fspath(index), list(args), cwd, python
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = os.fspath(log) if log else os.devnull
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> ServerProcess:
        cmd = [os.fspath(self.python), "-m", "hashsdk.cli", "serve", self.index, *self.args,
               "--port", str(self.port), "--log-level", "warning"]
        out = open(self.log, "ab")  # the child keeps its own handle; ours closes below
        self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=self.cwd)
        out.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise HashsdkError(f"hashsdk serve exited with {self.proc.returncode}: "
                                   f"{self._tail()}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1) as r:
                    if json.load(r)["status"] == "ok":
                        return self
            except OSError:
                time.sleep(0.1)
        self.kill()
        raise HashsdkError(f"hashsdk serve did not answer in {timeout:g} s: {self._tail()}")

    def _tail(self) -> str:
        if self.log == os.devnull:
            return "(no log)"
        with open(self.log, errors="replace") as f:
            return f.read()[-2000:]

    def kill(self) -> None:
        """SIGKILL: no shutdown, no fold; what survives is what was fsynced."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, the clean stop (the journal is folded); returns the exit status."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
