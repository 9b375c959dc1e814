"""hashsdk serve's HTTP API through an HTTP client: results against the Encoder and
HammingIndex they wrap, writes, limits, hostile input (never a 5xx), the API key, batching."""

import asyncio
import base64
import io

import numpy as np
import pytest
from conftest import load_benchmark, structured_images

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402
from PIL import Image  # noqa: E402

from hashsdk import Encoder, HammingIndex  # noqa: E402
from hashsdk.serve import ServedIndex, create_app  # noqa: E402
from hashsdk.serve.app import ServeConfig  # noqa: E402
from hashsdk.serve.batching import Batcher  # noqa: E402
from hashsdk.serve.inputs import Limits  # noqa: E402

N = 40


def png(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, "PNG")
    return out.getvalue()


BENCH = load_benchmark("serve")
bomb_png = BENCH.bomb_png


@pytest.fixture(scope="module")
def setup(exported, tmp_path_factory):
    """An index of N images (indexed from files, so it has paths) served with its model."""
    folder, _, _ = exported
    root = tmp_path_factory.mktemp("serve")
    images, _ = structured_images(N, seed=3)
    paths = []
    for i, image in enumerate(images):
        paths.append(str(root / f"img{i:02d}.png"))
        Image.fromarray(image).save(paths[-1])
    encoder = Encoder(folder / "model.onnx", threads=1)
    codes = encoder.encode(paths)
    index = HammingIndex(encoder.bits)
    index.add(codes)
    index.save(root / "db.hidx", paths=paths)
    return root, encoder, images, codes, paths


@pytest.fixture
def client(setup, tmp_path):
    root, encoder, *_ = setup
    for name in ("db.hidx", "db.hidx.paths.txt"):
        (tmp_path / name).write_bytes((root / name).read_bytes())
    served = ServedIndex(str(tmp_path / "db.hidx"))
    config = ServeConfig(limits=Limits(max_upload_bytes=1 << 20, max_images=8, max_k=50))
    with TestClient(create_app(served, encoder, config)) as c:
        yield c


def files(*items):
    return [("image", (name, data, "application/octet-stream")) for name, data in items]


def test_search_by_image_code_and_id_match_the_index(client, setup):
    _, encoder, images, codes, paths = setup
    oracle = HammingIndex(encoder.bits)
    oracle.add(codes)
    want_d, want_i = oracle.search(codes[[3, 7]], 6)
    r = client.post("/search", files=files(("a.png", png(images[3])), ("b.png", png(images[7]))),
                    data={"k": "6"})
    assert r.status_code == 200
    for record, d_row, i_row, name in zip(r.json()["results"], want_d, want_i, ["a.png", "b.png"],
                                          strict=True):
        assert record["query"] == name
        assert [h["id"] for h in record["results"]] == i_row.tolist()
        assert [h["distance"] for h in record["results"]] == d_row.tolist()
        assert [h["path"] for h in record["results"]] == [paths[i] for i in i_row]
    hexed = client.post("/search", json={"codes": [codes[3].tobytes().hex()], "k": 6}).json()
    b64 = client.post("/search", json={"codes": [base64.b64encode(codes[3]).decode()], "k": 6,
                                       "code_encoding": "base64"}).json()
    by_id = client.post("/search", json={"ids": [3], "k": 6}).json()
    for body in (hexed, b64, by_id):
        assert [h["id"] for h in body["results"][0]["results"]] == want_i[0].tolist()
    assert by_id["results"][0]["query"] == {"id": 3}
    lims, dist, ids = oracle.range_search(codes[[5]], 4)
    ranged = client.post("/search", json={"ids": [5], "radius": 4}).json()["results"][0]
    assert [h["id"] for h in ranged["results"]] == ids.tolist()
    assert ranged["truncated"] is False


