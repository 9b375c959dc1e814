import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import write_fashion_like

torch = pytest.importorskip("torch")

from hashsdk.train.comparison import paired_difference  # noqa: E402


def write_tiny_run(tmp_path: Path) -> None:
    """A Fashion-MNIST-format set and run.toml for it: 100 training images, a few steps."""
    write_fashion_like(tmp_path)
    (tmp_path / "run.toml").write_text(
        "[data]\ndataset = 'fashion-mnist'\nqueries_per_class = 3\ntrain_per_class = 10\n"
        f"cache_dir = '{tmp_path / 'cache'}'\n"
        "[gan]\nsteps = 2\nbatch_size = 8\nwidth = 8\nsample_every = 1\ndevice = 'cpu'\n"
        "[hash]\nbits = 12\nepochs = 2\nbatch_size = 20\ndevice = 'cpu'\nlr = 0.003\n")


def test_paired_difference_and_its_standard_error():
    rng = np.random.default_rng(0)
    a = rng.random(2000)
    b = a - 0.02 + rng.normal(0, 0.05, 2000)
    b[5] = np.nan  # a skipped query drops out of both
    out = paired_difference(a, b)
    assert out["queries"] == 1999
    assert out["difference"] == pytest.approx(0.02, abs=0.005)
    assert out["standard_error"] == pytest.approx(0.05 / np.sqrt(1999), rel=0.15)


