"""The stage runner (train/stages.py): what runs, what is skipped, and what an old run keeps."""

import json
from pathlib import Path

import pytest
from conftest import write_fashion_like

pytest.importorskip("torch")

from hashsdk.train import config  # noqa: E402
from hashsdk.train.stages import Pipeline, Stage, run_stages  # noqa: E402


def stub_stages(run_dir: Path, calls: list[str], settings: dict | None = None,
                reuse: bool = False) -> list[Stage]:
    """a -> b -> c, and d on its own; each writes its file and records that it ran."""
    def maker(name: str):
        def run() -> None:
            calls.append(name)
            (run_dir / f"{name}.out").write_text(name)
        return run
    s = settings or {}
    return [Stage("a", {"x": {"v": s.get("a", 1)}}, [], ["a.out"], maker("a")),
            Stage("b", {"x": {"v": s.get("b", 1)}}, ["a"], ["b.out"], maker("b"),
                  (lambda: True) if reuse else None),
            Stage("c", {}, ["b"], ["c.out"], maker("c")),
            Stage("d", {"x": {"v": s.get("d", 1)}}, [], ["d.out"], maker("d"))]


def test_second_run_skips_and_a_change_reruns_exactly_downstream(tmp_path):
    calls: list[str] = []
    assert set(run_stages(stub_stages(tmp_path, calls), tmp_path, log=print).values()) == {"ran"}
    assert calls == ["a", "b", "c", "d"]
    calls.clear()
    assert set(run_stages(stub_stages(tmp_path, calls), tmp_path).values()) == {"skipped"}
    assert calls == []
    run_stages(stub_stages(tmp_path, calls, {"b": 2}), tmp_path)
    assert calls == ["b", "c"]  # b's setting changed: b and what reads it, not a or d
    calls.clear()
    (tmp_path / "d.out").unlink()  # an interrupted stage runs again
    run_stages(stub_stages(tmp_path, calls, {"b": 2}), tmp_path)
    assert calls == ["d"]


def test_retired_keys_in_a_stamp_do_not_count(tmp_path):
    calls: list[str] = []
    stages = [Stage("h", {"hash": {"bits": 12}}, [], ["h.out"],
                    lambda: (calls.append("h"), (tmp_path / "h.out").write_text("h")))]
    run_stages(stages, tmp_path)
    stamp = tmp_path / "stages" / "h.json"
    saved = json.loads(stamp.read_text())
    saved["settings"]["hash"]["num_workers"] = 4  # written before the key was retired
    stamp.write_text(json.dumps(saved))
    assert run_stages(stages, tmp_path) == {"h": "skipped"} and calls == ["h"]
    saved["settings"]["hash"]["bits"] = 24  # a live key still counts
    stamp.write_text(json.dumps(saved))
    assert run_stages(stages, tmp_path) == {"h": "ran"}


def test_a_run_without_stamps_is_adopted_only_where_nothing_upstream_reran(tmp_path):
    calls: list[str] = []
    run_stages(stub_stages(tmp_path, calls), tmp_path)
    for stamp in (tmp_path / "stages").iterdir():  # as made by hand, or before stamps
        stamp.unlink()
    calls.clear()
    status = run_stages(stub_stages(tmp_path, calls, reuse=True), tmp_path)
    # a has no way to check its files: it reruns; so b may not adopt what it finds
    assert calls == ["a", "b", "c", "d"] and status["b"] == "ran"
    for stamp in (tmp_path / "stages").iterdir():
        stamp.unlink()
    calls.clear()
    stages = stub_stages(tmp_path, calls, reuse=True)
    stages[0].reuse = lambda: True
    status = run_stages(stages, tmp_path)
    assert status == {"a": "skipped", "b": "skipped", "c": "ran", "d": "ran"}
    assert (tmp_path / "stages" / "b.json").exists()  # adopted: stamped from now on
    calls.clear()
    assert set(run_stages(stub_stages(tmp_path, calls), tmp_path).values()) == {"skipped"}


def tiny_pipeline(tmp_path: Path, **hash_overrides) -> Pipeline:
    if not (tmp_path / "data").exists():
        (tmp_path / "data").mkdir()
        write_fashion_like(tmp_path / "data")
    cfg = config.from_dict({
        "data": {"dataset": "fashion-mnist", "root": str(tmp_path / "data"),
                 "queries_per_class": 3, "train_per_class": 10,
                 "cache_dir": str(tmp_path / "cache")},
        "gan": {"steps": 2, "batch_size": 8, "width": 8, "sample_every": 1, "device": "cpu"},
        "hash": dict({"bits": 12, "epochs": 1, "batch_size": 20, "device": "cpu"},
                     **hash_overrides)})
    return Pipeline.open(tmp_path / "run", cfg, progress=False)


def add_retired_key(path: Path, *keys: str) -> None:
    """Writes hash.num_workers into a saved config (under ``keys``), as older versions did."""
    saved = json.loads(path.read_text())
    node = saved
    for key in keys:
        node = node[key]
    node["hash"]["num_workers"] = 2
    path.write_text(json.dumps(saved))


def test_ablation_reuses_old_runs_that_hold_a_retired_key(tmp_path):
    p = tiny_pipeline(tmp_path, lam=0.5)
    first = run_stages(p.ablation(), p.run_dir, log=lambda _: None)
    assert set(first.values()) == {"ran"}
    run = p.run_dir
    # the without-fakes run keeps the fake settings at their defaults
    nofakes = json.loads((run / "hash-nofakes" / "config.json").read_text())["hash"]
    assert nofakes["fakes"] is None and nofakes["lam"] == config.HashConfig().lam
    assert json.loads((run / "hash-fakes" / "config.json").read_text())["hash"]["lam"] == 0.5
    mtimes = {n: (run / n / "checkpoint.pt").stat().st_mtime_ns
              for n in ("hash-fakes", "hash-nofakes")}

    # stamps and configs written before hash.num_workers was retired: all reused
    for name in ("hash-fakes", "hash-nofakes"):
        add_retired_key(run / "stages" / f"{name}.json", "settings")
        add_retired_key(run / name / "config.json")
    again = run_stages(tiny_pipeline(tmp_path, lam=0.5).ablation(), run, log=lambda _: None)
    assert set(again.values()) == {"skipped"}

    # a run directory from before stamps (benchmarks/retrieval.py's old runs): the GAN and
    # hashing runs are adopted from their saved configs; only the cheap stages run again
    for stamp in (run / "stages").iterdir():
        stamp.unlink()
    old = run_stages(tiny_pipeline(tmp_path, lam=0.5).ablation(), run, log=lambda _: None)
    assert old == {"gan": "skipped", "hash-fakes": "skipped", "hash-nofakes": "skipped",
                   "baselines": "ran", "comparison": "ran"}
    assert {n: (run / n / "checkpoint.pt").stat().st_mtime_ns for n in mtimes} == mtimes

    # a changed setting retrains what it affects, from scratch
    changed = run_stages(tiny_pipeline(tmp_path, lam=0.25).ablation(), run, log=lambda _: None)
    assert {k for k, v in changed.items() if v == "ran"} == {"hash-fakes", "comparison"}
    assert json.loads((run / "hash-fakes" / "config.json").read_text())["hash"]["lam"] == 0.25
