"""The package as users get it: built into an sdist and a wheel, the wheel installed into fresh
virtual environments, and used from a folder outside the checkout.

- The built files: ``check-wheel-contents`` and ``twine check`` pass; every module of the three
  source folders is in the wheel under its installed name (a hand-written package list once
  left ``hashsdk.encoder.backends`` out, which the editable install hid); LICENSE and py.typed ship.
- No extras: ``pip install hashsdk-*.whl`` resolves its dependencies from the index; the
  Encoder encodes images with a small exported model, HammingIndex adds, searches, saves and
  loads, the ``hashsdk`` commands encode, build an index and search, and ``import hashsdk``
  loads neither torch nor onnx.
- The train and export extras: torch and its kin are several GB, so this environment takes
  them from the test's own environment (a path line appended after its own site-packages,
  written after the install, so the installed wheel's hashsdk comes first); both other CLIs
  start and the installed ``hashsdk-export`` converts a small checkpoint.
- ``hashsdk-gpu``: the sdist that scripts/build_dists.py writes depends on onnxruntime-gpu and
  not on onnxruntime.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import tarfile
import urllib.request
import zipfile
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
from conftest import structured_images, trained_checkpoint

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SOURCES = {"hashsdk": "hashsdk", "hashsdk/train": "train", "hashsdk/export": "export"}


def sh(*args, cwd=None, env=None, check=True) -> subprocess.CompletedProcess:
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, cwd=cwd,
                          env=env)
    if check:
        assert done.returncode == 0, f"{args}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def dists(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    sh(sys.executable, "-m", "build", "--sdist", "--wheel", "-o", out, ROOT)
    return out


@pytest.fixture(scope="module")
def wheel(dists) -> Path:
    (path,) = dists.glob("hashsdk-*.whl")
    return path


@pytest.fixture(scope="module")
def outside(tmp_path_factory) -> Path:
    """A folder outside the checkout with photos, a small checkpoint and its ONNX export."""
    from PIL import Image

    from hashsdk.export.onnx_export import export_onnx

    work = tmp_path_factory.mktemp("user")
    images, _ = structured_images(12)
    (work / "photos").mkdir()
    for i, image in enumerate(images):
        Image.fromarray(image).save(work / "photos" / f"{i:02d}.png")
    trained_checkpoint(work / "ckpt.pt")
    export_onnx(work / "ckpt.pt", work / "model.onnx")
    return work


def venv(path: Path) -> Path:
    sh(sys.executable, "-m", "venv", path)
    return path / "bin"


def test_the_built_files_are_complete_and_pass_the_checkers(dists, wheel):
    sh(BIN / "check-wheel-contents", wheel)
    sh(BIN / "twine", "check", "--strict", *dists.iterdir())
    names = set(zipfile.ZipFile(wheel).namelist())
    for installed, folder in SOURCES.items():
        for module in (ROOT / folder).rglob("*.py"):
            assert f"{installed}/{module.relative_to(ROOT / folder)}" in names, module
    assert "hashsdk/py.typed" in names and not any(n.endswith(".c") for n in names)
    assert "hashsdk/serve/static/index.html" in names  # the page of hashsdk serve
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    metadata = next(zipfile.ZipFile(wheel).read(n).decode() for n in names
                    if n.endswith(".dist-info/METADATA"))
    import hashsdk

    assert f"Version: {hashsdk.__version__}" in metadata
    assert "License-Expression: Apache-2.0" in metadata
    (sdist,) = dists.glob("hashsdk-*.tar.gz")
    members = tarfile.open(sdist).getnames()
    assert any(m.endswith("hashsdk/index/_kernel.c") for m in members)


USER_SCRIPT = """
import sys
import numpy as np
import hashsdk
from hashsdk import Encoder, HammingIndex
assert sys.prefix in hashsdk.__file__, hashsdk.__file__   # the installed copy, not the checkout
encoder = Encoder("model.onnx")
paths = sorted(str(p) for p in __import__("pathlib").Path("photos").iterdir())
codes = encoder.encode(paths)
assert codes.shape == (12, 3) and codes.dtype == np.uint8, codes.shape
index = HammingIndex(encoder.bits)
index.add(codes)
distances, ids = index.search(encoder.encode(paths[4]), k=3)  # 0, 4, 8: one class, one code
assert ids.tolist() == [[0, 4, 8]] and distances.tolist() == [[0, 0, 0]], (ids, distances)
index.save("db.hidx")
again = HammingIndex.load("db.hidx")
for a, b in zip(again.search(codes, k=5), index.search(codes, k=5)):
    assert (a == b).all()
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "onnx"))
assert not heavy, heavy
print(encoder.providers)
"""


def test_the_wheel_without_extras_encodes_indexes_and_searches(wheel, outside, tmp_path):
    bin_ = venv(tmp_path / "env")
    sh(bin_ / "python", "-m", "pip", "install", "-q", wheel)
    done = sh(bin_ / "python", "-c", USER_SCRIPT, cwd=outside)
    assert "CPUExecutionProvider" in done.stdout
    assert sh(bin_ / "hashsdk", "--version").stdout.split()[-1] in wheel.name
    sh(bin_ / "hashsdk", "encode", "model.onnx", "photos", "-o", "codes.npy", "--quiet",
       cwd=outside)
    assert np.load(outside / "codes.npy").shape == (12, 3)
    sh(bin_ / "hashsdk", "index", "build", "--model", "model.onnx", "photos", "-o", "cli.hidx",
       "--quiet", "--threads", "1", cwd=outside)
    found = sh(bin_ / "hashsdk", "search", "cli.hidx", "--model", "model.onnx",
               "photos/07.png", "-k", "2", "--json", cwd=outside)
    (record,) = json.loads(found.stdout)
    assert {"id": 7, "distance": 0, "path": str(Path("photos", "07.png"))} in record["results"]
    # the extras' commands say how to get them
    assert "Usage:" in sh(bin_ / "hashsdk-train", "-h", cwd=outside).stdout
    missing = sh(bin_ / "hashsdk-train", "backbones", cwd=outside, check=False)
    assert missing.returncode == 1 and "install the train extra: pip install '.[train]'" in \
        missing.stderr
    missing = sh(bin_ / "hashsdk", "serve", "cli.hidx", cwd=outside, check=False)
    assert missing.returncode == 1 and "install the serve extra: pip install '.[serve]'" in \
        missing.stderr


def test_the_wheel_with_train_and_export_extras(wheel, outside, tmp_path):
    bin_ = venv(tmp_path / "env")
    sh(bin_ / "python", "-m", "pip", "install", "-q", "--no-deps", wheel)
    site = Path(sh(bin_ / "python", "-c", "import sysconfig; print(sysconfig.get_paths()"
                                          "['purelib'])").stdout.strip())
    (site / "zz_test_extras.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {**os.environ, "PYTHONNOUSERSITE": "1"}
    where = sh(bin_ / "python", "-c", "import hashsdk.train, hashsdk.export; "
                                      "print(hashsdk.train.__file__, hashsdk.export.__file__)",
               cwd=outside, env=env).stdout.split()
    assert all(w.startswith(str(site)) for w in where), where
    for command in ("hashsdk-train", "hashsdk-export"):
        assert "Usage:" in sh(bin_ / command, "-h", env=env).stdout
    assert sh(bin_ / "hashsdk-train", "backbones", "cnn", env=env).stdout.split()[0] == "cnn"
    sh(bin_ / "hashsdk-export", "ckpt.pt", "-o", "again.onnx", cwd=outside, env=env)
    from hashsdk import Encoder

    images, _ = structured_images(20, seed=3)
    first = Encoder(outside / "model.onnx").encode(images)
    assert (Encoder(outside / "again.onnx").encode(images) == first).all()
    # the installed hashsdk serve (its packages borrowed too) answers its page and a search
    from serve_process import ServerProcess

    with ServerProcess("served.hidx", "--model", "model.onnx", "--create", cwd=outside,
                       python=bin_ / "python", log=tmp_path / "serve.log") as server:
        with urllib.request.urlopen(server.url + "/", timeout=10) as r:
            assert b'id="drop"' in r.read()
        with urllib.request.urlopen(server.url + "/stats", timeout=10) as r:
            assert json.load(r)["bits"] == 24


def test_the_gpu_distribution_swaps_onnxruntime_for_its_gpu_build(tmp_path):
    sh(sys.executable, ROOT / "scripts" / "build_dists.py", "--gpu", "--sdist-only", "-o",
       tmp_path)
    (sdist,) = tmp_path.glob("hashsdk_gpu-*.tar.gz")
    with tarfile.open(sdist) as tar:
        info = next(tar.extractfile(m).read().decode() for m in tar.getmembers()
                    if m.name.count("/") == 1 and m.name.endswith("PKG-INFO"))
    requires = [line.split(": ", 1)[1] for line in info.splitlines()
                if line.startswith("Requires-Dist: ") and "extra ==" not in line]
    assert "Name: hashsdk-gpu" in info
    assert any(r.startswith("onnxruntime-gpu") for r in requires)
    assert not any(r.startswith("onnxruntime>") or r == "onnxruntime" for r in requires)


def test_the_export_extra_alone_exports_a_timm_checkpoint(wheel, tmp_path):
    """``hashsdk[export]`` must be enough to export any checkpoint. A fresh environment holds
    the wheel and, borrowed from this one (torch is several GB), only the distributions that
    hashsdk and its export extra require, transitively; the installed hashsdk-export must
    export a timm checkpoint there. (Before the extra named timm, it failed.)"""
    from hashsdk.train import checkpoint
    from hashsdk.train.model import KIND, HashNet

    net = HashNet("timm/test_resnet", 16, image_size=32)
    checkpoint.save(tmp_path / "ck.pt", kind=KIND, model_args=net.model_args,
                    state_dict=net.state_dict(), config={})
    bin_ = venv(tmp_path / "env")
    sh(bin_ / "python", "-m", "pip", "install", "-q", "--no-deps", wheel)
    borrowed = _site_with_only(_closure("hashsdk", "export") - {"hashsdk"}, tmp_path / "site")
    site = Path(sh(bin_ / "python", "-c", "import sysconfig; print(sysconfig.get_paths()"
                                          "['purelib'])").stdout.strip())
    (site / "zz_export_extra.pth").write_text(f"{borrowed}\n")
    env = {**os.environ, "PYTHONNOUSERSITE": "1"}
    absent = sh(bin_ / "python", "-c", "import pytest", env=env, check=False)
    assert absent.returncode == 1  # what is not required is not there
    sh(bin_ / "hashsdk-export", tmp_path / "ck.pt", "-o", tmp_path / "m.onnx", env=env)
    assert (tmp_path / "m.onnx").is_file()


def _site_with_only(dists: set[str], folder: Path) -> Path:
    """A folder of links to this environment's files of ``dists`` (normalized names): their
    modules, their metadata, and the vendored libraries beside them."""
    folder.mkdir()
    for dist in metadata.distributions():
        if _norm(dist.metadata["Name"]) not in dists:
            continue
        tops = {Path(str(f)).parts[0] for f in dist.files or ()}
        for top in tops:
            source = Path(dist.locate_file(top))
            if source.exists() and not (folder / top).exists() and top != "..":
                (folder / top).symlink_to(source)
    return folder


def _norm(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def _closure(name: str, extra: str = "") -> set[str]:
    """``name`` and every distribution it requires (with ``extra``), transitively, as
    installed here; normalized names."""
    from packaging.requirements import Requirement

    out, todo = set(), [(name, extra)]
    while todo:
        dist, extra = todo.pop()
        if _norm(dist) in out:
            continue
        out.add(_norm(dist))
        try:
            lines = metadata.requires(dist) or []
        except metadata.PackageNotFoundError:
            continue
        for line in lines:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": extra}):
                todo.append((req.name, ""))
    return out
