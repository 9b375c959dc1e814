"""hashsdk.dedup and ``hashsdk dedup``: pairs and groups against brute force, the precision
calibration, and the command on an index and on a folder."""

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import reference
from click.testing import CliRunner
from PIL import Image

from hashsdk import HammingIndex, HashsdkError
from hashsdk import cli as hcli
from hashsdk import dedup as dd

DATA = Path(__file__).parent / "data"


def planted(n: int, bits: int, seed: int = 0) -> np.ndarray:
    """Random packed codes with chains of near-copies: row 3k+1 is row 3k with one bit
    flipped, row 3k+2 is row 3k+1 with two more."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 256, (n, bits // 8), dtype=np.uint8)
    for k in range(0, n - 2, 3):
        codes[k + 1] = codes[k]
        codes[k + 1, 0] ^= 1
        codes[k + 2] = codes[k + 1]
        codes[k + 2, 1] ^= 3
    return codes


@pytest.mark.parametrize("kind", ["flat", "mih"])
@pytest.mark.parametrize("radius", [0, 1, 3, 20])
def test_pairs_are_every_pair_within_the_radius(kind, radius, monkeypatch):
    monkeypatch.setattr(dd, "QUERY_CHUNK", 7)  # several chunks of queries
    codes = planted(60, 32)
    pairs, dist = dd.find_pairs(codes, 32, radius, kind=kind)
    want = reference.pairs_within(codes, 32, radius)
    assert [(int(i), int(j), int(d)) for (i, j), d in zip(pairs, dist, strict=True)] == want


def test_progress_reports_every_chunk(monkeypatch):
    monkeypatch.setattr(dd, "QUERY_CHUNK", 25)
    seen = []
    dd.find_pairs(planted(60, 32), 32, 2, progress=lambda done, n: seen.append((done, n)))
    assert seen == [(25, 60), (50, 60), (60, 60)]


def test_groups_are_the_connected_components():
    rng = np.random.default_rng(1)
    for n, m in ((1, 0), (10, 0), (50, 30), (200, 150), (40, 400)):
        pairs = np.sort(rng.integers(0, n, (m, 2)), axis=1)
        pairs = pairs[pairs[:, 0] != pairs[:, 1]]
        got = [g.tolist() for g in dd.group(n, pairs)]
        assert got == reference.connected_groups(n, pairs.tolist())


def test_chains_join_into_one_group():
    codes = planted(9, 32)
    pairs, _ = dd.find_pairs(codes, 32, 2)  # 3k ~ 3k+1 (1 bit), 3k+1 ~ 3k+2 (2 bits)
    assert [g.tolist() for g in dd.group(9, pairs)] == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]


def test_bad_input_is_refused():
    with pytest.raises(HashsdkError, match="packed uint8"):
        dd.find_pairs(np.zeros((3, 5), np.uint8), 32, 1)
    with pytest.raises(HashsdkError, match="radius must be an integer >= 0"):
        dd.find_pairs(np.zeros((3, 4), np.uint8), 32, -1)
    with pytest.raises(HashsdkError, match="kind must be"):
        dd.find_pairs(np.zeros((3, 4), np.uint8), 32, 1, kind="ivf")


def colour_encoder(images):
    """A stand-in encoder: 16 outputs from the mean colour of each quarter of the image,
    so that mild edits keep the code and different images differ."""
    out = []
    for im in images:
        a = np.asarray(im.convert("RGB").resize((32, 32)), np.float32) / 255
        quarters = [a[:16, :16], a[:16, 16:], a[16:, :16], a[16:, 16:]]
        feats = np.concatenate([q.mean(axis=(0, 1)) for q in quarters] +
                               [[a.mean()] * 4])
        out.append(feats - 0.5)
    return np.array(out, np.float32)


def test_radius_for_precision_takes_the_largest_radius_that_reaches_it():
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8))
              for _ in range(12)]
    radius, curve = dd.radius_for_precision(colour_encoder, images, 16, 0.5)
    p = np.array(curve["precision"])
    assert curve["copies"] == 12 * 10 and curve["originals"] == 12
    assert radius >= 0 and p[radius] >= 0.5
    assert all(p[r] < 0.5 for r in range(radius + 1, 17) if curve["recall"][r] > 0)
    assert np.all(np.diff(curve["recall"]) >= 0)  # a larger radius finds no fewer
    with pytest.raises(HashsdkError, match="in \\(0, 1\\]"):
        dd.radius_for_precision(colour_encoder, images, 16, 1.5)


def write_index(tmp_path, codes, paths=None):
    idx = HammingIndex(32)
    idx.add(codes, ids=np.arange(100, 100 + len(codes)))
    path = tmp_path / "db.hidx"
    idx.save(path, paths=paths)
    return path


def test_cli_groups_an_index_into_json_and_csv(tmp_path):
    codes = planted(30, 32)
    path = write_index(tmp_path, codes)
    out = tmp_path / "dups.json"
    result = CliRunner().invoke(hcli.main, ["dedup", str(path), "--radius", "2", "-o",
                                            str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    want = reference.connected_groups(30, [(i, j) for i, j, _ in
                                           reference.pairs_within(codes, 32, 2)])
    assert [[m["id"] - 100 for m in g["members"]] for g in doc["members"]] == want
    assert doc["groups"] == len(want) and doc["radius"] == 2 and doc["bits"] == 32
    first = doc["members"][0]["members"]
    assert [m["distance"] for m in first] == [0, 1, 3]  # to the group's first member
    rows = list(csv.DictReader((tmp_path / "dups.csv").open()))
    assert len(rows) == sum(len(g) for g in want)
    assert rows[0] == {"group": "0", "id": "100", "path": "", "distance": "0"}
    assert f"{len(want)} groups" in result.output
    mih = CliRunner().invoke(hcli.main, ["dedup", str(path), "--radius", "2", "-o",
                                         str(tmp_path / "mih.json"), "--search", "mih",
                                         "--quiet"])
    assert mih.exit_code == 0, mih.output
    assert json.loads((tmp_path / "mih.json").read_text())["members"] == doc["members"]


def test_cli_refuses_what_it_cannot_do(tmp_path):
    path = write_index(tmp_path, planted(6, 32))
    runner = CliRunner()
    both = runner.invoke(hcli.main, ["dedup", str(path), "--radius", "1", "--precision", "0.9"])
    assert both.exit_code != 0 and "one of --radius R and --precision P" in both.output
    prec = runner.invoke(hcli.main, ["dedup", str(path), "--precision", "0.9"])
    assert prec.exit_code != 0 and "an index holds codes" in prec.output
    folder = tmp_path / "imgs"
    folder.mkdir()
    nomodel = runner.invoke(hcli.main, ["dedup", str(folder), "--radius", "1"])
    assert nomodel.exit_code != 0 and "needs --model" in nomodel.output


def photo_folder(tmp_path: Path, n: int, copies: dict[str, str], seed: int) -> Path:
    """tmp_path/photos: n random 40 px PNGs p0.png ... and exact copies (original -> name)."""
    rng = np.random.default_rng(seed)
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(
            folder / f"p{i}.png")
    for original, name in copies.items():
        shutil.copy(folder / original, folder / name)
    return folder


def test_cli_finds_the_copies_in_a_folder(tmp_path):
    """A folder with exact copies: grouped with their originals by an exported model (the
    pinned v0.1 cnn), each path named."""
    folder = photo_folder(tmp_path, 8, {"p3.png": "p3-copy.png", "p5.png": "z5-copy.png"}, 2)
    out = tmp_path / "d.json"
    result = CliRunner().invoke(hcli.main, ["dedup", str(folder), "--model",
                                            str(DATA / "v0.1-cnn-rgb-bicubic.onnx"),
                                            "--radius", "0", "-o", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    groups = [sorted(Path(m["path"]).name for m in g["members"])
              for g in json.loads(out.read_text())["members"]]
    # the pinned model is small and gives many images one code; a copy's code is always its
    # original's, so each copy shares a group with its original
    for copy, original in (("p3-copy.png", "p3.png"), ("z5-copy.png", "p5.png")):
        assert any(copy in g and original in g for g in groups)
    assert all((folder / name).exists() for g in groups for name in g)


def colour_doc(groups: list[list[tuple]]) -> dict:
    """A dedup report whose members' paths name their colour: groups of (r, g, b) tuples."""
    return {"groups": len(groups), "members": [
        {"members": [{"id": i, "path": ",".join(map(str, c)), "distance": i}
                     for i, c in enumerate(g)]} for g in groups]}