def test_add_remove_and_thumbnails(client, setup, tmp_path):
    _, encoder, images, codes, paths = setup
    new = np.full((32, 32, 3), 200, np.uint8)
    new[4:20, 4:20] = 10
    r = client.post("/items", files=files(("new.png", png(new))))
    assert r.status_code == 200
    (new_id,) = r.json()["ids"]
    assert new_id == N
    hits = client.post("/search", files=files(("q.png", png(new))), data={"k": "1"}).json()
    assert hits["results"][0]["results"][0]["distance"] == 0  # its own code (ties: smaller id)
    item = client.get(f"/items/{new_id}").json()
    assert item["code"] == encoder.encode(new).tobytes().hex()
    assert item["path"].startswith(str(tmp_path / "db.hidx.uploads"))
    thumb = client.get(f"/items/{new_id}/thumbnail")
    assert thumb.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(thumb.content)).size == (32, 32)
    assert client.get("/items/3/thumbnail").status_code == 200  # an indexed file
    r = client.post("/items", json={"codes": [codes[0].tobytes().hex()], "ids": [500]})
    assert r.json() == {"ids": [500]}
    assert client.post("/items", json={"codes": [codes[0].tobytes().hex()],
                                       "ids": [500]}).status_code == 409
    assert client.get("/items/500/thumbnail").status_code == 404  # a code has no image
    assert client.delete(f"/items/{new_id}").json() == {"removed": new_id}
    assert client.delete(f"/items/{new_id}").status_code == 404
    assert client.get(f"/items/{new_id}").status_code == 404
    assert not list((tmp_path / "db.hidx.uploads").glob(f"{new_id}-*.png"))
    stats = client.get("/stats").json()
    assert stats["size"] == N + 1 and stats["bits"] == encoder.bits
    assert stats["routes"]["POST /items"]["by_status"] == {"200": 2, "409": 1}
    assert "p99" in stats["routes"]["POST /search"]["latency_ms"]
    metrics = client.get("/metrics").text
    assert f"hashsdk_index_size {N + 1}" in metrics
    assert 'hashsdk_requests_total{route="POST /items",status="409"} 1' in metrics


HOSTILE = [
    ("junk bytes", lambda im: {"files": files(("x.png", b"\x00junk" * 50))}, 400, "not an image"),
    ("truncated png", lambda im: {"files": files(("t.png", png(im)[:60]))}, 400, "unreadable"),
    ("decompression bomb", lambda im: {"files": files(("b.png", bomb_png(30_000)))}, 400,
     "pixels"),
    ("html as image", lambda im: {"files": files(("../../etc/passwd", b"<html>"))}, 400,
     "passwd: not an image"),
    ("short hex code", lambda im: {"json": {"codes": ["abcd"]}}, 400, "hex digits"),
    ("odd hex", lambda im: {"json": {"codes": ["zz" * 3]}}, 400, "not hex"),
    ("bad base64", lambda im: {"json": {"codes": ["!!!!"], "code_encoding": "base64"}}, 400,
     "not base64"),
    ("k zero", lambda im: {"json": {"ids": [1], "k": 0}}, 400, "k: expected 1 to 50"),
    ("k huge", lambda im: {"json": {"ids": [1], "k": 10**9}}, 400, "k: expected 1 to 50"),
    ("k text", lambda im: {"files": files(("a.png", png(im))), "data": {"k": "ten"}}, 400,
     "k: expected an integer"),
    ("radius past bits", lambda im: {"json": {"ids": [1], "radius": 999}}, 400, "radius"),
    ("unknown id", lambda im: {"json": {"ids": [10**6]}}, 404, "not in the index"),
    ("unknown field", lambda im: {"json": {"codez": []}}, 400, "unknown fields"),
    ("not an object", lambda im: {"json": [1, 2]}, 400, "JSON object"),
    ("bad json", lambda im: {"content": b"{", "headers": {"content-type": "application/json"}},
     400, "not valid JSON"),
    ("nested too deep", lambda im: {"content": b"[" * 100_000,
                                    "headers": {"content-type": "application/json"}}, 400,
     "not valid JSON"),
    ("text body", lambda im: {"content": b"hi", "headers": {"content-type": "text/plain"}},
     415, "multipart/form-data (images)"),
    ("too many images", lambda im: {"files": files(*[("a.png", png(im))] * 9)}, 400, "is 8"),
    ("too large", lambda im: {"content": b"0" * (2 << 20),
                              "headers": {"content-type": "application/json"}}, 413, "limit"),
    ("nothing", lambda im: {"json": {}}, 400, "nothing to search"),
]


