import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import write_fashion_like

pytest.importorskip("torch")
pytest.importorskip("onnx")

from hashsdk import HammingIndex  # noqa: E402
from hashsdk.train import config  # noqa: E402
from hashsdk.train.report import SECTIONS  # noqa: E402
from hashsdk.train.ship import main_job as demo  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ["split.npz", "gan/fakes.npz", "gan/generator.pt", "gan/losses.png",
             "gan/losses.csv", "hash-fakes/checkpoint.pt", "hash-fakes/eval.json",
             "hash-fakes/loss.png", "hash-nofakes/eval.json", "baselines.json",
             "comparison.md", "pr.png", "model.onnx", "model.onnx.verify.json", "db.hidx",
             "index.json", "search.json", "report.md", "fakes_vs_real.png", "hash_losses.png",
             "queries.png", "bits.png"]


def tiny(tmp_path: Path, **hash_overrides) -> config.RunConfig:
    return config.from_dict({
        "data": {"dataset": "fashion-mnist", "root": str(tmp_path / "data"),
                 "queries_per_class": 3, "train_per_class": 10,
                 "cache_dir": str(tmp_path / "cache")},
        "gan": {"steps": 2, "batch_size": 8, "width": 8, "sample_every": 1, "device": "cpu"},
        "hash": dict({"bits": 12, "epochs": 1, "batch_size": 20, "device": "cpu"},
                     **hash_overrides),
    })


def test_demo_pipeline_artifacts_report_and_skipping(tmp_path):
    (tmp_path / "data").mkdir()
    write_fashion_like(tmp_path / "data")
    run = tmp_path / "run"
    first = demo(tiny(tmp_path), run, progress=False, log=lambda _: None)
    assert set(first.values()) == {"ran"}
    for name in ARTIFACTS:
        assert (run / name).is_file(), name
    report = (run / "report.md").read_text()
    headings = [line[3:] for line in report.splitlines() if line.startswith("## ")]
    assert headings == list(SECTIONS)
    for picture in ("fakes_vs_real.png", "queries.png", "bits.png", "pr.png"):
        assert f"]({picture})" in report
    assert "| with fakes |" in report and "| ITQ (pixels) |" in report
    assert "| mAP@all with fakes |" not in report  # mAP in one table, not two
    assert "The stages took " in report
    assert report.rstrip().splitlines()[-2] == \
        f"hashsdk serve {run / 'db.hidx'} --model {run / 'model.onnx'}"
    index = HammingIndex.load(run / "db.hidx")
    split = np.load(run / "split.npz")
    assert index.ntotal == len(split["database"]) and index.bits == 12
    assert (index.ids == np.sort(split["database"])).all()
    # each indexed image is a file (for hashsdk serve's thumbnails), with the encoded pixels
    from hashsdk import Encoder
    from hashsdk.index import index_file

    paths = index_file.read_paths(run / "db.hidx", index.ntotal)
    assert [Path(p).name for p in paths] == [f"{i}.png" for i in index.ids]
    np.testing.assert_array_equal(Encoder(run / "model.onnx").encode(paths[:20]),
                                  index.codes[:20])
    search = json.loads((run / "search.json").read_text())
    assert len(search["ids"]) == 5 and search["latency_ms"] > 0

    # a second run finds everything up to date
    mtime = (run / "hash-fakes" / "checkpoint.pt").stat().st_mtime_ns
    second = demo(tiny(tmp_path), run, progress=False, log=lambda _: None)
    assert set(second.values()) == {"skipped"}
    assert (run / "hash-fakes" / "checkpoint.pt").stat().st_mtime_ns == mtime

    # a changed fake-loss weight reruns what it affects, and only that
    third = demo(tiny(tmp_path, lam=0.5), run, progress=False, log=lambda _: None)
    assert {k for k, v in third.items() if v == "ran"} == {
        "hash-fakes", "comparison", "export", "index", "search", "report"}
    assert json.loads((run / "hash-fakes" / "config.json").read_text())["hash"]["lam"] == 0.5


def test_interrupted_stage_is_finished_by_the_next_run(tmp_path):
    (tmp_path / "data").mkdir()
    write_fashion_like(tmp_path / "data")
    run = tmp_path / "run"
    demo(tiny(tmp_path), run, progress=False, log=lambda _: None)
    (run / "index.json").unlink()  # as if killed while building the index
    status = demo(tiny(tmp_path), run, progress=False, log=lambda _: None)
    assert status["index"] == "ran" and status["hash-fakes"] == "skipped"
    assert status["search"] == "skipped"  # its inputs' keys did not change


def test_example_app_finds_similar_images(tmp_path):
    from PIL import Image

    (tmp_path / "data").mkdir()
    write_fashion_like(tmp_path / "data")
    run = tmp_path / "run"
    demo(tiny(tmp_path), run, progress=False, log=lambda _: None)
    from hashsdk.train.data import load_dataset

    data = load_dataset(tiny(tmp_path).data, progress=False)
    database = np.load(run / "split.npz")["database"]
    image = data.images[database[7]]
    Image.fromarray(image.squeeze(-1)).save(tmp_path / "query.png")
    result = subprocess.run([sys.executable, str(ROOT / "examples" / "find_similar.py"),
                             str(run / "model.onnx"), str(run / "db.hidx"),
                             str(tmp_path / "query.png"), "-k", "3"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    got = [tuple(map(int, line.split()[:2])) for line in result.stdout.strip().splitlines()]
    from hashsdk import Encoder

    code = Encoder(run / "model.onnx").encode(tmp_path / "query.png")
    index = HammingIndex.load(run / "db.hidx")
    dist, ids = index.search(code, 3)
    assert got == list(zip(ids[0].tolist(), dist[0].tolist(), strict=True))
    dist, ids = index.search(code, index.ntotal)
    assert dist[0][ids[0] == database[7]][0] == 0  # the image itself is at distance 0


def test_the_report_says_plainly_what_the_fakes_did():
    from hashsdk.train.report import verdict

    assert "costs 1.1 mAP points (4.2 standard errors)" in verdict(
        {"difference": -0.0113, "standard_error": 0.0027, "queries": 1000})
    assert "gains 3.0 mAP points" in verdict(
        {"difference": 0.03, "standard_error": 0.005, "queries": 1000})
    assert "no difference that the 1000 queries can tell apart" in verdict(
        {"difference": 0.004, "standard_error": 0.003, "queries": 1000})
    assert "no without-fakes run" in verdict(None)
