"""benchmarks/heads.py: heads of other code lengths on a fine-tuned run's backbone, and the
claim's pairing of runs with and without fakes."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import load_benchmark
from test_backbones import write_photo_folder

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def heads():
    return load_benchmark("heads")


def _row(seed, fakes, ap, bits=12, smoothing=0.0, quantization=1.0, mirror=True):
    return dict(bits=bits, seed=seed, fakes=fakes, ap=ap, map_by_row=float(np.mean(ap)),
                mirror_invariant=mirror, label_smoothing=smoothing, quantization=quantization)


def test_the_claim_pairs_each_seeds_runs_at_the_chosen_setting_only(heads):
    rng = np.random.default_rng(0)
    base = [rng.random(50) for _ in range(2)]
    rows = [_row(0, False, base[0]), _row(0, True, base[0] + 0.02),
            _row(1, False, base[1]), _row(1, True, base[1] - 0.01),
            # another setting and plain features: never paired with the chosen rows
            _row(1, True, base[1] + 0.5, smoothing=0.1, quantization=0.1),
            _row(0, True, base[0] + 0.5, mirror=False)]
    claims = heads.claim_rows(rows, dict(label_smoothing=0.0, quantization=1.0))
    per_seed = {c["seed"]: c for c in claims}
    assert per_seed[0]["difference"] == pytest.approx(0.02)
    assert per_seed[1]["difference"] == pytest.approx(-0.01)
    assert per_seed[0]["standard_error"] == pytest.approx(0.0, abs=1e-12)  # a constant gap
    mean = per_seed["mean of 2"]
    assert mean["difference"] == pytest.approx(0.005)
    # a seed without its pair adds no row
    assert heads.claim_rows(rows[:3], dict(label_smoothing=0.0, quantization=1.0)) == \
        [c for c in claims if c["seed"] == 0]


def test_heads_of_two_lengths_train_on_the_runs_backbone_and_share_its_features(tmp_path,
                                                                                heads):
    write_photo_folder(tmp_path / "photos", 10)
    (tmp_path / "run.toml").write_text(
        "[data]\nqueries_per_class = 2\ntrain_per_class = 8\n"
        f"cache_dir = '{tmp_path / 'cache'}'\nroot = '{tmp_path / 'photos'}'\n"
        "dataset = 'imagefolder'\n"
        "[hash]\nbits = 16\nepochs = 1\nbatch_size = 8\ndevice = 'cpu'\nloss = 'orthohash'\n"
        "label_smoothing = 0.1\nbackbone = 'timm/test_resnet'\n")
    done = subprocess.run(
        [str(BIN / "hashsdk-train"), "hash", "--config", str(tmp_path / "run.toml"),
         "--run-dir", str(tmp_path / "run"), "--image-size", "32", "--quiet"],
        capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    run = tmp_path / "run" / "hash-nofakes"
    rows = [heads.head_row(run, bits, True, 0.0, 1.0) for bits in (8, 24)]
    # one feature pass (mirror-invariant) of the images served both lengths
    assert len(list((tmp_path / "cache").glob("features-images-*.npy"))) == 1
    tuned = torch.load(run / "checkpoint.pt", weights_only=True)["state_dict"]
    for row, bits in zip(rows, (8, 24), strict=True):
        out = heads.head_dir(run, bits, True, 0.0, 1.0)
        saved = json.loads((out / "config.json").read_text())["hash"]
        assert (saved["frozen"], saved["mirror_invariant"], saved["bits"]) == (True, True, bits)
        assert (saved["label_smoothing"], saved["quantization"], saved["loss"]) == \
            (0.0, 1.0, "orthohash")
        assert saved["pretrained"] == str(run / "checkpoint.pt")
        head = torch.load(out / "checkpoint.pt", weights_only=True)["state_dict"]
        for key, value in tuned.items():
            if key.startswith("features."):
                assert torch.equal(head[key], value), key  # the fine-tuned backbone, as is
        assert head["hash.weight"].shape[0] == bits
        assert row["map_by_row"] == pytest.approx(
            json.loads((out / "eval.json").read_text())["map"], abs=1e-3)
        assert (row["bits"], row["fakes"], row["finetune_bits"]) == (bits, False, 16)
        assert row["head_minutes"] > 0
