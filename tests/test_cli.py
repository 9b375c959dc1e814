import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import random_packed

BIN = Path(sys.executable).parent


def run(*args, cwd=None):  # noqa: D103
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
    # the schema of search --model: a record per query, its row standing for the image path
    assert [r["query"] for r in result] == [0, 1]
    assert [r["results"][0] for r in result] == [{"id": 1005, "distance": 0, "path": None},
                                                 {"id": 1017, "distance": 0, "path": None}]
    assert all(len(r["results"]) == 3 for r in result)

    text = run("search", tmp_path / "db.hidx", tmp_path / "q.npy", "-k", "2")
    assert text.stdout.splitlines()[:2] == ["query 0", "     0  id 1005"]

    info = run("info", tmp_path / "db.hidx")
    assert "bits:      24" in info.stdout and "codes:     200" in info.stdout


def test_packed_codes_infer_bits(tmp_path, rng):
    np.save(tmp_path / "codes.npy", random_packed(rng, 10, 48))
    assert "10 codes of 48 bits" in run("index", "build", tmp_path / "codes.npy", "-o",
                                        tmp_path / "db.hidx").stdout


@pytest.mark.parametrize("setup, args, message", [
    (None, ["search", "missing.hidx", "q.npy"], "no such index file"),
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


@pytest.mark.parametrize("command", ["hashsdk", "hashsdk-train", "hashsdk-export"])
def test_every_cli_answers_version_and_short_help(command):
    import hashsdk

    version = subprocess.run([str(BIN / command), "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and hashsdk.__version__ in version.stdout
    short = subprocess.run([str(BIN / command), "-h"], capture_output=True, text=True)
    assert short.returncode == 0 and short.stdout.startswith("Usage:")


def test_top_help_names_the_other_two_clis_and_claims_no_training():
    out = run("-h").stdout
    assert "hashsdk-train" in out and "hashsdk-export" in out
    assert "train, export, index and search" not in out


def test_ids_with_a_model_are_refused_not_ignored(tmp_path):
    np.save(tmp_path / "ids.npy", np.arange(3))
    (tmp_path / "m.onnx").write_bytes(b"x")
    done = run("index", "build", "--model", tmp_path / "m.onnx", tmp_path, "-o",
               tmp_path / "db.hidx", "--ids", tmp_path / "ids.npy")
    assert done.returncode == 1 and "--ids applies to CODES.npy" in done.stderr
    assert not (tmp_path / "db.hidx").exists()


def test_encoder_commands_take_device_threads_quiet():
    for args in (["encode"], ["index", "build"], ["search"]):
        out = " ".join(run(*args, "-h").stdout.split())  # help wraps lines
        for flag in ("--device", "--threads", "--quiet", "[default: auto]"):
            assert flag in out, (args, flag)


def _train(*args):
    return subprocess.run([str(BIN / "hashsdk-train"), *map(str, args)], capture_output=True,
                          text=True)


def test_train_help_shows_the_config_defaults():
    from hashsdk.train.config import GanConfig, HashConfig

    out = " ".join(_train("all", "-h").stdout.split())
    for flag, value in [("--lam", HashConfig().lam), ("--fake-bn", HashConfig().fake_bn),
                        ("--bits", HashConfig().bits), ("--gan-steps", GanConfig().steps),
                        ("--epochs", "by the training images' count (60 from scratch, 8 to 60 "
                                     "fine-tuning)")]:
        after = out[out.index(flag + " "):]
        after = after[:after.index(" --", 3)]
        assert f"[default: {value}]" in after, (flag, after)


def test_old_lambda_flag_still_works_and_says_it_is_deprecated(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from hashsdk.train import cli, config

    seen = {}

    def fake_load(path, overrides):  # stop before any data is read: the settings are the test
        seen.update(overrides)
        raise SystemExit(0)

    monkeypatch.setattr(config, "load", fake_load)
    result = CliRunner().invoke(cli.main, ["hash", "--lambda", "0.25", "--run-dir",
                                           str(tmp_path)])
    assert "deprecated" in result.output and "--lam" in result.output
    assert seen["hash"]["lam"] == 0.25
    result = CliRunner().invoke(cli.main, ["hash", "--lambda", "0.25", "--lam", "0.5"])
    assert result.exit_code == 2 and "give one of them" in result.output


def test_backbone_pattern_without_wildcards_matches_a_substring():
    out = _train("backbones", "vit_base_patch16_2").stdout.split()
    assert "timm/vit_base_patch16_224" in out
    assert all("vit_base_patch16_2" in name for name in out)
    shell = _train("backbones", "timm/resnet1?").stdout.split()
    assert "timm/resnet18" in shell and all(len(n) == len("timm/resnet18") for n in shell)


def test_index_kinds_from_the_registry_build_and_search_alike(tmp_path, rng):
    codes = random_packed(rng, 5000, 64)
    np.save(tmp_path / "codes.npy", codes)
    np.save(tmp_path / "q.npy", codes[[3, 4000]])
    found = {}
    for kind in ("flat", "mih"):
        built = run("index", "build", tmp_path / "codes.npy", "-o", tmp_path / f"{kind}.hidx",
                    "--kind", kind)
        assert built.returncode == 0, built.stderr
        assert ("--kind mih" in built.stdout) == (kind == "mih")
        done = run("search", tmp_path / f"{kind}.hidx", tmp_path / "q.npy", "-k", "5",
                   "--json", "--kind", kind)
        assert done.returncode == 0, done.stderr
        found[kind] = json.loads(done.stdout)
    assert found["mih"] == found["flat"]
    assert found["flat"][0]["results"][0] == {"id": 3, "distance": 0, "path": None}
    bad = run("index", "build", tmp_path / "codes.npy", "-o", tmp_path / "x.hidx", "--kind", "ivf")
    assert bad.returncode == 2 and "'ivf' is not one of 'flat', 'mih'" in bad.stderr


def test_what_a_newcomer_types_gets_a_clear_answer(tmp_path, rng):
    np.save(tmp_path / "codes.npy", random_packed(rng, 20, 16))
    assert run("index", "build", "codes.npy", "-o", "db.hidx", cwd=tmp_path).returncode == 0
    (tmp_path / "photo.jpg").write_bytes(b"\xff\xd8\xff")
    done = run("search", "db.hidx", "photo.jpg", cwd=tmp_path)
    assert done.returncode == 1 and "needs the model that built the index, --model" in \
        done.stderr and "pickle" not in done.stderr
    done = run("search", "nope.hidx", "q.npy", cwd=tmp_path)
    assert done.stderr == "Error: nope.hidx: no such index file (hashsdk index build writes " \
                          "one)\n"
    assert run("--version").stdout == "hashsdk 0.1.0\n"
    # a reader that stops early (| head) is no error
    piped = subprocess.run(f"'{BIN / 'hashsdk-train'}' backbones | head -1", shell=True,
                           capture_output=True, text=True)
    assert piped.stdout == "cnn\n" and piped.stderr == ""
    # a typo in the index's name is not a new, empty index
    served = subprocess.run([str(BIN / "hashsdk"), "serve", "photoz.hidx", "--port", "0"],
                            capture_output=True, text=True, cwd=tmp_path)
    assert served.returncode == 1 and "no such index" in served.stderr and "--create" in \
        served.stderr
    assert not (tmp_path / "photoz.hidx").exists()


def test_the_old_lambda_flag_warns_with_its_new_name(tmp_path):
    done = subprocess.run([str(BIN / "hashsdk-train"), "hash", "--lambda", "0.1", "--dataset",
                           "imagefolder", "--root", str(tmp_path / "none")],
                          capture_output=True, text=True)
    warning = done.stderr.splitlines()[0]
    assert "--lambda is deprecated, use --lam" in warning and "lambda_" not in warning


def test_index_build_stores_paths_beside_the_index_and_serve_finds_them(tmp_path, rng):
    # built from one directory, served from another: the paths are the index folder's
    from hashsdk.index import index_file
    from hashsdk.serve import ServedIndex

    (tmp_path / "data" / "photos").mkdir(parents=True)
    (tmp_path / "data" / "photos" / "a.jpg").write_bytes(b"x")
    assert index_file.relative_to_index(tmp_path / "data" / "db.hidx",
                                        tmp_path / "data" / "photos" / "a.jpg") == "photos/a.jpg"
    np.save(tmp_path / "c.npy", random_packed(rng, 1, 16))
    index_file.write(tmp_path / "data" / "db.hidx", 16, random_packed(rng, 1, 16),
                     np.array([0]), 1, ["photos/a.jpg"])
    served = ServedIndex(str(tmp_path / "data" / "db.hidx"))
    assert served.image_file(0) == str(tmp_path / "data" / "photos" / "a.jpg")
    assert served.missing_images() == 0
    served.close()
