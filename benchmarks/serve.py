"""``hashsdk serve`` under load, under SIGKILL and under hostile uploads (127.0.0.1 only).

    .venv/bin/python benchmarks/serve.py [--n 1000000] [--bits 64]
        [--demo-run runs/demo-fashion-mnist-32bits] [--rounds 20] [--seconds 8]
        [--screenshot docs/img/serve.png]

Parts (each a real server process, ``hashsdk.serve.process.ServerProcess``):
- load: search by code on n random codes at 1, 4 and 16 concurrent clients, with and without
  10% writes (adds) mixed in; requests a second and p50 / p99 latency. Every client loop is
  bounded in requests and in seconds. The clients are threads of this process on the same
  cores as the server, with keep-alive connections (http.client), so their cost is in the
  numbers, as it would be for clients on the same machine.
- image: search by image (one PNG a request) on the demo's index at 1, 4 and 16 clients, with
  dynamic batching (--max-batch 64) and without (1), against ``Encoder.encode``'s batch
  throughput on the same files in the same run.
- faults: ``rounds`` rounds of 4 writers adding and removing, SIGKILL at a random moment,
  restart; the acknowledged writes lost (target 0).
- hostile: bombs, junk, huge and truncated files, wrong code widths, deep JSON, path tricks;
  every answer must be 4xx, and the server must still answer afterwards.

Writes benchmarks/results/serve.json and .md.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import platform
import struct
import sys
import tempfile
import threading
import time
import urllib.parse
import zlib
from pathlib import Path

import numpy as np
from _results import write_results  # noqa: E402  (benchmarks/)

from hashsdk import Encoder, HammingIndex
from hashsdk.index import index_file
from hashsdk.serve import ServedIndex

# the tests' harness for a server in a child process (tests/serve_process.py, not in the wheel)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from serve_process import ServerProcess  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
CLIENTS = (1, 4, 16)


class Client:
    """One keep-alive HTTP connection; ``request`` returns (status, body bytes)."""

    def __init__(self, url: str):
        parsed = urllib.parse.urlparse(url)
        self.conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=60)

    def request(self, method: str, path: str, body: bytes | None = None,
                content_type: str | None = None) -> tuple[int, bytes]:
        headers = {"content-type": content_type} if content_type else {}
        try:
            self.conn.request(method, path, body, headers)
            response = self.conn.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()  # reconnects on the next request
            raise

    def json(self, method: str, path: str, value) -> tuple[int, bytes]:
        return self.request(method, path, json.dumps(value).encode(), "application/json")


def multipart(files: list[tuple[str, bytes]], fields: dict[str, str] | None = None
              ) -> tuple[bytes, str]:
    boundary = "hashsdkbenchmarkboundary"
    parts = []
    for name, value in (fields or {}).items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
                     f"{value}\r\n".encode())
    for filename, data in files:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="image"; '
                     f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'
                     .encode() + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), \
        f"multipart/form-data; boundary={boundary}"


# ---- load ---------------------------------------------------------------------------------

def server_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system, every thread) a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_clients(url: str, clients: int, make_request, requests_each: int,
                seconds: float, server_pid: int | None = None) -> dict:
    """``clients`` threads, each sending up to ``requests_each`` requests for up to
    ``seconds``; ``make_request(client, rng) -> (kind, status)``. 20 requests first warm the
    server up (the model's first runs, the event loop's first connections), not counted.
    With ``server_pid``, also the CPU milliseconds a request of the server and of the clients
    (this process): on a machine they share, what the clients take the server cannot use."""
    warm = Client(url)
    for _ in range(20):
        make_request(warm, np.random.default_rng(99))
    latencies: dict[str, list[float]] = {}
    errors = []
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def loop(seed: int) -> None:
        client, rng = Client(url), np.random.default_rng(seed)
        mine: dict[str, list[float]] = {}
        for _ in range(requests_each):
            if time.perf_counter() > deadline:
                break
            t0 = time.perf_counter()
            try:
                kind, status = make_request(client, rng)
            except (OSError, http.client.HTTPException):
                errors.append("connection")  # the server closed it, or is gone
                if len(errors) > 100:
                    break
                continue
            mine.setdefault(kind, []).append(time.perf_counter() - t0)
            if status != 200:
                errors.append(status)
        with lock:
            for kind, values in mine.items():
                latencies.setdefault(kind, []).extend(values)

    threads = [threading.Thread(target=loop, args=(s,)) for s in range(clients)]
    cpu0 = (server_cpu_seconds(server_pid), time.process_time()) if server_pid else None
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    out = {"clients": clients, "seconds": round(wall, 2), "errors": len(errors)}
    done = sum(len(v) for v in latencies.values())
    if cpu0 and done:
        out["server_cpu_ms"] = round(1e3 * (server_cpu_seconds(server_pid) - cpu0[0]) / done, 3)
        out["client_cpu_ms"] = round(1e3 * (time.process_time() - cpu0[1]) / done, 3)
    for kind, values in latencies.items():
        ms = np.asarray(values) * 1e3
        out[kind] = {"requests": len(values), "per_second": round(len(values) / wall, 1),
                     "p50_ms": round(float(np.percentile(ms, 50)), 2),
                     "p99_ms": round(float(np.percentile(ms, 99)), 2)}
    return out


def load_part(args, tmp: Path) -> dict:
    """Search by code on n random codes, with and without 10% adds."""
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 256, (args.n, args.bits // 8), dtype=np.uint8)
    index = HammingIndex(args.bits)
    index.add(codes)
    index.save(tmp / "load.hidx")
    queries = [c.tobytes().hex() for c in codes[rng.choice(args.n, 1000, replace=False)]]

    def request(client: Client, r: np.random.Generator, writes: float) -> tuple[str, int]:
        if r.random() < writes:
            code = r.integers(0, 256, args.bits // 8, dtype=np.uint8).tobytes().hex()
            return "add", client.json("POST", "/items", {"codes": [code]})[0]
        q = queries[int(r.integers(len(queries)))]
        return "search", client.json("POST", "/search", {"codes": [q], "k": 10})[0]

    rows = []
    with ServerProcess(tmp / "load.hidx", log=tmp / "load.log") as server:
        for writes in (0.0, 0.1):
            for clients in CLIENTS:
                row = run_clients(server.url, clients,
                                  lambda c, r, w=writes: request(c, r, w),
                                  args.requests, args.seconds)
                row["writes"] = writes
                rows.append(row)
                print(f"[load] writes {writes:.0%} clients {clients}: {row}", flush=True)
    return {"n": args.n, "bits": args.bits, "rows": rows}


# ---- search by image ----------------------------------------------------------------------

def image_part(args, tmp: Path) -> list[dict]:
    """``image_run`` for the demo's index and each of ``--image-runs``."""
    out = []
    for run in [Path(args.demo_run), *map(Path, args.image_runs)]:
        if not (run / "db.hidx").exists() or not (run / "model.onnx").exists():
            print(f"[image] skipped {run}: no db.hidx and model.onnx there", flush=True)
            continue
        out.append(image_run(args, run, tmp))
    return out


