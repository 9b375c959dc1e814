"""benchmarks/retrieval.py's options reach the runs' configs and the printed command."""

import importlib.util
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "retrieval.py"


@pytest.fixture(scope="module")
def retrieval():
    spec = importlib.util.spec_from_file_location("retrieval_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up by name
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def parse(retrieval, monkeypatch, *argv):
    monkeypatch.setattr(sys, "argv", ["retrieval.py", *argv])
    return retrieval.parse_args()


def test_overfit_regime_options_reach_config_and_command(retrieval, monkeypatch):
    args = parse(retrieval, monkeypatch, "--bits", "48", "--seeds", "0", "--epochs", "100",
                 "--batch-size", "32", "--augment", "off", "--train-per-class", "100",
                 "--setting", "entropy:0.1:0.5:separate")
    cfg = retrieval.seed_config(args, seed=1)
    assert cfg.hash.batch_size == 32 and cfg.hash.seed == 1 and cfg.hash.epochs == 100
    assert cfg.data.train_per_class == 100
    cmd = retrieval.command(args)
    assert "--batch-size 32" in cmd and "--augment off" in cmd
    assert "--train-per-class 100" in cmd and "--setting entropy:0.1:0.5:separate" in cmd
    # the command, parsed again, gives the same configuration
    again = parse(retrieval, monkeypatch, *cmd.split()[2:])
    assert retrieval.seed_config(again, seed=1) == cfg


def test_default_batch_size_is_left_out_of_the_command(retrieval, monkeypatch):
    args = parse(retrieval, monkeypatch, "--bits", "12")
    assert retrieval.seed_config(args, seed=0).hash.batch_size == 128
    assert "--batch-size" not in retrieval.command(args)


@pytest.mark.parametrize("argv, message", [
    (["--batch-size", "1"], "--batch-size must be at least 2"),
    (["--train-per-class", "0"], "--train-per-class must be at least 1"),
    (["--setting", "entropy:0.1:0.5"], "expected LOSS:LAMBDA:RATIO:BN"),
    (["--setting", "entropy:0.1:0.5:both"], "fake_bn must be one of"),
])
def test_bad_options_are_refused_by_name(retrieval, monkeypatch, capsys, argv, message):
    with pytest.raises(SystemExit):
        parse(retrieval, monkeypatch, *argv)
    assert message in capsys.readouterr().err