@pytest.mark.parametrize("case", HOSTILE, ids=[c[0] for c in HOSTILE])
def test_hostile_search_requests_answered_4xx_with_the_reason(client, setup, case):
    _, _, images, _, _ = setup
    name, request, status, reason = case
    r = client.post("/search", **request(images[0]))
    assert r.status_code == status, r.text
    assert reason in r.json()["detail"]
    assert client.get("/healthz").json()["status"] == "ok"


def test_the_benchmarks_hostile_requests_all_answered_4xx(client, setup):
    _, encoder, images, _, _ = setup
    cases = BENCH.hostile_cases(png(images[0]), encoder.bits, 1 << 20)
    for name, (method, path, body, kind) in cases.items():
        headers = {"content-type": kind} if kind else {}
        r = client.request(method, path, content=body, headers=headers)
        assert 400 <= r.status_code < 500, (name, r.status_code, r.text)
    assert client.post("/search", files=files(("a.png", png(images[0])))).status_code == 200


def test_chunked_upload_over_the_limit_stopped_without_content_length(client):
    def body():
        for _ in range(64):
            yield b"0" * 65536  # 4 MiB in all, the limit is 1 MiB
    r = client.post("/search", content=body(), headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_path_tricks_never_open_files(client):
    for path in ["/items/..%2F..%2Fetc%2Fpasswd/thumbnail", "/items/-1/thumbnail",
                 "/items/99999999999999999999999/thumbnail", "/items/%2Fetc%2Fpasswd"]:
        assert client.get(path).status_code in (404, 422), path


def test_internal_errors_hide_the_traceback(setup, tmp_path):
    root, encoder, images, *_ = setup
    (tmp_path / "db.hidx").write_bytes((root / "db.hidx").read_bytes())
    served = ServedIndex(str(tmp_path / "db.hidx"))

    def broken(*args, **kwargs):
        raise RuntimeError("secret detail /home/x")
    served.index.search = broken
    with TestClient(create_app(served, encoder), raise_server_exceptions=False) as c:
        r = c.post("/search", json={"ids": [1]})
    assert r.status_code == 500
    assert "secret" not in r.text and "Traceback" not in r.text


def test_api_key_guards_writes_only(setup, tmp_path):
    root, encoder, _, codes, _ = setup
    (tmp_path / "db.hidx").write_bytes((root / "db.hidx").read_bytes())
    app = create_app(ServedIndex(str(tmp_path / "db.hidx")), encoder,
                     ServeConfig(api_key="s3cret"))
    body = {"codes": [codes[0].tobytes().hex()]}
    with TestClient(app) as c:
        assert c.post("/items", json=body).status_code == 401
        assert c.post("/items", json=body, headers={"x-api-key": "wrong"}).status_code == 401
        assert c.post("/items", json=body, headers={"x-api-key": "s3cret"}).status_code == 200
        assert c.post("/items", json=body,
                      headers={"authorization": "Bearer s3cret"}).status_code == 200
        assert c.delete("/items/1").status_code == 401
        assert c.post("/search", json={"ids": [1]}).status_code == 200


def test_cli_refuses_other_addresses_without_a_key(setup):
    from click.testing import CliRunner

    from hashsdk.cli import main

    root = setup[0]
    result = CliRunner().invoke(main, ["serve", str(root / "db.hidx"), "--host", "0.0.0.0"])
    assert result.exit_code == 1
    assert "--api-key" in result.output


def test_openapi_and_page(client):
    spec = client.get("/openapi.json").json()
    assert {"/search", "/items", "/items/{item_id}", "/items/{item_id}/thumbnail",
            "/healthz", "/stats"} <= set(spec["paths"])
    assert "multipart/form-data" in spec["paths"]["/search"]["post"]["requestBody"]["content"]
    page = client.get("/").text
    assert "<script" in page and "http://" not in page and "https://" not in page  # no CDN


def test_batcher_merges_waiting_requests_and_keeps_their_order(setup):
    _, encoder, images, codes, _ = setup
    batcher = Batcher(encoder, workers=1, max_batch=16)

    async def many():
        return await asyncio.gather(*[batcher.encode([images[i]]) for i in range(12)])
    out = asyncio.run(many())
    batcher.close()
    np.testing.assert_array_equal(np.concatenate(out), codes[:12])
    assert batcher.images == 12 and batcher.calls < 12  # the first alone, the rest merged


def test_request_time_limit_answers_503(setup, tmp_path):
    root, encoder, images, *_ = setup
    (tmp_path / "db.hidx").write_bytes((root / "db.hidx").read_bytes())
    config = ServeConfig(limits=Limits(request_timeout_s=0.2))
    app = create_app(ServedIndex(str(tmp_path / "db.hidx")), encoder, config)

    async def slow(images):
        await asyncio.sleep(5)
    app.state.batcher.encode = slow
    with TestClient(app) as c:
        r = c.post("/search", files=files(("a.png", png(images[0]))))
        assert r.status_code == 503 and "0.2 s" in r.json()["detail"]
        assert c.post("/search", json={"ids": [1]}).status_code == 200


def test_multi_index_kind_answers_as_the_flat_index(tmp_path, rng):
    from conftest import random_packed

    codes = random_packed(rng, 5000, 64)
    flat = HammingIndex(64)
    flat.add(codes)
    flat.save(tmp_path / "db.hidx")
    queries = [c.tobytes().hex() for c in codes[:5]]
    answers = []
    for kind in ("flat", "mih"):
        with TestClient(create_app(ServedIndex(str(tmp_path / "db.hidx"), kind=kind))) as c:
            answers.append(c.post("/search", json={"codes": queries, "k": 20}).json())
            assert c.get("/stats").json()["index"]["kind"] == kind
    assert answers[0] == answers[1]
    want = flat.search(codes[:5], 20)[1]
    assert [[h["id"] for h in r["results"]] for r in answers[1]["results"]] == want.tolist()


def test_a_refused_image_add_leaves_the_items_image(client, setup):
    _, _, images, _, _ = setup
    first = client.post("/items", files=files(("a.png", png(images[1]))), data={"ids": "900"})
    assert first.json() == {"ids": [900]}
    before = client.get("/items/900/thumbnail").content
    again = client.post("/items", files=files(("b.png", png(images[2]))), data={"ids": "900"})
    assert again.status_code == 409
    assert client.get("/items/900/thumbnail").content == before
    assert client.post("/items", files=files(("c.png", png(images[2]))),
                       data={"ids": "901,902"}).status_code == 400  # one id per image


def test_searches_never_wait_for_a_write(client, setup):
    """A write holds the write lock through its fsync: made slow here (1 s), with a second add
    waiting behind it, a search must still answer at once (nothing of a write runs on the
    event loop; the second add takes its new id under the lock, on the thread pool)."""
    import threading
    import time

    served = client.app.state.served
    _, _, _, codes, _ = setup
    append = served._journal.append

    def slow_append(record):
        time.sleep(1.0)
        append(record)
    served._journal.append = slow_append
    body = {"codes": [codes[0].tobytes().hex()]}
    answers = []
    writers = [threading.Thread(target=lambda: answers.append(client.post("/items", json=body)))
               for _ in range(2)]
    for w in writers:
        w.start()
        time.sleep(0.2)  # the first write is inside its fsync now, the second waits for it
    t0 = time.perf_counter()
    assert client.post("/search", json={"ids": [1], "k": 3}).status_code == 200
    waited = time.perf_counter() - t0
    for w in writers:
        w.join()
    assert waited < 0.5, waited
    first, second = sorted(a.json()["ids"][0] for a in answers)
    assert second == first + 1  # new ids in the order the writes reached the index
    assert served.index.ntotal == N + 2


def test_an_image_as_the_raw_body_searches_and_adds_as_multipart_does(client, setup):
    _, _, images, _, _ = setup
    data = png(images[4])
    raw = client.post("/search?k=5", content=data, headers={"content-type": "image/png"})
    form = client.post("/search", files=files(("x.png", data)), data={"k": "5"})
    assert raw.status_code == 200, raw.text
    assert [h["id"] for h in raw.json()["results"][0]["results"]] == \
        [h["id"] for h in form.json()["results"][0]["results"]]
    added = client.post("/items?ids=777", content=data, headers={"content-type": "image/png"})
    assert added.json() == {"ids": [777]}
    assert client.get("/items/777").json()["path"].endswith(".png")
    bad = client.post("/search?k=all", content=data, headers={"content-type": "image/png"})
    assert bad.status_code == 400 and "k: expected an integer" in bad.text


def test_results_are_bounded_and_errors_do_not_echo_large_inputs(setup, tmp_path, rng):
    root, encoder, *_ = setup
    served = ServedIndex(str(tmp_path / "db.hidx"), bits=encoder.bits)
    served.add(np.zeros((300, (encoder.bits + 7) // 8), np.uint8))  # 300 codes at distance 0
    config = ServeConfig(limits=Limits(max_results=500, max_k=1000))
    zero = "00" * ((encoder.bits + 7) // 8)
    with TestClient(create_app(served, encoder, config)) as c:
        # queries x k over the bound: refused, naming it
        r = c.post("/search", json={"codes": [zero] * 3, "k": 200})
        assert r.status_code == 400 and "at most 500" in r.json()["detail"]
        assert c.post("/search", json={"codes": [zero] * 2, "k": 200}).status_code == 200
        # a range search stops at the bound in all, the query cut short marked
        got = c.post("/search", json={"codes": [zero] * 3, "radius": 0}).json()["results"]
        assert [len(q["results"]) for q in got] == [300, 200, 0]
        assert [q["truncated"] for q in got] == [False, True, True]
        # a huge k is a short error, not an echo
        r = c.post("/search", content=b'{"codes": ["' + zero.encode() + b'"], "k": "' +
                   b"9" * 100_000 + b'"}', headers={"content-type": "application/json"})
        assert r.status_code == 400 and len(r.text) < 300, r.text[:300]


def test_ids_at_the_edge_are_legal_and_the_next_ids_say_they_are_spent(client, setup):
    from hashsdk.index.kinds import MAX_ID

    _, _, _, codes, _ = setup
    code = codes[0].tobytes().hex()
    assert client.post("/items", json={"codes": [code], "ids": [MAX_ID]}).json() == {
        "ids": [MAX_ID]}
    r = client.post("/items", json={"codes": [code], "ids": [MAX_ID + 1]})
    assert r.status_code == 400 and "from 0 to" in r.json()["detail"]
    for _ in range(2):  # before and after the id is deleted: a clear 400, never a 500
        r = client.post("/items", json={"codes": [code]})
        assert r.status_code == 400 and "no default ids left" in r.json()["detail"]
        client.delete(f"/items/{MAX_ID}")
    assert client.post("/items", json={"codes": [code], "ids": [5000]}).status_code == 200


def test_a_strip_image_is_refused_before_it_is_resized(client):
    for width in (250_000, 40_000_000):
        out = io.BytesIO()
        Image.new("RGB", (width, 1)).save(out, "PNG")
        r = client.post("/search", files=files(("strip.png", out.getvalue())))
        assert r.status_code == 400 and "aspect ratio over 100:1" in r.json()["detail"]