def image_run(args, run: Path, tmp: Path) -> dict:
    """Search by image through one run's model and index, batched and not, beside
    ``Encoder.encode`` on the same files."""
    db = HammingIndex.load(run / "db.hidx", mmap=True)
    paths = index_file.read_paths(run / "db.hidx", db.ntotal)
    files = [Path(index_file.resolve_path(run / "db.hidx", p)).read_bytes()
             for p in paths[:2000]]
    encoder = Encoder(run / "model.onnx")
    encoder.encode(files[:256])  # warm up
    t0, cpu0 = time.perf_counter(), time.process_time()
    encoder.encode(files, batch_size=64)
    encode_rate = len(files) / (time.perf_counter() - t0)
    encode_cpu_ms = 1e3 * (time.process_time() - cpu0) / len(files)
    print(f"[image] Encoder.encode, batch 64: {encode_rate:.0f} images/s", flush=True)

    def multipart_request(client: Client, r: np.random.Generator) -> tuple[str, int]:
        body, kind = multipart([("q.png", files[int(r.integers(len(files)))])], {"k": "10"})
        return "search", client.request("POST", "/search", body, kind)[0]

    def raw_request(client: Client, r: np.random.Generator) -> tuple[str, int]:
        # the image as the body (Content-Type: image/*), k in the query string
        data = files[int(r.integers(len(files)))]
        return "search", client.request("POST", "/search?k=10", data, "image/" + (
            "jpeg" if data[:3] == b"\xff\xd8\xff" else "png"))[0]

    rows = []
    for max_batch, upload, request in ((64, "multipart", multipart_request),
                                       (64, "raw", raw_request),
                                       (1, "multipart", multipart_request)):
        served = tmp / f"image-{run.name}-{max_batch}-{upload}.hidx"  # a fresh copy
        for suffix in ("", index_file.PATHS_SUFFIX):
            source = run / ("db.hidx" + suffix)
            if source.exists():
                served.with_name(served.name + suffix).write_bytes(source.read_bytes())
        with ServerProcess(served, "--model", str(run / "model.onnx"), "--max-batch",
                           str(max_batch), log=tmp / "image.log") as server:
            for clients in CLIENTS:
                row = run_clients(server.url, clients, request, args.requests, args.seconds,
                                  server.proc.pid)
                row["max_batch"], row["upload"] = max_batch, upload
                row["of_encode"] = round(row["search"]["per_second"] / encode_rate, 3)
                rows.append(row)
                print(f"[image] max_batch {max_batch} {upload} clients {clients}: {row}",
                      flush=True)
            stats = json.loads(Client(server.url).request("GET", "/stats")[1])
            rows[-1]["mean_batch"] = stats["batching"]["mean_batch"]
    return {"index": str(run / "db.hidx"), "size": db.ntotal, "bits": db.bits,
            "model": describe_model(encoder), "encode_images_per_second": round(encode_rate, 1),
            "encode_cpu_ms": round(encode_cpu_ms, 3),
            "rows": rows}