def solid(path: str) -> Image.Image:
    """A 30 x 60 image of the colour its path names; "bad" cannot be read."""
    if path == "bad":
        raise OSError("unreadable")
    return Image.new("RGB", (30, 60), tuple(int(v) for v in path.split(",")))


def test_the_sheet_draws_a_row_a_group_each_member_in_its_cell():
    from hashsdk import dedup_sheet as ds

    red, green, blue, grey = (255, 0, 0), (0, 255, 0), (0, 0, 255), (90, 90, 90)
    doc = colour_doc([[red, green, blue], [grey, red], [blue, blue]])
    doc["members"][1]["members"][1]["path"] = "bad"
    sheet = ds.contact_sheet(doc, solid, groups=2, per_row=4, thumb=40)
    row_h = 40 + ds.CAPTION + ds.GAP
    # 2 of the 3 groups; as wide as the longest shown (3 cells, below per_row's 4)
    assert sheet.size == (ds.LABEL + 3 * (40 + ds.GAP), 2 * row_h)

    def centre(row, k):
        return sheet.getpixel((ds.LABEL + k * (40 + ds.GAP) + 20, row * row_h + 20))

    assert [centre(0, k) for k in range(3)] == [red, green, blue]
    assert centre(1, 0) == grey and centre(1, 1) == ds.MISSING  # the unreadable member
    assert centre(1, 2) == ds.BACKGROUND
    # a 30 x 60 image keeps its aspect: 20 px wide in a 40 px cell, centred
    assert sheet.getpixel((ds.LABEL + 3, 20)) == ds.BACKGROUND


