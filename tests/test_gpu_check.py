"""The GPU suite's smoke mode: every part of ``make gpu-check`` on the CPU, on tiny data."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("onnx")

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def run_suite(run_root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--run-root", str(run_root),
                           *args], capture_output=True, text=True, timeout=1200)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    root = tmp_path_factory.mktemp("gpu-check")
    # a budget no smoke run reaches: which runs happen must not hang on the machine's load
    # (the budget's cut is tested on its own, below)
    done = run_suite(root, "--budget-s", "3600")
    assert done.returncode == 0, done.stdout + done.stderr
    results = root / "results"
    return {p.stem.removeprefix("cpu-"): json.loads(p.read_text())
            for p in results.glob("cpu-*.json")}, results, done.stdout


def test_smoke_runs_every_part_and_writes_its_results(smoke):
    parts, results, _ = smoke
    assert set(parts) == {"epoch-time", "gan", "overfit", "export", "recipe", "pretrained",
                          "extras"}
    for part in parts.values():
        assert part["device"].startswith("CPU") and part["seconds"] > 0
        assert part["command"].startswith("python benchmarks/gpu_check.py --smoke")
    assert (results / "cpu-gan-fakes.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = (results / "cpu-check.md").read_text()
    assert "| resnet18 | fp32 |" in summary and "noaug-seed1-fakes" in summary


def test_epoch_time_has_one_row_per_backbone_on_a_cpu(smoke):
    rows = smoke[0]["epoch-time"]["rows"]
    # "auto" and "off" are both fp32 on a CPU: one row each, not two alike
    assert [(r["backbone"], r["amp"]) for r in rows] == [("cnn", "fp32"), ("resnet18", "fp32")]
    assert all(r["epoch_seconds"] > 0 and r["images"] == 200 for r in rows)


def test_overfit_rows_pair_with_and_without_fakes_per_seed(smoke):
    report = smoke[0]["overfit"]
    rows = {r["run"]: r for r in report["rows"]}
    assert set(rows) == {f"noaug-seed{s}-{k}" for s in (0, 1) for k in ("fakes", "nofakes")}
    for row in rows.values():
        assert row["augment"] is False and row["fakes"] == row["run"].endswith("-fakes")
        assert row["gap"] == pytest.approx(row["map_seen"] - row["map_unseen"])
        assert 0 <= row["map_unseen"] <= 1 and 0 <= row["map_seen"] <= 1
    assert set(report["fakes_minus_nofakes_per_seed"]) == {"noaug-seed0-fakes",
                                                           "noaug-seed1-fakes"}
    assert report["fakes_minus_nofakes"]["queries"] == 30  # 3 queries a class
    # the fakes as a user's run has them: the config's defaults
    from hashsdk.train.config import HashConfig

    assert report["fake_setting"] == {k: getattr(HashConfig(), k)
                                      for k in ("fake_loss", "lam", "fake_ratio", "fake_bn")}
    assert all(r["augment"] for r in smoke[0]["extras"]["rows"])


def test_export_verifies_the_trained_checkpoint_on_the_cpu(smoke):
    export = smoke[0]["export"]
    assert export["checkpoint"] == "noaug-seed0-fakes/checkpoint.pt"
    assert export["verify"]["passed"] and export["verify"]["bit_agreement"] >= 0.999
    assert export["onnx_bytes"] > 0


def test_a_failed_part_is_reported_and_the_others_still_run(tmp_path):
    # export needs the overfit part's checkpoint: alone it fails, and the GAN part still runs
    done = run_suite(tmp_path, "--parts", "gan", "export")
    assert done.returncode != 0
    assert "parts failed: export" in done.stderr
    assert "export needs the overfit part's checkpoint" in done.stderr
    assert (tmp_path / "results" / "cpu-gan.json").exists()
    assert not (tmp_path / "results" / "cpu-export.json").exists()


def test_extras_stop_at_the_time_budget(tmp_path):
    done = run_suite(tmp_path, "--parts", "extras", "--budget-s", "0")
    assert done.returncode == 0, done.stderr
    assert "budget of 0 s reached; aug-seed0-nofakes and after skipped" in done.stdout
    assert not (tmp_path / "results" / "cpu-extras.json").exists()


def test_cuda_without_a_gpu_is_a_clear_error(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    done = run_suite(tmp_path, "--device", "cuda")
    assert done.returncode != 0
    assert "torch sees no CUDA GPU" in done.stderr and "SMOKE=1" in done.stderr


def test_recipe_is_chosen_on_a_validation_split_of_the_training_images(smoke):
    report = smoke[0]["recipe"]
    rows = {r["candidate"]: r for r in report["rows"]}
    assert list(rows)[:4] == ["cpu-best", "pairwise", "csq", "orthohash"]
    assert rows["cpu-best"]["changes"] == dict(loss="orthohash", label_smoothing=0.1,
                                               backbone_lr=1.0, freeze_backbone_epochs=1)
    assert report["validation"] == dict(queries=50, train=150)  # 5 of 20 a class held out
    best = max(rows.values(), key=lambda r: r["map"])
    assert report["chosen"] == best["candidate"] and report["chosen_changes"] == best["changes"]
    # each refinement starts from the best candidate before it
    first = max(list(rows.values())[:4], key=lambda r: r["map"])
    refined = "+2x-epochs" if first["candidate"] == "cpu-best" else "+full-lr"  # it has full-lr
    assert list(rows)[4] == first["candidate"] + refined
    assert list(rows)[-1].endswith("+flip") and rows[list(rows)[-1]]["changes"]["flip_average"]
    assert "Recipe, chosen on a validation split" in (smoke[1] / "cpu-check.md").read_text()


def test_pretrained_part_runs_the_table_under_the_chosen_recipe(smoke):
    report = smoke[0]["pretrained"]
    recipe = smoke[0]["recipe"]
    assert report["backbone"] == "timm/tf_efficientnet_lite0"
    assert report["recipe"] == recipe["chosen"]
    assert [(r["bits"], r["seed"], r["fakes"]) for r in report["rows"]] == [
        (b, s, f) for b in (48, 12, 24, 32) for s in (0, 1) for f in (False, True)]
    assert all(0 < r["map"] <= 1 for r in report["rows"])
    by_bits = {x["bits"]: x for x in report["by_bits"]}
    assert sorted(by_bits) == [12, 24, 32, 48]
    for bits, x in by_bits.items():
        maps = [r["map"] for r in report["rows"] if r["bits"] == bits and not r["fakes"]]
        assert x["map_without"] == pytest.approx(sum(maps) / 2) and x["seeds_paired"] == 2
        assert abs(x["fakes_minus_nofakes"]["difference"]) < 1
    assert "| 48 | 2 |" in (smoke[1] / "cpu-check.md").read_text()


def test_a_second_call_reads_back_the_runs_the_first_finished(tmp_path):
    first = run_suite(tmp_path, "--parts", "recipe", "pretrained", "--budget-s", "0")
    assert first.returncode == 0, first.stderr
    # a budget of 0: one candidate and one table run, then nothing more starts
    assert "recipe candidate csq skipped" in first.stdout
    assert "48 bits seed 0 and after skipped" in first.stdout
    second = run_suite(tmp_path, "--parts", "pretrained", "--budget-s", "0")
    assert "48bits-seed0-nofakes: mAP" in second.stdout and "read back" in second.stdout
    table = json.loads((tmp_path / "results" / "cpu-pretrained.json").read_text())
    assert [r["run"] for r in table["rows"]] == ["48bits-seed0-nofakes", "48bits-seed0-fakes"]