def describe_model(encoder: Encoder) -> str:
    meta = encoder.metadata
    return f"{meta.backbone} at {meta.input_size} px, {meta.bits} bits, {meta.precision}"


# ---- faults -------------------------------------------------------------------------------

def fault_part(args, tmp: Path) -> dict:
    """SIGKILL during writes, ``rounds`` times; the acknowledged writes lost."""
    path = tmp / "faults.hidx"
    acked: dict[int, str] = {}
    removed: set[int] = set()
    in_flight: set[int] = set()
    rng = np.random.default_rng(1)
    restarts = []
    for round_ in range(args.rounds):
        t0 = time.perf_counter()
        server = ServerProcess(path, "--bits", str(args.bits), "--fold-every", "500",
                               log=tmp / "faults.log").start()
        restarts.append(time.perf_counter() - t0)
        writers = [threading.Thread(target=_writer, args=(server.url, args.bits,
                                                          1_000_000 * round_ + 10_000 * w,
                                                          acked, removed, in_flight))
                   for w in range(4)]
        for t in writers:
            t.start()
        time.sleep(float(rng.uniform(0.2, 1.5)))
        server.kill()
        for t in writers:
            t.join()
    served = ServedIndex(str(path))
    got = {int(i): bytes(c).hex() for i, c in zip(served.index.ids, served.index.codes,
                                                    strict=True)}
    want = {i: c for i, c in acked.items() if i not in removed}
    lost = [i for i, c in want.items() if i not in in_flight and got.get(i) != c]
    resurrected = [i for i in removed if i not in in_flight and i in got]
    print(f"[faults] {args.rounds} rounds, {len(acked)} adds and {len(removed)} removes "
          f"acknowledged, {len(lost)} lost, {len(resurrected)} removed ones back", flush=True)
    return {"rounds": args.rounds, "acknowledged_adds": len(acked),
            "acknowledged_removes": len(removed), "lost": len(lost),
            "removed_but_present": len(resurrected), "in_flight_at_kill": len(in_flight),
            "final_size": served.index.ntotal,
            "restart_seconds_median": round(float(np.median(restarts)), 2)}


