"""hashsdk serve as users run it: a real server process killed with SIGKILL mid-write, and a
real browser (Debian's headless Chromium through Selenium) using the page."""

import http.client
import json
import os
import shutil
import threading
import time
import urllib.request

import numpy as np
import pytest
from conftest import load_benchmark, random_packed, structured_images

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from serve_process import ServerProcess  # noqa: E402

from hashsdk import Encoder, HammingIndex  # noqa: E402
from hashsdk.serve import ServedIndex  # noqa: E402

BITS = 64


def post_json(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, json.dumps(body).encode(),
                                     {"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as r:
        return json.load(r)


def test_no_acknowledged_write_lost_to_sigkill(tmp_path, rng):
    index = tmp_path / "db.hidx"
    acked: dict[int, str] = {}
    removed: set[int] = set()
    in_flight: set[int] = set()  # the add or remove a kill cut off: either outcome is right
    for round_ in range(2):
        server = ServerProcess(index, "--bits", str(BITS), log=tmp_path / "log").start()
        stop = threading.Event()

        def writer(server=server, stop=stop, round_=round_):
            codes = random_packed(np.random.default_rng(round_), 5000, BITS)
            for i, code in enumerate(codes):
                if stop.is_set():
                    return
                new_id = 10_000 * round_ + i
                try:
                    in_flight.add(new_id)
                    post_json(server.url + "/items", {"codes": [code.tobytes().hex()],
                                                      "ids": [new_id]})
                    acked[new_id] = code.tobytes().hex()
                    if i % 7 == 3:
                        req = urllib.request.Request(f"{server.url}/items/{new_id}",
                                                     method="DELETE")
                        urllib.request.urlopen(req, timeout=10).close()
                        removed.add(new_id)
                    in_flight.discard(new_id)
                except (OSError, http.client.HTTPException):  # URLError is an OSError
                    return  # the server died under us: that write was never acknowledged
        thread = threading.Thread(target=writer)
        thread.start()
        time.sleep(1.0 + rng.random())
        server.kill()  # SIGKILL: no shutdown, no fold
        stop.set()
        thread.join()
    assert len(acked) > 20
    served = ServedIndex(str(index))
    got = {int(i): bytes(c).hex() for i, c in zip(served.index.ids, served.index.codes,
                                                    strict=True)}
    want = {i: c for i, c in acked.items() if i not in removed}
    assert len(in_flight) <= 2
    assert {i: c for i, c in got.items() if i not in in_flight} == \
        {i: c for i, c in want.items() if i not in in_flight}


def chromium_paths() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@pytest.mark.skipif(chromium_paths() is None,
                    reason="needs Debian's chromium and chromium-driver (make installs them)")
def test_browser_uploads_an_image_and_sees_k_results(exported, tmp_path):
    pytest.importorskip("selenium")
    from PIL import Image
    from selenium import webdriver
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    folder, _, _ = exported
    images, _ = structured_images(30, seed=5)
    paths = []
    for i, image in enumerate(images):
        paths.append(str(tmp_path / f"img{i}.png"))
        Image.fromarray(image).save(paths[-1])
    encoder = Encoder(folder / "model.onnx")
    index = HammingIndex(encoder.bits)
    index.add(encoder.encode(paths))
    index.save(tmp_path / "db.hidx", paths=paths)

    browser, driver_path = chromium_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1000,800",
                 "--disable-dev-shm-usage"):
        options.add_argument(flag)
    with ServerProcess(tmp_path / "db.hidx", "--model", str(folder / "model.onnx"),
                       log=tmp_path / "log") as server:
        driver = webdriver.Chrome(service=Service(driver_path), options=options)
        try:
            driver.get(server.url + "/")
            # results are replaced as a whole: an element read mid-swap is stale, read it again
            wait = WebDriverWait(driver, 30, ignored_exceptions=(
                StaleElementReferenceException, IndexError))
            wait.until(lambda d: "30 items" in d.find_element(By.ID, "info").text)
            k = driver.find_element(By.ID, "k")
            k.clear()
            k.send_keys("7")
            driver.find_element(By.ID, "file").send_keys(paths[4])
            wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".hit")) == 7)
            hits = driver.find_elements(By.CSS_SELECTOR, ".hit")
            assert "distance 0" in hits[0].text  # the image itself is in the index
            wait.until(lambda d: all(img.get_property("naturalWidth") > 0 for img in
                                     d.find_elements(By.CSS_SELECTOR, ".hit img")))
            shot = os.environ.get("HASHSDK_SCREENSHOT")
            if shot:
                driver.save_screenshot(shot)
            # a click searches by that result: its own code comes first, at distance 0
            target = hits[3].get_attribute("data-id")
            hits[3].click()
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".hit")[0]
                       .get_attribute("data-id") != "" and
                       "items/" + target in d.find_element(By.CSS_SELECTOR, "#query img")
                       .get_attribute("src"))
            first = driver.find_elements(By.CSS_SELECTOR, ".hit")[0]
            assert "distance 0" in first.text
        finally:
            driver.quit()


def test_the_http_edges_answer_at_once_and_count_what_happened(tmp_path):
    bench = load_benchmark("serve", "serve_benchmark_live")
    with ServerProcess(tmp_path / "db.hidx", "--bits", str(BITS), "--max-upload-mb", "1",
                       log=tmp_path / "log") as server:
        for name, got in bench.protocol_cases(server.url, 1 << 20).items():
            assert got["status"] == got["expected"], (name, got)
            # at once: a declared length is never read, a chunked body stops at the limit
            assert got["seconds"] < 1.5, (name, got)
            assert "100 Continue" not in got["first_line"]
        bench.vanishing_client(server.url)
        time.sleep(0.3)
        with urllib.request.urlopen(server.url + "/stats", timeout=10) as r:
            routes = json.load(r)["routes"]
        statuses = {s for route in routes.values() for s in route["by_status"]}
        assert "499" in routes["POST /search"]["by_status"] and "500" not in statuses
    log = (tmp_path / "log").read_text()
    assert "Traceback" not in log and "Exception" not in log


def test_a_second_server_on_the_same_index_is_refused(tmp_path):
    with ServerProcess(tmp_path / "db.hidx", "--bits", str(BITS), log=tmp_path / "log1"):
        import subprocess
        import sys
        from pathlib import Path

        second = subprocess.run([str(Path(sys.executable).parent / "hashsdk"), "serve",
                                 str(tmp_path / "db.hidx"), "--port", "0"],
                                capture_output=True, text=True, timeout=60)
        assert second.returncode == 1
        assert "being written by another process (pid" in second.stderr
