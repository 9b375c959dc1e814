import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import random_packed

BIN = Path(sys.executable).parent


def run(*args, cwd=None):
    return subprocess.run([str(BIN / "hashsdk"), *map(str, args)], capture_output=True,
                          text=True, cwd=cwd)


def test_build_search_info(tmp_path, rng):
    outputs = rng.standard_normal((200, 24)).astype(np.float32)  # network outputs
    np.save(tmp_path / "codes.npy", outputs)
    np.save(tmp_path / "ids.npy", np.arange(1000, 1200))
    np.save(tmp_path / "q.npy", outputs[[5, 17]])
    built = run("index", "build", tmp_path / "codes.npy", "-o", tmp_path / "db.hidx",
                "--ids", tmp_path / "ids.npy")
    assert built.returncode == 0, built.stderr
    assert "200 codes of 24 bits" in built.stdout

    found = run("search", tmp_path / "db.hidx", tmp_path / "q.npy", "-k", "3", "--json")
    assert found.returncode == 0, found.stderr
    result = json.loads(found.stdout)
    assert [row[0] for row in result["ids"]] == [1005, 1017]
    assert [row[0] for row in result["distances"]] == [0, 0]

    text = run("search", tmp_path / "db.hidx", tmp_path / "q.npy", "-k", "2")
    assert text.stdout.splitlines()[0].startswith("query 0: 1005:0 ")

    info = run("info", tmp_path / "db.hidx")
    assert "bits:      24" in info.stdout and "codes:     200" in info.stdout


def test_packed_codes_infer_bits(tmp_path, rng):
    np.save(tmp_path / "codes.npy", random_packed(rng, 10, 48))
    assert "10 codes of 48 bits" in run("index", "build", tmp_path / "codes.npy", "-o",
                                        tmp_path / "db.hidx").stdout


@pytest.mark.parametrize("setup, args, message", [
    (None, ["search", "missing.hidx", "q.npy"], "No such file"),
    ("garbage", ["search", "db.hidx", "q.npy"], "not a hashsdk index"),
    ("pickle", ["index", "build", "obj.npy", "-o", "db.hidx"], "not a readable .npy"),
    ("wrong-width", ["search", "db.hidx", "q.npy"], "expected packed uint8 codes of width 2"),
    (None, ["index", "build", "nope.npy", "-o", "db.hidx"], "codes file not found"),
])
def test_user_errors_exit_cleanly(tmp_path, setup, args, message):
    if setup == "garbage":
        (tmp_path / "db.hidx").write_bytes(b"not an index at all" * 10)
        np.save(tmp_path / "q.npy", np.zeros((1, 2), np.uint8))
    if setup == "pickle":
        np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    if setup == "wrong-width":
        np.save(tmp_path / "codes.npy", np.zeros((3, 2), np.uint8))
        assert run("index", "build", "codes.npy", "-o", "db.hidx", cwd=tmp_path).returncode == 0
        np.save(tmp_path / "q.npy", np.zeros((1, 5), np.uint8))
    result = run(*args, cwd=tmp_path)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr
