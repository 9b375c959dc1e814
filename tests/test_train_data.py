import io
import pickle
import struct
import tarfile

import numpy as np
import pytest
from conftest import write_idx

pytest.importorskip("torch")

from hashsdk import HashsdkError  # noqa: E402
from hashsdk.train.config import DataConfig  # noqa: E402
from hashsdk.train.data import (  # noqa: E402
    ImageSet,
    load_dataset,
    make_split,
    read_cifar_batch,
    read_idx,
    validation_split,
)


def test_fashion_mnist_reads_idx_files_and_pads_to_32(tmp_path, rng):
    for split, n in (("train", 60), ("t10k", 30)):
        write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    data = load_dataset(DataConfig(dataset="fashion-mnist", root=str(tmp_path),
                                   cache_dir=str(tmp_path / "cache")), progress=False)
    assert data.images.shape == (90, 32, 32, 1) and data.images.dtype == np.uint8
    assert (data.images[:, :2] == 0).all() and data.is_test.sum() == 30
    raw = read_idx(tmp_path / "train-images-idx3-ubyte.gz")
    assert (data.images[:60, 2:30, 2:30, 0] == raw).all()
    assert data.labels.tolist()[:12] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]


def test_truncated_idx_file_is_refused(tmp_path):
    path = tmp_path / "x-idx3-ubyte"
    path.write_bytes(bytes([0, 0, 8, 3]) + struct.pack(">3I", 10, 28, 28) + b"\0" * 100)
    with pytest.raises(HashsdkError, match="truncated"):
        read_idx(path)


def official_batch(images, labels):
    """The CIFAR-10 python layout: a protocol-2 pickle of a dict with bytes keys."""
    return pickle.dumps({b"batch_label": b"test", b"labels": list(labels),
                         b"data": images.transpose(0, 3, 1, 2).reshape(len(images), -1),
                         b"filenames": [b"x.png"] * len(labels)}, protocol=2)


def test_pickle_batch_loader_reads_the_official_layout(tmp_path, rng):
    images = rng.integers(0, 256, (7, 32, 32, 3), dtype=np.uint8)
    (tmp_path / "data_batch_1").write_bytes(official_batch(images, range(7)))
    x, y = read_cifar_batch(tmp_path / "data_batch_1")
    assert (x == images).all() and y.tolist() == list(range(7))


def test_pickle_batch_loader_refuses_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    (tmp_path / "data_batch_1").write_bytes(pickle.dumps({b"data": Evil(), b"labels": []}))
    with pytest.raises(HashsdkError, match="refusing to load builtins.print"):
        read_cifar_batch(tmp_path / "data_batch_1")


def test_cifar10_from_python_batches(tmp_path, rng):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        images = rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8)
        (folder / name).write_bytes(official_batch(images, np.arange(20) % 10))
    data = load_dataset(DataConfig(dataset="cifar10", root=str(tmp_path),
                                   cache_dir=str(tmp_path / "cache")), progress=False)
    assert data.images.shape == (120, 32, 32, 3) and data.is_test.sum() == 20
    assert data.classes[0] == "airplane"


def test_cifar10_jpeg_archive_layout_and_cache(tmp_path, rng):
    from PIL import Image

    archive = tmp_path / "tiny.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for split in ("train", "test"):
            for cls in ("cat", "dog"):
                for i in range(3):
                    buf = io.BytesIO()
                    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(
                        buf, "PNG")
                    info = tarfile.TarInfo(f"top/{split}/{cls}/{i}.png")
                    info.size = len(buf.getvalue())
                    tar.addfile(info, io.BytesIO(buf.getvalue()))
    cfg = DataConfig(dataset="cifar10", root=str(archive), cache_dir=str(tmp_path / "cache"))
    data = load_dataset(cfg, progress=False)
    assert data.images.shape == (12, 32, 32, 3) and data.classes == ("cat", "dog")
    assert data.is_test.sum() == 6 and list(data.labels[:6]) == [0, 0, 0, 1, 1, 1]
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1
    again = load_dataset(cfg, progress=False)  # from the cache
    assert (again.images == data.images).all() and again.classes == data.classes


def test_missing_dataset_says_where_we_looked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("hashsdk.train.data._candidates", lambda name: [tmp_path / "nowhere"])
    with pytest.raises(HashsdkError, match=r"(?s)not found\. Looked in:.*nowhere.*apt-get"):
        load_dataset(DataConfig(dataset="fashion-mnist"))


def fake_set(n_train=80, n_test=40, classes=4):
    rng = np.random.default_rng(0)
    n = n_train + n_test
    return ImageSet(rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8),
                    np.arange(n) % classes, np.arange(n) >= n_train,
                    tuple(f"c{i}" for i in range(classes)), "test")


@pytest.mark.parametrize("database", ["all-but-queries", "exclude-train"])
def test_splits_are_disjoint_where_they_must_be(database):
    data = fake_set()
    cfg = DataConfig(queries_per_class=5, train_per_class=10, database=database, seed=3)
    split = make_split(data, cfg)
    q, t, db = set(split.query), set(split.train), set(split.database)
    assert len(q) == 20 and len(t) == 40
    assert not q & t and not q & db
    assert all(data.is_test[i] for i in q) and not any(data.is_test[i] for i in t)
    assert np.bincount(data.labels[split.query]).tolist() == [5] * 4
    if database == "all-but-queries":
        assert t <= db and len(db) == len(data.labels) - 20
    else:
        assert not t & db and len(db) == len(data.labels) - 60
    again = make_split(data, cfg)
    assert (again.query == split.query).all() and (again.train == split.train).all()


def test_protocol_asks_for_more_than_there_is():
    with pytest.raises(HashsdkError, match="wants 50 a class: lower --queries-per-class"):
        make_split(fake_set(), DataConfig(queries_per_class=50))


def test_validation_split_is_carved_from_the_training_images_alone():
    data = fake_set()
    split = make_split(data, DataConfig(queries_per_class=5, train_per_class=10, seed=1))
    val = validation_split(data, split, per_class=3, seed=2)
    q, t = set(val.query), set(val.train)
    assert np.bincount(data.labels[val.query]).tolist() == [3] * 4
    assert q | t == set(split.train) and not q & t          # the training images, split
    assert not (q | t) & set(split.query)                    # the protocol's queries untouched
    assert (val.database == val.train).all()
    again = validation_split(data, split, per_class=3, seed=2)
    assert (again.query == val.query).all()
    with pytest.raises(HashsdkError, match="validation split of 10 a class needs more"):
        validation_split(data, split, per_class=10)