def _writer(url: str, bits: int, first_id: int, acked: dict, removed: set,
            in_flight: set) -> None:
    """Adds codes under its own ids (every 5th removed again) until the server dies."""
    client, rng = Client(url), np.random.default_rng(first_id)
    for i in range(first_id, first_id + 10_000):
        code = rng.integers(0, 256, bits // 8, dtype=np.uint8).tobytes().hex()
        in_flight.add(i)
        try:
            if client.json("POST", "/items", {"codes": [code], "ids": [i]})[0] != 200:
                return
            acked[i] = code
            if i % 5 == 0 and client.request("DELETE", f"/items/{i}")[0] == 200:
                removed.add(i)
        except (OSError, http.client.HTTPException):
            return  # killed: the write in flight was never acknowledged
        in_flight.discard(i)


# ---- hostile input ------------------------------------------------------------------------

def hostile_part(args, tmp: Path) -> dict | None:
    from PIL import Image

    run = Path(args.demo_run)
    if not (run / "model.onnx").exists():
        print("[hostile] skipped: no demo model (run make demo)", flush=True)
        return None
    meta = Encoder(run / "model.onnx").metadata
    good = io.BytesIO()
    Image.new("RGB", (meta.input_size,) * 2, (120, 30, 200)).save(good, "JPEG")
    cases = hostile_cases(good.getvalue(), meta.bits, 8 << 20)
    answers = {}
    with ServerProcess(tmp / "hostile.hidx", "--model", str(run / "model.onnx"), "--create",
                       "--max-upload-mb", "8", log=tmp / "hostile.log") as server:
        client = Client(server.url)
        for name, (method, path, body, kind) in cases.items():
            try:
                status, text = client.request(method, path, body, kind)
            except (OSError, http.client.HTTPException) as exc:  # the server cut it off
                status, text = 0, str(exc).encode()
            answers[name] = {"status": status, "detail": text[:160].decode(errors="replace")}
        edges = edge_checks(server, meta.bits, good.getvalue(), tmp)
        alive = Client(server.url).request("GET", "/healthz")[0] == 200
        still_searches = Client(server.url).request(
            "POST", "/search", *multipart([("ok.jpg", good.getvalue())]))[0] == 200
    bad = {n: a for n, a in answers.items() if not 400 <= a["status"] < 500}
    print(f"[hostile] {len(cases)} requests, {len(bad)} not 4xx: {bad}; alive {alive}; "
          f"edges {edges}", flush=True)
    return {"requests": len(cases), "not_4xx": len(bad), "server_5xx": sum(
        a["status"] >= 500 for a in answers.values()), "alive_after": alive and still_searches,
        "answers": answers, "edges": edges}


def edge_checks(server, bits: int, good_jpeg: bytes, tmp: Path) -> dict:
    """The probe's findings, each measured: the HTTP layer's edges (raw sockets), a client that
    vanishes mid-body, ids at the limit, the size of the largest answer, a second server."""
    import subprocess

    out = {"protocol": protocol_cases(server.url, 8 << 20)}

    def statuses() -> dict[str, int]:
        routes = json.loads(Client(server.url).request("GET", "/stats")[1])["routes"]
        return routes.get("POST /search", {}).get("by_status", {})

    before = statuses()
    vanishing_client(server.url)
    time.sleep(0.3)
    out["vanished_client_counted_as"] = sorted(
        k for k, n in statuses().items() if n != before.get(k, 0))
    client, zero = Client(server.url), "00" * ((bits + 7) // 8)
    for _ in range(12):  # 12,000 codes at distance 0 from the zero code: a wide answer
        client.json("POST", "/items", {"codes": [zero] * 1000})
    top = 2**63 - 2
    out["ids"] = {"add id 2**63 - 2": client.json("POST", "/items", {"codes": [zero],
                                                                      "ids": [top]})[0],
                  "then an add without ids": client.json("POST", "/items",
                                                         {"codes": [zero]})[0]}
    client.request("DELETE", f"/items/{top}")
    out["ids"]["and after deleting it"] = client.json("POST", "/items", {"codes": [zero]})[0]
    status, body = client.json("POST", "/search", {"codes": [zero] * 64, "radius": bits})
    out["largest_answer"] = {"64 codes at radius = bits": status, "bytes": len(body)}
    second = subprocess.run([sys.executable, "-m", "hashsdk.cli", "serve",
                             str(tmp / "hostile.hidx"), "--port", "0"], capture_output=True,
                            text=True, timeout=120)
    out["second_server"] = {"exit": second.returncode,
                            "message": second.stderr.strip().splitlines()[-1][:160]}
    return out


def raw_exchange(url: str, head: bytes, body_parts: tuple[bytes, ...] = (),
                 pause: float = 0.0, wait: float = 3.0) -> tuple[int, str, float]:
    """Sends ``head`` and then ``body_parts`` on a raw socket, pauses (sending nothing more),
    then reads the answer for up to ``wait`` seconds: (its status, or 0 where none came; its
    first line; seconds from the last byte sent to the answer)."""
    import socket

    parsed = urllib.parse.urlparse(url)
    with socket.create_connection((parsed.hostname, parsed.port), timeout=wait) as sock:
        try:
            sock.sendall(head)
            for part in body_parts:
                sock.sendall(part)
        except OSError:
            pass  # the server answered and closed while we sent: read what it said
        sent = time.perf_counter()
        time.sleep(pause)
        try:
            data = sock.recv(4096)
        except OSError:
            return 0, "", time.perf_counter() - sent
    first = data.split(b"\r\n", 1)[0].decode(errors="replace")
    status = int(first.split()[1]) if first.startswith("HTTP/") else 0
    return status, first, time.perf_counter() - sent


def protocol_cases(url: str, max_upload: int) -> dict[str, dict]:
    """What the HTTP layer must do at its edges, each probed on a raw socket: name -> the
    status it got, the one it should get, and the seconds it took to answer."""
    post = b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    cases = {
        # the body is declared over the limit: 413 at once, nothing read
        "declared 1 GB, body never sent": (413, post + b"Content-Length: 1000000000\r\n\r\n",
                                           ()),
        "Expect: 100-continue with 1 GB": (413, post + b"Content-Length: 1000000000\r\n"
                                                 b"Expect: 100-continue\r\n\r\n", ()),
        # chunked past the limit, then a pause: answered at the limit, not after more
        "chunked past the limit, then a pause": (
            413, post + b"Transfer-Encoding: chunked\r\n\r\n",
            tuple(b"%x\r\n" % (1 << 16) + b"a" * (1 << 16) + b"\r\n"
                  for _ in range(max_upload // (1 << 16) + 2))),
        "one header of 4 MB": (431, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " +
                               b"a" * (4 << 20) + b"\r\n\r\n", ()),
        "10,000 headers": (431, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" +
                           b"".join(b"X-%d: 1\r\n" % i for i in range(10_000)) + b"\r\n", ()),
    }
    out = {}
    for name, (want, head, parts) in cases.items():
        status, first, seconds = raw_exchange(url, head, parts, pause=0.0, wait=5.0)
        out[name] = {"status": status, "expected": want, "first_line": first,
                     "seconds": round(seconds, 3)}
    return out


def vanishing_client(url: str) -> None:
    """A client that declares a body, sends a little of it and goes away."""
    import socket

    parsed = urllib.parse.urlparse(url)
    with socket.create_connection((parsed.hostname, parsed.port), timeout=5) as sock:
        sock.sendall(b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n" + b'{"codes": [')
    time.sleep(0.3)


def bomb_png(side: int) -> bytes:
    """A valid PNG header claiming side x side pixels, with almost no data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + \
            struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + \
        chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def hostile_cases(good_jpeg: bytes, bits: int, max_upload: int) -> dict[str, tuple]:
    """name -> (method, path, body, content type): each must be answered 4xx."""
    width = (bits + 7) // 8

    def upload(*files: tuple[str, bytes], **fields: str) -> tuple:
        return ("POST", "/search", *multipart(list(files), fields))

    def codes(path: str, value) -> tuple:
        return ("POST", path, json.dumps(value).encode(), "application/json")

    return {
        "bomb png 30000 x 30000": upload(("bomb.png", bomb_png(30_000))),
        "bomb png 200000 x 200000": upload(("bomb.png", bomb_png(200_000))),
        "junk bytes named .jpg": upload(("x.jpg", os.urandom(4096))),
        "truncated jpeg": upload(("t.jpg", good_jpeg[:len(good_jpeg) // 2])),
        "empty file": upload(("e.png", b"")),
        "html named .png": upload(("x.png", b"<html><body>hi</body></html>")),
        "svg": upload(("x.svg", b'<svg xmlns="http://www.w3.org/2000/svg"/>')),
        "path in the file name": upload(("../../../../etc/passwd", b"root:x:0:0")),
        "upload over the limit": upload(("big.jpg", good_jpeg + os.urandom(max_upload))),
        "100 files": upload(*[("a.jpg", good_jpeg)] * 100),
        "add: 100 files": ("POST", "/items", *multipart([("a.jpg", good_jpeg)] * 100)),
        "code too short": codes("/search", {"codes": ["ab" * (width - 1)]}),
        "code too long": codes("/search", {"codes": ["ab" * (width + 1)]}),
        "code not hex": codes("/search", {"codes": ["zz" * width]}),
        "code bad base64": codes("/search", {"codes": ["@@@@"], "code_encoding": "base64"}),
        "add: code wrong width": codes("/items", {"codes": ["ab"]}),
        "add: negative id": codes("/items", {"codes": ["00" * width], "ids": [-5]}),
        "add: id 2**64": codes("/items", {"codes": ["00" * width], "ids": [2**64]}),
        "k 10**12": codes("/search", {"codes": ["00" * width], "k": 10**12}),
        "k -1": codes("/search", {"codes": ["00" * width], "k": -1}),
        "k as text": upload(("a.jpg", good_jpeg), k="all"),
        "radius 10**6": codes("/search", {"codes": ["00" * width], "radius": 10**6}),
        "JSON nested 100,000 deep": ("POST", "/search", b"[" * 100_000, "application/json"),
        "JSON not an object": codes("/search", [1, 2, 3]),
        "JSON over the limit": ("POST", "/search", b'"' + b"a" * max_upload + b'"',
                                "application/json"),
        "multipart without boundary": ("POST", "/search", b"--x\r\n", "multipart/form-data"),
        "multipart garbage": ("POST", "/search", os.urandom(2048),
                              "multipart/form-data; boundary=zzz"),
        "no content type": ("POST", "/search", b"hello", None),
        "thumbnail ../../etc/passwd": ("GET", "/items/..%2F..%2Fetc%2Fpasswd/thumbnail",
                                       None, None),
        "thumbnail %2e%2e": ("GET", "/items/%2e%2e/thumbnail", None, None),
        "thumbnail id 10**20": ("GET", "/items/100000000000000000000/thumbnail", None, None),
        "thumbnail of no item": ("GET", "/items/123456/thumbnail", None, None),
        "delete a word": ("DELETE", "/items/everything", None, None),
        "delete a missing id": ("DELETE", "/items/987654", None, None),
        "strip png 250,000 x 1": upload(("strip.png", strip_png(250_000))),
        "strip png 40,000,000 x 1": upload(("strip.png", strip_png(40_000_000))),
        "add: id 2**63 - 1": codes("/items", {"codes": ["00" * width], "ids": [2**63 - 1]}),
        "k of 100,000 digits": ("POST", "/search", b'{"codes": ["' + b"00" * width +
                                b'"], "k": "' + b"9" * 100_000 + b'"}', "application/json"),
        "64 codes, k 1000": codes("/search", {"codes": ["00" * width] * 64, "k": 1000}),
    }


def strip_png(width: int) -> bytes:
    """A real PNG of width x 1 pixels (a few hundred bytes: its rows compress to nothing)."""
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (width, 1)).save(out, "PNG")
    return out.getvalue()


# ---- the page ----------------------------------------------------------------------------

def screenshot(args, tmp: Path) -> None:
    """The page of the demo's index after an image search, in headless Chromium."""
    import shutil

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    run = Path(args.screenshot_run or args.demo_run)
    paths = index_file.read_paths(run / "db.hidx", HammingIndex.load(run / "db.hidx",
                                                                      mmap=True).ntotal)
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--window-size=900,900",
                 "--force-device-scale-factor=1"):
        options.add_argument(flag)
    with ServerProcess(run / "db.hidx", "--model", str(run / "model.onnx"),
                       log=tmp / "page.log") as server:
        driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")),
                                  options=options)
        try:
            driver.get(server.url + "/")
            wait = WebDriverWait(driver, 30)
            wait.until(lambda d: "items" in d.find_element(By.ID, "info").text)
            driver.find_element(By.ID, "file").send_keys(
                os.path.abspath(paths[args.screenshot_query]))
            wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".hit")) == 12)
            wait.until(lambda d: all(i.get_property("naturalWidth") > 0
                                     for i in d.find_elements(By.CSS_SELECTOR, ".hit img")))
            driver.save_screenshot(args.screenshot)
        finally:
            driver.quit()
    print(f"[page] wrote {args.screenshot}", flush=True)


# ---- report -------------------------------------------------------------------------------

def render(result: dict) -> str:
    lines = [f"{result['cores']} cores ({result['cpu']}), one run; the clients are threads on "
             "the same cores as the server.", ""]
    if result.get("load"):
        load = result["load"]
        lines += [f"## Search by code: {load['n']:,} codes of {load['bits']} bits", "",
                  "| writes | clients | searches/s | p50 ms | p99 ms | adds/s | add p99 ms "
                  "| errors |", "|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in load["rows"]:
            add, search = r.get("add", {}), r.get("search")
            if search is None:  # every client lost its connection: the server died
                lines.append(f"| {r['writes']:.0%} | {r['clients']} | the server process "
                             f"died | | | | | |")
                continue
            lines.append(f"| {r['writes']:.0%} | {r['clients']} | {search['per_second']} "
                         f"| {search['p50_ms']} | {search['p99_ms']} | "
                         f"{add.get('per_second', '')} | {add.get('p99_ms', '')} | "
                         f"{r['errors']} |")
        lines.append("")
    for image in result.get("image") or []:
        lines += [f"## Search by image: {image['index']} ({image['size']:,} codes; "
                  f"{image['model']})", "",
                  f"Encoder.encode on the same files, batch 64: "
                  f"{image['encode_images_per_second']} images/s"
                  + (f", {image['encode_cpu_ms']} CPU ms an image" if "encode_cpu_ms" in image
                     else "") + ". CPU ms a request: the server's (every thread) and the "
                  "clients' (on the same cores).", "",
                  "| max batch | upload | clients | images/s | of Encoder.encode | p50 ms | "
                  "p99 ms | server CPU ms | clients' CPU ms | errors |",
                  "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in image["rows"]:
            lines.append(f"| {r['max_batch']} | {r.get('upload', 'multipart')} | "
                         f"{r['clients']} | {r['search']['per_second']} "
                         f"| {r['of_encode']:.0%} | {r['search']['p50_ms']} | "
                         f"{r['search']['p99_ms']} | {r.get('server_cpu_ms', '')} | "
                         f"{r.get('client_cpu_ms', '')} | {r['errors']} |")
        lines.append("")
    if result.get("faults"):
        f = result["faults"]
        lines += ["## SIGKILL during writes", "",
                  f"{f['rounds']} rounds of 4 writers, killed at a random moment: "
                  f"{f['acknowledged_adds']:,} adds and {f['acknowledged_removes']:,} removes "
                  f"acknowledged, **{f['lost']} lost**, {f['removed_but_present']} removed ones "
                  f"back; {f['in_flight_at_kill']} writes in flight at the kills (either "
                  f"outcome is right); restart {f['restart_seconds_median']} s (median).", ""]
    if result.get("hostile"):
        h = result["hostile"]
        lines += ["## Hostile requests", "",
                  f"{h['requests']} requests, {h['not_4xx']} not answered 4xx, "
                  f"{h['server_5xx']} answered 5xx; the server answered afterwards: "
                  f"{h['alive_after']}.", "", "| request | status | detail |", "|---|---:|---|"]
        for name, a in h["answers"].items():
            detail = a["detail"].replace("|", "\\|").replace("\n", " ")
            lines.append(f"| {name} | {a['status']} | {detail} |")
        lines.append("")
        if h.get("edges"):
            lines += edges_markdown(h["edges"])
    return "\n".join(lines)


def edges_markdown(e: dict) -> list[str]:
    lines = ["### The HTTP layer's edges", "", "| probe (raw socket) | status | expected | "
             "answered after |", "|---|---:|---:|---:|"]
    lines += [f"| {name} | {p['status']} | {p['expected']} | {p['seconds']} s |"
              for name, p in e["protocol"].items()]
    ids = "; ".join(f"{k}: {v}" for k, v in e["ids"].items())
    largest = e["largest_answer"]
    lines += ["", f"- A client that vanishes mid-body is counted as: "
                  f"{', '.join(e['vanished_client_counted_as'])} (in POST /search's statuses).",
              f"- Ids at the limit: {ids}.",
              f"- The largest answer: 64 codes at radius = bits over 12,000 codes at distance 0, "
              f"status {largest['64 codes at radius = bits']}, {largest['bytes']:,} bytes "
              "(at most 10,000 results in all).",
              f"- A second server on the same index: exit {e['second_server']['exit']}, "
              f"\"{e['second_server']['message']}\".", ""]
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--bits", type=int, default=64)
    p.add_argument("--demo-run", default="runs/demo-fashion-mnist-32bits")
    p.add_argument("--image-runs", nargs="*", default=[],
                   help="more folders with db.hidx (with paths) and model.onnx for the image "
                        "part")
    p.add_argument("--screenshot-run", default=None,
                   help="the folder whose index the picture shows (default: --demo-run)")
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--seconds", type=float, default=8.0, help="most seconds a load step runs")
    p.add_argument("--requests", type=int, default=2000, help="most requests a client sends")
    p.add_argument("--parts", nargs="*", default=["load", "image", "faults", "hostile"])
    p.add_argument("--screenshot", default=None, help="also save the page's picture here")
    p.add_argument("--screenshot-query", type=int, default=7,
                   help="the indexed image (position in id order) the picture searches by")
    p.add_argument("--out", type=Path, default=RESULTS / "serve.json")
    p.add_argument("--keep", type=Path, default=None,
                   help="a folder for the servers' files and logs, kept (default: a temporary one)")
    args = p.parse_args()
    parts = {"load": load_part, "image": image_part, "faults": fault_part,
             "hostile": hostile_part}
    result = {"command": "python benchmarks/serve.py " + " ".join(sys.argv[1:]),
              "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        if args.keep:  # the servers' indexes and logs, kept for a look afterwards
            args.keep.mkdir(parents=True, exist_ok=True)
            tmp = str(args.keep)
        for name in args.parts:
            result[name] = parts[name](args, Path(tmp))
        if args.screenshot:
            screenshot(args, Path(tmp))
    write_results(args.out, result, render(result))
    print(f"wrote {args.out}", flush=True)


if __name__ == "__main__":
    main()