def test_a_long_group_ends_in_a_cell_that_counts_the_rest():
    from hashsdk import dedup_sheet as ds

    colours = [(10 * i, 0, 0) for i in range(6)]
    sheet = ds.contact_sheet(colour_doc([colours]), solid, per_row=3, thumb=40)
    cells = [sheet.getpixel((ds.LABEL + k * (40 + ds.GAP) + 20, 20)) for k in range(3)]
    assert cells[:2] == colours[:2] and cells[2] == ds.BACKGROUND  # "+4 more" drawn there
    with pytest.raises(HashsdkError, match="needs the images' paths"):
        ds.contact_sheet({"groups": 1, "members": [{"members": [
            {"id": 0, "path": None, "distance": 0}]}]}, solid)
    with pytest.raises(HashsdkError, match="no groups"):
        ds.contact_sheet({"groups": 0, "members": []}, solid)


def test_cli_pictures_a_folders_groups_and_refuses_an_index_without_paths(tmp_path):
    folder = photo_folder(tmp_path, 6, {"p2.png": "p2-copy.png"}, 3)
    out, sheet = tmp_path / "d.json", tmp_path / "groups.png"
    result = CliRunner().invoke(hcli.main, ["dedup", str(folder), "--model",
                                            str(DATA / "v0.1-cnn-rgb-bicubic.onnx"),
                                            "--radius", "0", "-o", str(out), "--sheet",
                                            str(sheet), "--sheet-groups", "1", "--quiet"])
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    picture = Image.open(sheet)
    assert picture.height == 96 + 28 + 4 and "wrote" in result.output  # one group's row
    first = Image.open(doc["members"][0]["members"][0]["path"]).convert("RGB")
    want = np.asarray(first.resize((96, 96), Image.BILINEAR), np.float32)
    cell = np.asarray(picture.convert("RGB"), np.float32)[:96, 112:208]
    assert np.abs(cell - want).mean() < 2  # the group's first image, in its cell

    index = write_index(tmp_path, planted(9, 32))  # saved without paths
    refused = CliRunner().invoke(hcli.main, ["dedup", str(index), "--radius", "2", "-o",
                                             str(tmp_path / "i.json"), "--sheet",
                                             str(tmp_path / "i.png")])
    assert refused.exit_code != 0 and "needs the images' paths" in refused.output
    assert not (tmp_path / "i.json").exists() and not (tmp_path / "i.png").exists()
