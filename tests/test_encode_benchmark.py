"""benchmarks/encode.py --flip-average: a trained checkpoint measured as flip averaging encodes
it, its weights and its run's protocol as they were."""

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import load_benchmark

from hashsdk import HashsdkError
from hashsdk.train import checkpoint
from hashsdk.train.model import KIND, HashNet, create_model


@pytest.fixture(scope="module")
def encode_bench():
    return load_benchmark("encode")


def run_checkpoint(run: Path, **model_options) -> Path:
    """A cnn checkpoint at run/model/checkpoint.pt and a split.npz in run/, as a run lays
    them out."""
    torch.manual_seed(0)
    model = create_model("cnn", 16, **model_options)
    (run / "model").mkdir(parents=True)
    np.savez(run / "split.npz", query=np.arange(3))
    path = run / "model" / "checkpoint.pt"
    checkpoint.save(path, kind=KIND, model_args=model.model_args, state_dict=model.state_dict(),
                    config={"data": {"dataset": "synthetic"}, "hash": {"loss": "pairwise"}})
    return path


def test_flip_averaged_turns_the_setting_on_and_keeps_weights_and_split(encode_bench,
                                                                        tmp_path):
    path = run_checkpoint(tmp_path / "run")
    out = encode_bench.flip_averaged(path, tmp_path)
    flipped, ckpt = HashNet.from_checkpoint(out)
    plain, _ = HashNet.from_checkpoint(path)
    assert flipped.flip_average and not plain.flip_average
    assert ckpt["config"]["hash"] == {"loss": "pairwise", "flip_average": True}
    # the run's split travels beside it, so calibration and the INT8 check read its protocol
    assert np.array_equal(np.load(tmp_path / "split.npz")["query"], np.arange(3))
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        want = (plain.eval()(x) + plain(x.flip(-1))) / 2
        assert torch.allclose(flipped.eval()(x), want, atol=1e-6)


def test_flip_averaged_refuses_mirror_invariant_features(encode_bench, tmp_path):
    path = run_checkpoint(tmp_path / "run", mirror_invariant=True)
    with pytest.raises(HashsdkError, match="already mirror-invariant"):
        encode_bench.flip_averaged(path, tmp_path)