def test_train_all_from_raw_images_to_comparison(tmp_path):
    write_tiny_run(tmp_path)
    exe = Path(sys.executable).parent / "hashsdk-train"
    run = tmp_path / "run"
    result = subprocess.run([str(exe), "all", "--config", str(tmp_path / "run.toml"),
                             "--root", str(tmp_path), "--run-dir", str(run), "--quiet"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "| with fakes |" in result.stdout and "| ITQ (pixels) |" in result.stdout
    for name in ("split.npz", "gan/fakes.npz", "gan/losses.png", "hash-fakes/eval.json",
                 "hash-nofakes/eval.json", "baselines.json", "comparison.md", "pr.png"):
        assert (run / name).is_file(), name
    comparison = json.loads((run / "comparison.json").read_text())
    assert comparison["fakes_minus_nofakes"]["queries"] == 30
    assert {r["method"] for r in comparison["rows"]} >= {"with fakes", "without fakes"}
    with_cfg = json.loads((run / "hash-fakes" / "config.json").read_text())
    assert with_cfg["hash"]["fakes"].endswith("fakes.npz")
    assert json.loads((run / "hash-nofakes" / "config.json").read_text())["hash"]["fakes"] is None
    # a second `all` finds every stage done and prints the same table
    again = subprocess.run([str(exe), "all", "--config", str(tmp_path / "run.toml"),
                            "--root", str(tmp_path), "--run-dir", str(run), "--quiet"],
                           capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert "skipped (up to date): gan, hash-fakes, hash-nofakes, baselines, comparison" in \
        again.stdout
    assert (run / "comparison.md").read_text() in again.stdout

    # export the trained network and verify it on the run's own real images
    pytest.importorskip("onnx")
    exported = subprocess.run([str(Path(sys.executable).parent / "hashsdk-export"),
                               str(run / "hash-fakes" / "checkpoint.pt"), "-o",
                               str(tmp_path / "model.onnx"), "--verify"],
                              capture_output=True, text=True)
    assert exported.returncode == 0, exported.stderr
    assert "bits agree" in exported.stdout
    report = json.loads((tmp_path / "model.onnx.verify.json").read_text())
    assert report["passed"] and report["bit_agreement"] >= 0.999
    # INT8, calibrated on the run's training split, against FP32 on the run's protocol
    int8 = subprocess.run([str(Path(sys.executable).parent / "hashsdk-export"),
                           str(run / "hash-fakes" / "checkpoint.pt"), "-o",
                           str(tmp_path / "q.int8.onnx"), "--int8", "--calibration", "40",
                           "--verify"], capture_output=True, text=True)
    assert int8.returncode == 0, int8.stderr
    assert "calibrated on 40 images of the training split" in int8.stdout
    assert (tmp_path / "q.onnx").is_file()  # the FP32 model beside it
    report = json.loads((tmp_path / "q.int8.onnx.verify.json").read_text())
    assert (report["queries"], report["database"]) == (30, 230)  # 260 images less the queries
    assert report["bit_agreement"] > 0.8
    assert report["map_change"] == pytest.approx(report["map_int8"] - report["map_fp32"])


def test_torchrun_ddp_on_cpu_shards_batches_and_rank0_reports(tmp_path):
    # two gloo processes: the DistributedDataParallel path, with fakes in their own pass
    write_tiny_run(tmp_path)
    bin_dir = Path(sys.executable).parent
    run = tmp_path / "run"
    common = ["--config", str(tmp_path / "run.toml"), "--root", str(tmp_path), "--run-dir",
              str(run), "--quiet"]
    gan = subprocess.run([str(bin_dir / "hashsdk-train"), "gan", *common], capture_output=True,
                         text=True)
    assert gan.returncode == 0, gan.stderr
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(
        [str(bin_dir / "torchrun"), "--nproc_per_node", "2", "-m", "hashsdk.train.cli", "hash",
         *common, "--fakes", str(run / "gan" / "fakes.npz"), "--lambda", "1",
         "--fake-bn", "separate"], capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("mAP@all") == 1  # rank 0 alone evaluates and reports
    ckpt = torch.load(run / "hash-fakes" / "checkpoint.pt", weights_only=True)
    # 100 training images, 20 a process, 2 processes: 2 steps an epoch (5 on one process)
    assert ckpt["step"] == 2 * 2 and ckpt["epoch"] == 2
    # each rank's augmentation state is kept, so that a resume does not make ranks alike
    states = ckpt["rng"]["augment"]
    assert len(states) == 2 and not torch.equal(states[0], states[1])
    assert json.loads((run / "hash-fakes" / "eval.json").read_text())["map"] > 0


def test_eval_and_baseline_commands_reproduce_the_runs_numbers(tmp_path):
    write_tiny_run(tmp_path)
    exe = Path(sys.executable).parent / "hashsdk-train"
    run = tmp_path / "run"
    common = ["--config", str(tmp_path / "run.toml"), "--root", str(tmp_path), "--run-dir",
              str(run), "--quiet"]
    assert subprocess.run([str(exe), "all", *common], capture_output=True).returncode == 0
    # eval: the checkpoint on the run's split gives the numbers training wrote
    done = subprocess.run([str(exe), "eval", str(run / "hash-fakes" / "checkpoint.pt"),
                           "--run-dir", str(run), "--quiet"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    trained = json.loads((run / "hash-fakes" / "eval.json").read_text())
    assert json.loads(done.stdout)["map"] == pytest.approx(trained["map"], abs=1e-12)
    # baseline: LSH, ITQ and SH again, the same as the run's own, on pixels; then on the
    # trained backbone's features into a file of their own
    pixels = json.loads((run / "baselines.json").read_text())
    (run / "baselines.json").unlink()
    done = subprocess.run([str(exe), "baseline", *common, "--bits", "12"], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    again = json.loads((run / "baselines.json").read_text())
    assert {m: r["map"] for m, r in again.items()} == {m: r["map"] for m, r in pixels.items()}
    assert f"itq: mAP@all {pixels['itq']['map']:.4f}" in done.stdout
    done = subprocess.run([str(exe), "baseline", *common, "--bits", "12", "--features",
                           str(run / "hash-nofakes" / "checkpoint.pt")], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    learned = json.loads((run / "baselines-features.json").read_text())
    assert set(learned) == {"lsh", "itq", "sh"} and learned != pixels


def test_query_grid_marks_results_by_the_metrics_rule(tmp_path):
    from hashsdk.train.data import ImageSet
    from hashsdk.train.report import QUERY, RIGHT, WRONG, query_figure, query_rows

    # multi-label: sharing any one label is right (the metrics' rule), sharing none is wrong
    labels = np.array([[1, 1, 0], [1, 0, 0], [0, 0, 1], [1, 1, 0]], np.uint8)
    data = ImageSet(np.zeros((4, 8, 8, 3), np.uint8), labels, np.zeros(4, bool),
                    ("a", "b", "c"), "filelist")
    (row,) = query_rows(data, [0], [[1, 2, 3]], [[2, 5, 0]])
    assert [colour for _, _, colour in row] == [QUERY, RIGHT, WRONG, RIGHT]
    assert [caption for _, caption, _ in row] == ["query\na+b", "a\nd = 2", "c\nd = 5",
                                                  "a+b\nd = 0"]
    query_figure(tmp_path / "q.png", data, [0], [[1, 2, 3]], [[2, 5, 0]])
    assert (tmp_path / "q.png").stat().st_size > 1000
