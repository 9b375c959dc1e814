"""benchmarks/claim_seeds.py: a seed's paired difference read from its two runs, and the runs'
loss checked against the one named."""

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import load_benchmark

pytest.importorskip("torch")



@pytest.fixture(scope="module")
def claim_seeds():
    return load_benchmark("claim_seeds")


def write_run(path: Path, loss: str, seed: int, ap: np.ndarray, seconds: list[float],
              bits: int = 48, size: int | None = None, **hash_keys) -> None:
    path.mkdir(parents=True)
    cfg = {"hash": {"loss": loss, "seed": seed, "bits": bits, **hash_keys}}
    if size is not None:
        cfg["data"] = {"image_size": size}
    (path / "config.json").write_text(json.dumps(cfg))
    (path / "eval.json").write_text(json.dumps({"map": float(ap.mean())}))
    (path / "history.json").write_text(json.dumps([{"seconds": s} for s in seconds]))
    np.save(path / "ap.npy", ap)


def test_a_seeds_difference_is_fakes_minus_nofakes_over_the_same_queries(claim_seeds, tmp_path):
    rng = np.random.default_rng(0)
    nofakes = rng.random(200)
    fakes = np.clip(nofakes + rng.normal(0.02, 0.01, 200), 0, 1)
    write_run(tmp_path / "hash-nofakes", "orthohash", 1, nofakes, [60.0, 60.0])
    write_run(tmp_path / "hash-fakes", "orthohash", 1, fakes, [90.0, 600.0, 90.0])  # a pause
    row = claim_seeds.run_seed(tmp_path, "orthohash")
    assert row["seed"] == 1 and row["bits"] == 48 and row["queries"] == 200
    assert row["difference"] == pytest.approx(fakes.mean() - nofakes.mean())
    assert row["nofakes"] == pytest.approx(nofakes.mean())
    assert row["minutes"] == pytest.approx([2.0, 4.5])  # median epoch x epochs
    assert 0 < row["standard_error"] < 0.01


def test_runs_of_another_loss_or_two_seeds_are_refused(claim_seeds, tmp_path):
    ap = np.full(10, 0.5)
    write_run(tmp_path / "a" / "hash-nofakes", "pairwise", 0, ap, [1.0])
    write_run(tmp_path / "a" / "hash-fakes", "pairwise", 0, ap, [1.0])
    with pytest.raises(SystemExit, match="expected loss 'orthohash'"):
        claim_seeds.run_seed(tmp_path / "a", "orthohash")
    write_run(tmp_path / "b" / "hash-nofakes", "orthohash", 0, ap, [1.0])
    write_run(tmp_path / "b" / "hash-fakes", "orthohash", 1, ap, [1.0])
    with pytest.raises(SystemExit, match="other values of seed"):
        claim_seeds.run_seed(tmp_path / "b", "orthohash")
    write_run(tmp_path / "c" / "hash-nofakes", "orthohash", 0, ap, [1.0], bits=12)
    write_run(tmp_path / "c" / "hash-fakes", "orthohash", 0, ap, [1.0], bits=48)
    with pytest.raises(SystemExit, match="other values of bits"):
        claim_seeds.run_seed(tmp_path / "c", "orthohash")


def test_a_pair_of_two_recipes_is_refused_and_the_table_names_the_recipe(claim_seeds,
                                                                         tmp_path):
    ap = np.full(10, 0.5)
    write_run(tmp_path / "a" / "hash-nofakes", "orthohash", 0, ap, [1.0], size=96)
    write_run(tmp_path / "a" / "hash-fakes", "orthohash", 0, ap, [1.0], size=128)
    with pytest.raises(SystemExit, match="other values of image_size"):
        claim_seeds.run_seed(tmp_path / "a", "orthohash")
    for kind in ("nofakes", "fakes"):
        write_run(tmp_path / "b" / f"hash-{kind}", "orthohash", 0, ap, [1.0], size=128,
                  epochs=20, label_smoothing=0.1)
    row = claim_seeds.run_seed(tmp_path / "b", "orthohash")
    assert (row["image_size"], row["epochs"], row["label_smoothing"]) == (128, 20, 0.1)
    text = "\n".join(claim_seeds.markdown([row], [claim_seeds.pool([row])], "orthohash"))
    assert "fine-tuned at 128 px for 20 epochs with label smoothing 0.1 (" in text
    # a row of a results file from before the recipe was kept reads as the recipe of then
    old = {k: v for k, v in row.items() if k not in ("image_size", "epochs", "label_smoothing")}
    text = "\n".join(claim_seeds.markdown([old], [claim_seeds.pool([old])], "orthohash"))
    assert "fine-tuned at 96 px for 8 epochs (" in text


def test_seeds_pool_as_the_mean_difference_with_independent_errors(claim_seeds):
    rows = [dict(bits=12, difference=0.01, standard_error=0.003, nofakes=0.7, fakes=0.71),
            dict(bits=12, difference=-0.002, standard_error=0.004, nofakes=0.72, fakes=0.718)]
    p = claim_seeds.pool(rows)
    assert p["difference"] == pytest.approx(0.004)
    assert p["standard_error"] == pytest.approx(0.005 / 2)  # sqrt(3² + 4²) / 2, in 1e-3
    assert (p["seeds"], p["positive"], p["bits"]) == (2, 1, 12)


def test_earlier_rows_stay_unless_a_run_replaces_them(claim_seeds):
    earlier = [dict(bits=48, seed=0, difference=0.01), dict(bits=12, seed=0, difference=0.02)]
    runs = [dict(bits=48, seed=0, difference=-0.01), dict(bits=24, seed=1, difference=0.0)]
    rows = claim_seeds.merge(earlier, [], runs)
    assert [(r["bits"], r["seed"], r["difference"]) for r in rows] == [
        (12, 0, 0.02), (24, 1, 0.0), (48, 0, -0.01)]  # the run given replaced the earlier row
    with pytest.raises(SystemExit, match="appears twice"):
        claim_seeds.merge([], [dict(bits=24, seed=1)], runs)


def test_a_run_records_its_codewords_and_its_pair_must_agree(claim_seeds, tmp_path):
    ap = np.full(10, 0.5)
    write_run(tmp_path / "a" / "hash-nofakes", "orthohash", 0, ap, [1.0])
    write_run(tmp_path / "a" / "hash-fakes", "orthohash", 0, ap, [1.0])
    # config.json from before hash.codewords: the sylvester rule, the only one then
    assert claim_seeds.run_seed(tmp_path / "a", "orthohash")["codewords"] == "sylvester"
    cfg = tmp_path / "a" / "hash-fakes" / "config.json"
    cfg.write_text(json.dumps({"hash": {"loss": "orthohash", "seed": 0, "bits": 48,
                                        "codewords": "hadamard"}}))
    with pytest.raises(SystemExit, match="other values of codewords"):
        claim_seeds.run_seed(tmp_path / "a", "orthohash")


def test_a_kept_results_file_lists_every_command_once_this_one_last(claim_seeds):
    from _results import commands_with

    assert commands_with({}, "b") == ["b"]
    assert commands_with({"command": "a"}, "b") == ["a", "b"]  # an older file's one command
    assert commands_with({"commands": ["b", "a"]}, "b") == ["a", "b"]  # a repeat moves last
