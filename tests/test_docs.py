"""The README and the docs/ pages as users read them: every Python and shell block runs, in
order, page by page, or is marked ``<!-- not run: REASON -->`` on the line above it; and the
site builds with ``mkdocs build --strict`` (broken links and bad references fail it).

The README runs first, in a folder with ``photos/<class>/*.jpg`` (120 small generated images,
4 classes): its quickstart trains, exports and indexes them, and each docs page then runs in a
copy of what the README left (``runs/photos``, ``photos.onnx``, ``photos.hidx``). Python
blocks of a page share one interpreter and namespace, as a reader's session would; shell
blocks run in bash with ``set -euo pipefail`` and this environment's commands first on PATH.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import structured_images

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PAGES = sorted((ROOT / "docs").glob("*.md"))
RUNNABLE = {"python": "python", "sh": "sh", "bash": "sh", "shell": "sh", "console": "sh"}
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```\s*$", re.S | re.M)
NOT_RUN = re.compile(r"<!-- not run: (.+?) -->\s*$")

DRIVER = r"""
import json, subprocess, sys, traceback
blocks = json.load(open(sys.argv[1]))
namespace = {"__name__": "__main__"}
for block in blocks:
    where = f"{block['page']}:{block['line']}"
    if block["lang"] == "python":
        try:
            exec(compile(block["code"], where, "exec"), namespace)
        except BaseException:
            traceback.print_exc()
            sys.exit(f"FAILED python block at {where}")
    else:
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", block["code"]])
        if done.returncode:
            sys.exit(f"FAILED shell block at {where} (exit {done.returncode})")
"""


def blocks(page: Path) -> list[dict]:
    """The page's fenced blocks of a runnable language: lang, code, line, and the reason it is
    not run (None where it runs)."""
    text = page.read_text()
    out = []
    for match in FENCE.finditer(text):
        lang = RUNNABLE.get(match.group(1))
        if lang is None:
            continue
        line = text.count("\n", 0, match.start()) + 1
        before = text[:match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        reason = NOT_RUN.search(before)
        out.append({"page": page.name, "line": line, "lang": lang, "code": match.group(2),
                    "skip": reason.group(1).strip() if reason else None})
    return out


def run_page(page: Path, workdir: Path) -> None:
    todo = [b for b in blocks(page) if b["skip"] is None]
    script = workdir / f".{page.stem}-blocks.json"
    script.write_text(json.dumps(todo))
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
           "HASHSDK_CACHE": str(workdir / ".cache"), "MPLBACKEND": "Agg"}
    done = subprocess.run([sys.executable, "-c", DRIVER, str(script)], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (f"{page.name}\n--- stdout\n{done.stdout[-3000:]}\n"
                                  f"--- stderr\n{done.stderr[-5000:]}")


@pytest.fixture(scope="module")
def after_readme(tmp_path_factory) -> Path:
    """A folder of photos, after the README's blocks ran in it."""
    from PIL import Image

    work = tmp_path_factory.mktemp("readme")
    images, labels = structured_images(120)
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        folder = work / "photos" / f"class{label}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{i:03d}.jpg", quality=95)
    run_page(ROOT / "README.md", work)
    return work


def test_the_readme_runs_as_written(after_readme):
    assert (after_readme / "photos.onnx").exists() and (after_readme / "photos.hidx").exists()
    assert (after_readme / "photos.onnx.verify.json").exists()


def test_the_readmes_serve_command_serves_the_quickstarts_index(after_readme, tmp_path):
    """The quickstart's ``hashsdk serve`` line, started as written (on a free port), finds a
    photo's own entry through the page's upload route and shows its thumbnail."""
    import shlex
    import urllib.request

    from serve_process import ServerProcess

    text = (ROOT / "README.md").read_text()
    line = next(line for line in text.splitlines() if line.startswith("hashsdk serve "))
    args = shlex.split(line)[2:]
    work = tmp_path / "work"
    shutil.copytree(after_readme, work)
    photo = work / "photos" / "class2" / "002.jpg"
    boundary = "b0undary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; "
            f"filename=\"q.jpg\"\r\n\r\n").encode() + photo.read_bytes() + \
        f"\r\n--{boundary}--\r\n".encode()
    with ServerProcess(args[0], *args[1:], cwd=work, log=tmp_path / "log") as server:
        request = urllib.request.Request(
            server.url + "/search", body,
            {"content-type": f"multipart/form-data; boundary={boundary}"})
        with urllib.request.urlopen(request, timeout=30) as r:
            hits = json.load(r)["results"][0]["results"]
        assert hits[0]["distance"] == 0
        assert str(photo) in [str(work / h["path"]) for h in hits if h["distance"] == 0]
        with urllib.request.urlopen(f"{server.url}/items/{hits[0]['id']}/thumbnail") as r:
            assert r.headers["content-type"] == "image/jpeg"


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_each_docs_page_runs_as_written(page, after_readme, tmp_path):
    work = tmp_path / "work"
    shutil.copytree(after_readme, work)
    run_page(page, work)


def test_every_block_runs_or_says_why_not():
    pages = [ROOT / "README.md", *PAGES]
    found = [b for page in pages for b in blocks(page)]
    assert len(found) > 10
    for block in found:
        assert block["skip"] is None or len(block["skip"]) > 10, block


def test_readme_is_a_front_page():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 300
    start = text.index("## Quickstart")
    quickstart = text[start:text.index("\n## ", start + 5)]
    code = [b.group(2) for b in FENCE.finditer(quickstart)]
    assert sum(len(c.strip().splitlines()) for c in code) <= 20


def test_the_site_builds_strictly(tmp_path):
    done = subprocess.run([str(BIN / "mkdocs"), "build", "--strict", "-q", "-d",
                           str(tmp_path / "site")], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-5000:]
    index = (tmp_path / "site" / "index.html").read_text()
    assert "Quickstart" in index
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    assert "encode_iter" in api and "range_search" in api  # generated from the docstrings
    assert (tmp_path / "site" / "benchmarks" / "results" / "cifar10-fakes.png").exists()
