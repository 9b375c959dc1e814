"""Datasets, the uint8 image cache and the retrieval protocol.

Every dataset is decoded once into an ``ImageSet``: uint8 images (N, H, W, C), labels (class
ids, or multi-hot rows), and which images come from the test split. The decoded arrays are
cached as ``.npz`` under ``DataConfig.cache_dir``, keyed by a checksum of the source, so the
60,000 CIFAR-10 JPEGs are decoded once, not every epoch.

Sources:
    cifar10        the JPEG archive ``cifar10-jpeg.tar.gz`` or its unpacked ImageFolder tree
                   (``train/<class>/*.jpg``, ``test/<class>/*.jpg``), or the official python
                   batches (``cifar-10-batches-py``). The batches are pickles: they are read
                   with an unpickler that admits nothing but plain containers and numpy
                   arrays, so a tampered file cannot run code. ``download=True`` fetches them
                   with torchvision, which checks their MD5.
    fashion-mnist  the gzipped IDX files of Debian's ``dataset-fashion-mnist``
                   (/usr/share/datasets/fashion-mnist), or torchvision's download. 28x28
                   images are padded to 32x32 for the DCGAN.
    imagefolder    any ``<class>/<image>`` tree, with or without ``train/`` and ``test/``.
    filelist       DeepHash-pytorch's multi-label lists: a folder with train.txt, test.txt
                   and database.txt, each line ``path l1 l2 ... lK`` (multi-hot 0/1).

The protocol (``make_split``) is seeded and saved as index lists in the run directory, so that
evaluation reads the same queries and database and can never leak the test split into
training.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from hashsdk._atomic import atomic_write
from hashsdk.encoder.contract import InputContract
from hashsdk.encoder.preprocess import IMAGE_SUFFIXES, UnreadableImage, decode
from hashsdk.errors import HashsdkError
from hashsdk.train.config import DataConfig, input_contract, is_flat_folder

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")
FASHION_CLASSES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt",
                   "sneaker", "bag", "ankle-boot")
FASHION_DEBIAN = Path("/usr/share/datasets/fashion-mnist")
CACHE_VERSION = 2  # 2: images of another size are fitted (resize, centre crop), not squashed


@dataclass
class ImageSet:
    """A decoded dataset.

    images: uint8 (N, H, W, C), C = 1 or 3.
    labels: int64 (N,) class ids, or uint8 (N, K) multi-hot rows.
    is_test: bool (N,), True for images of the test split (where the source has one).
    classes: class names, K of them.
    preset: for file lists, the protocol the source defines: {"query", "train", "database"}
        index arrays; None elsewhere.
    labeled: False for a folder without class folders (``_load_flat``): each image is its own
        class (labels 0..n-1, classes its file names), and the test images are edited copies
        of some of them, labelled as their originals, so that retrieval scores copy detection.
    """

    images: np.ndarray
    labels: np.ndarray
    is_test: np.ndarray
    classes: tuple[str, ...]
    name: str
    preset: dict[str, np.ndarray] | None = None
    labeled: bool = True

    @property
    def multi_label(self) -> bool:
        return self.labels.ndim == 2

    @property
    def channels(self) -> int:
        return self.images.shape[3]


@dataclass
class Split:
    """The retrieval protocol, as int64 index arrays into an ImageSet."""

    query: np.ndarray
    train: np.ndarray
    database: np.ndarray

    def save(self, path: Path) -> None:
        with atomic_write(path) as f:
            np.savez(f, query=self.query, train=self.train, database=self.database)

    @classmethod
    def load(cls, path: Path) -> Split:
        try:
            with np.load(path, allow_pickle=False) as f:
                return cls(f["query"], f["train"], f["database"])
        except FileNotFoundError:
            raise HashsdkError(f"split file not found: {path}; run the hashing stage first, "
                               "or pass the run directory that holds split.npz") from None
        except (KeyError, ValueError, OSError) as exc:
            raise HashsdkError(f"{path}: not a split file ({exc})") from None


# ---- locating sources -------------------------------------------------------------------


def _candidates(name: str) -> list[Path]:
    here = Path.cwd()
    repo = Path(__file__).resolve().parent.parent
    env = os.environ.get("HASHSDK_DATA")
    bases = ([Path(env)] if env else []) + [here / "data", repo / "data",
                                            here.parent / "shared" / "datasets",
                                            repo.parent / "shared" / "datasets"]
    if name == "cifar10":
        names = ("cifar10-jpeg.tar.gz", "cifar10-jpeg", "cifar-10-batches-py")
    else:
        names = ("fashion-mnist",)
    out = [b / n for b in bases for n in names]
    if name == "fashion-mnist":
        out.append(FASHION_DEBIAN)
    return out


def find_source(cfg: DataConfig) -> Path:
    """The file or folder to read, or a clear error naming where we looked."""
    if cfg.root is not None:
        root = Path(cfg.root)
        if root.exists():
            return root
        if cfg.download and cfg.dataset in ("cifar10", "fashion-mnist"):
            return root
        raise HashsdkError(f"{cfg.dataset}: {root} does not exist")
    if cfg.dataset in ("imagefolder", "filelist"):
        raise HashsdkError(f"dataset {cfg.dataset!r} needs data.root (--root): the folder "
                           "to read")
    looked = _candidates(cfg.dataset)
    for path in looked:
        if path.exists():
            return path
    if cfg.download:
        return Path("data") / ("cifar-10-batches-py" if cfg.dataset == "cifar10"
                               else "fashion-mnist")
    how = {
        "cifar10": "put cifar10-jpeg.tar.gz (or torchvision's cifar-10-batches-py) in one of "
                   "these places, pass --root, or pass --download where there is internet",
        "fashion-mnist": "run `apt-get install dataset-fashion-mnist` (Debian), pass --root "
                         "to a folder of the IDX files, or pass --download where there is "
                         "internet",
    }[cfg.dataset]
    places = "\n  ".join(map(str, looked))
    raise HashsdkError(f"{cfg.dataset} not found. Looked in:\n  {places}\nTo get it: {how}")


def _digest(path: Path) -> str:
    """A checksum of the source: file bytes, or a folder's names, sizes and times."""
    h = hashlib.sha256()
    if path.is_file():
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    else:
        for p in sorted(path.rglob("*")):
            if p.is_file():
                st = p.stat()
                h.update(f"{p.relative_to(path)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


# ---- loading ------------------------------------------------------------------------------


def load_dataset(cfg: DataConfig, progress: bool = True) -> ImageSet:
    """Decodes the configured dataset, through the cache."""
    source = find_source(cfg)
    if cfg.download and not source.exists():
        source = _download(cfg.dataset, source)
    shape = input_contract(cfg, 3)  # its geometry: each loader keeps its images' mode
    key = (f"{cfg.dataset}-{_digest(source)}-{shape.size}-{shape.resize_size}-"
           f"{shape.interpolation}{'-trim' if shape.trim else ''}-v{CACHE_VERSION}")
    cache = cache_dir(cfg) / f"{key}.npz"
    if cache.exists():
        try:
            return _read_cache(cache, cfg.dataset)
        except (OSError, ValueError, KeyError):
            pass  # a cache from an interrupted write or another version: decode again
    loaders = {"cifar10": _load_cifar10, "fashion-mnist": _load_fashion_mnist,
               "imagefolder": _load_imagefolder, "filelist": _load_filelist}
    data = loaders[cfg.dataset](source, shape, progress)
    data = _fit_arrays(data, shape)
    cache.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(cache) as f:
        extra = {f"preset_{k}": v for k, v in (data.preset or {}).items()}
        np.savez(f, images=data.images, labels=data.labels, is_test=data.is_test,
                 classes=np.array(data.classes), labeled=data.labeled, **extra)
    return data


def cache_dir(cfg: DataConfig) -> Path:
    """Where decoded datasets are kept: data.cache_dir, $HASHSDK_CACHE, or the user cache."""
    if cfg.cache_dir:
        return Path(cfg.cache_dir)
    if os.environ.get("HASHSDK_CACHE"):
        return Path(os.environ["HASHSDK_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "hashsdk"


def _read_cache(path: Path, name: str) -> ImageSet:
    with np.load(path, allow_pickle=False) as f:
        preset = {k[7:]: f[k] for k in f.files if k.startswith("preset_")} or None
        labeled = bool(f["labeled"]) if "labeled" in f.files else True
        return ImageSet(f["images"], f["labels"], f["is_test"], tuple(f["classes"].tolist()),
                        name, preset, labeled)


def _fit_arrays(data: ImageSet, shape: InputContract) -> ImageSet:
    """Images decoded at another size, to the network's input: padded where they are a little
    smaller and nothing is resized (Fashion-MNIST's 28 to 32), else fitted as the Encoder
    fits (InputContract.fit_array)."""
    h, w = data.images.shape[1:3]
    size = shape.size
    if shape.is_fitted(h, w):
        return data
    if shape.resize_size == size and not shape.trim and h <= size and w <= size \
            and (size - h) % 2 == 0 and (size - w) % 2 == 0:
        ph, pw = (size - h) // 2, (size - w) // 2
        data.images = np.pad(data.images, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
        return data
    grey = data.images.shape[3] == 1
    data.images = np.stack([shape.fit_array(Image.fromarray(im.squeeze(-1) if grey else im))
                            for im in data.images])
    return data


def _decode(raw: bytes, where: str, shape: InputContract | None = None) -> np.ndarray:
    """An image file's bytes as uint8 (H, W, C), decoded as the Encoder decodes files
    (hashsdk.encoder.preprocess.decode: EXIF orientation, first frame, pixel limit); with ``shape``,
    fitted to the network's input as the Encoder fits it."""
    try:
        image = decode(raw, None, shape.resize_size if shape is not None else None)
    except UnreadableImage as exc:
        raise HashsdkError(f"{where}: not a readable image ({exc.reason})") from None
    if shape is not None and not shape.is_fitted(image.height, image.width):
        try:
            return shape.fit_array(image)
        except HashsdkError as exc:
            raise HashsdkError(f"{where}: {exc}") from None
    array = np.asarray(image, np.uint8)
    return array[..., None] if array.ndim == 2 else array


def _stack(images: list[np.ndarray], where: str) -> np.ndarray:
    if not images:
        raise HashsdkError(f"{where}: no images found")
    if len({im.shape[2] for im in images}) > 1:  # grey among colour images: as RGB
        images = [np.repeat(im, 3, axis=2) if im.shape[2] == 1 else im for im in images]
    shapes = {im.shape for im in images}
    if len(shapes) > 1:  # every loader fits its images to one size; this is a bug guard
        raise HashsdkError(f"{where}: images of several shapes {sorted(shapes)[:3]}")
    return np.stack(images)


def _load_cifar10(source: Path, shape: InputContract, progress: bool) -> ImageSet:
    if source.is_file():
        return _load_tar_imagefolder(source, "cifar10", progress, shape)
    if (source / "data_batch_1").exists() or (source / "cifar-10-batches-py").exists():
        return _load_cifar10_batches(source)
    return _load_imagefolder(source, shape, progress, name="cifar10")


def _load_tar_imagefolder(archive: Path, name: str, progress: bool,
                          shape: InputContract) -> ImageSet:
    """An archive of ``<top>/{train,test}/<class>/<image>``, read without unpacking."""
    images, labels, is_test, class_names = [], [], [], []
    try:
        with tarfile.open(archive) as tar:
            members = sorted((m for m in tar.getmembers()
                              if m.isfile() and m.name.lower().endswith(IMAGE_SUFFIXES)),
                             key=lambda m: m.name)
            parsed = []
            for m in members:
                parts = m.name.split("/")
                if len(parts) < 3 or parts[-3] not in ("train", "test"):
                    raise HashsdkError(f"{archive}: expected <top>/train|test/<class>/<image>, "
                                       f"found {m.name}")
                parsed.append((m, parts[-3], parts[-2]))
            class_names = sorted({c for _, _, c in parsed})
            if name == "cifar10" and set(class_names) == set(CIFAR10_CLASSES):
                class_names = list(CIFAR10_CLASSES)
            for m, split, cls in tqdm(parsed, desc=f"decoding {archive.name}", unit="img",
                                      disable=not progress):
                images.append(_decode(tar.extractfile(m).read(), f"{archive}:{m.name}",
                                      shape))
                labels.append(class_names.index(cls))
                is_test.append(split == "test")
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise HashsdkError(f"{archive}: not a readable tar archive ({exc})") from None
    return ImageSet(_stack(images, str(archive)), np.array(labels, np.int64),
                    np.array(is_test, bool), tuple(class_names), name)


class _ArraysOnly(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays, and refuses every other global."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("_codecs", "encode"),  # how protocol-2 pickles from Python 3 store array bytes
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One official CIFAR-10 python batch: uint8 (n, 32, 32, 3) images and int64 labels."""
    try:
        with open(path, "rb") as f:
            batch = _ArraysOnly(f, encoding="bytes").load()
        data = np.asarray(batch[b"data"], np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(batch[b"labels"], np.int64)
    except FileNotFoundError:
        raise
    except (pickle.UnpicklingError, KeyError, ValueError, EOFError, TypeError) as exc:
        raise HashsdkError(f"{path}: not a CIFAR-10 python batch ({exc})") from None
    if len(labels) != len(data):
        raise HashsdkError(f"{path}: {len(data)} images but {len(labels)} labels")
    return data.transpose(0, 2, 3, 1).copy(), labels


def _load_cifar10_batches(source: Path) -> ImageSet:
    folder = source / "cifar-10-batches-py" if (source / "cifar-10-batches-py").exists() else source
    parts = [(read_cifar_batch(folder / f"data_batch_{i}"), False) for i in range(1, 6)]
    parts.append((read_cifar_batch(folder / "test_batch"), True))
    images = np.concatenate([x for (x, _), _ in parts])
    labels = np.concatenate([y for (_, y), _ in parts])
    is_test = np.concatenate([np.full(len(y), t) for (_, y), t in parts])
    return ImageSet(images, labels, is_test, CIFAR10_CLASSES, "cifar10")


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzipped or not): uint8 images (n, rows, cols) or labels (n,)."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as exc:
        raise HashsdkError(f"{path}: not readable ({exc})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise HashsdkError(f"{path}: not an unsigned-byte IDX file (bad magic)")
    ndim = raw[3]
    dims = np.frombuffer(raw, ">u4", ndim, 4).astype(np.int64)
    body = raw[4 + 4 * ndim:]
    if len(body) != int(np.prod(dims)):
        raise HashsdkError(f"{path}: IDX header says {tuple(dims)} ({int(np.prod(dims))} bytes),"
                           f" file holds {len(body)} (truncated?)")
    return np.frombuffer(body, np.uint8).reshape(dims)


def _idx_file(folder: Path, stem: str) -> Path:
    for name in (f"{stem}.gz", stem):
        for base in (folder, folder / "raw", folder / "FashionMNIST" / "raw"):
            if (base / name).exists():
                return base / name
    raise HashsdkError(f"{folder}: no {stem}[.gz]; expected the four Fashion-MNIST IDX files")


def _load_fashion_mnist(source: Path, shape: InputContract, progress: bool) -> ImageSet:
    parts = []
    for split, is_test in (("train", False), ("t10k", True)):
        x = read_idx(_idx_file(source, f"{split}-images-idx3-ubyte"))
        y = read_idx(_idx_file(source, f"{split}-labels-idx1-ubyte")).astype(np.int64)
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise HashsdkError(f"{source}: {split} images {x.shape} do not match labels {y.shape}")
        parts.append((x[..., None], y, np.full(len(y), is_test)))
    images, labels, is_test = (np.concatenate(p) for p in zip(*parts, strict=True))
    return ImageSet(images, labels, is_test, FASHION_CLASSES, "fashion-mnist")


def _load_imagefolder(source: Path, shape: InputContract, progress: bool,
                      name: str = "imagefolder") -> ImageSet:
    if not source.is_dir():
        raise HashsdkError(f"{source}: expected a folder of <class>/<image> files")
    if is_flat_folder(source):
        return _load_flat(source, shape, progress)
    splits = [(source / "train", False), (source / "test", True)]
    if not all(p.is_dir() for p, _ in splits):
        splits = [(source, False)]
    class_names = sorted({d.name for root, _ in splits for d in root.iterdir() if d.is_dir()})
    if name == "cifar10" and set(class_names) == set(CIFAR10_CLASSES):
        class_names = list(CIFAR10_CLASSES)
    files = [(p, class_names.index(d.name), is_test)
             for root, is_test in splits for d in sorted(root.iterdir()) if d.is_dir()
             for p in sorted(d.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]
    images = [_decode(p.read_bytes(), str(p), shape)
              for p, _, _ in tqdm(files, desc=f"decoding {source.name}", unit="img",
                                  disable=not progress)]
    return ImageSet(_stack(images, str(source)), np.array([c for _, c, _ in files], np.int64),
                    np.array([t for _, _, t in files], bool), tuple(class_names), name)


# a folder without labels: how many of its images get an edited copy as a query
COPY_QUERIES = 500


def _load_flat(source: Path, shape: InputContract, progress: bool) -> ImageSet:
    """A folder of images without class folders: the images (labels 0..n-1), then an edited
    copy of up to COPY_QUERIES of them (a fifth), each with one edit of hashsdk.edits in turn,
    made from the full-size image and then fitted as every image is (is_test True)."""
    from hashsdk.edits import EDITS, apply

    files = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    raws = [p.read_bytes() for p in files]
    images = [_decode(raw, str(p), shape)
              for p, raw in tqdm(list(zip(files, raws, strict=True)), desc=f"decoding "
                                 f"{source.name}", unit="img", disable=not progress)]
    rng = np.random.default_rng(0)
    originals = np.sort(rng.choice(len(files), min(COPY_QUERIES, max(1, len(files) // 5)),
                                   replace=False))
    names = list(EDITS)
    for i, o in enumerate(originals):
        image = decode(raws[o], "RGB" if images[o].shape[2] == 3 else "L")
        edited = apply(names[i % len(names)], image, rng)
        if images[o].shape[2] == 1:
            edited = edited.convert("L")
        images.append(shape.fit_array(edited))
    n = len(files)
    labels = np.concatenate([np.arange(n), originals]).astype(np.int64)
    is_test = np.arange(len(labels)) >= n
    return ImageSet(_stack(images, str(source)), labels, is_test,
                    tuple(p.name for p in files), "imagefolder", labeled=False)


def _load_filelist(source: Path, shape: InputContract, progress: bool) -> ImageSet:
    lists = {}
    for part in ("train", "test", "database"):
        path = source / f"{part}.txt"
        if not path.exists():
            raise HashsdkError(f"{source}: expected train.txt, test.txt and database.txt "
                               f"(DeepHash-pytorch layout); {path.name} is missing")
        rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
        lists[part] = rows
    widths = {len(r) - 1 for rows in lists.values() for r in rows}
    if len(widths) != 1:
        raise HashsdkError(f"{source}: every line must be 'path l1 ... lK' with the same K")
    k = widths.pop()
    images, labels, is_test, preset, at = [], [], [], {}, 0
    for part in ("train", "test", "database"):
        preset[{"test": "query"}.get(part, part)] = np.arange(at, at + len(lists[part]))
        for row in tqdm(lists[part], desc=f"decoding {part}.txt", disable=not progress):
            path = Path(row[0]) if Path(row[0]).is_absolute() else source / row[0]
            try:
                raw = path.read_bytes()
            except OSError as exc:
                raise HashsdkError(f"{source / (part + '.txt')}: cannot read {path} ({exc})"
                                   ) from None
            images.append(_decode(raw, str(path), shape))
            labels.append([int(v) for v in row[1:]])
            is_test.append(part == "test")
        at += len(lists[part])
    return ImageSet(_stack(images, str(source)), np.array(labels, np.uint8),
                    np.array(is_test, bool), tuple(f"label{i}" for i in range(k)), "filelist",
                    preset)


def _download(dataset: str, root: Path) -> Path:
    """torchvision's download, for users with internet; it checks the files' MD5."""
    import torchvision

    root.parent.mkdir(parents=True, exist_ok=True)
    try:
        if dataset == "cifar10":
            torchvision.datasets.CIFAR10(str(root.parent), train=True, download=True)
            return root.parent / "cifar-10-batches-py"
        torchvision.datasets.FashionMNIST(str(root), train=True, download=True)
        torchvision.datasets.FashionMNIST(str(root), train=False, download=True)
        return root
    except Exception as exc:  # torchvision raises URLError, RuntimeError and more
        raise HashsdkError(f"downloading {dataset} failed ({exc}); without internet, put the "
                           "files in place and pass --root") from None


# ---- protocol -------------------------------------------------------------------------------


def make_split(data: ImageSet, cfg: DataConfig) -> Split:
    """The seeded retrieval protocol.

    Data without labels (a flat folder): the edited copies are the queries, and the
    originals both the training images and the database.
    Single-label data: ``queries_per_class`` queries a class from the test split (or from all
    images where there is none), ``train_per_class`` training images a class from the train
    split, and a database of everything but the queries (``database="all-but-queries"``) or of
    everything but the queries and the training images (``"exclude-train"``).
    File lists define their own protocol, which is used as given.
    """
    if data.preset is not None:
        return Split(*(np.asarray(data.preset[k], np.int64)
                       for k in ("query", "train", "database")))
    if not data.labeled:  # the edited copies search the originals, which are also trained on
        originals = np.flatnonzero(~data.is_test).astype(np.int64)
        return Split(np.flatnonzero(data.is_test).astype(np.int64), originals, originals.copy())
    if data.multi_label:
        raise HashsdkError("multi-label data needs a file list that defines the split")
    rng = np.random.default_rng(cfg.seed)
    test_pool = data.is_test if data.is_test.any() else np.ones(len(data.labels), bool)
    query, train = [], []
    for c in range(len(data.classes)):
        in_class = data.labels == c
        pool = np.flatnonzero(in_class & test_pool)
        if len(pool) < cfg.queries_per_class:
            raise HashsdkError(f"class {data.classes[c]!r} has {len(pool)} images to draw queries "
                               f"from; the protocol wants {cfg.queries_per_class} a class: "
                               "lower --queries-per-class (data.queries_per_class)")
        q = rng.choice(pool, cfg.queries_per_class, replace=False)
        query.append(q)
        train_pool = np.setdiff1d(np.flatnonzero(in_class & ~data.is_test), q)
        if len(train_pool) < cfg.train_per_class:
            raise HashsdkError(f"class {data.classes[c]!r} has {len(train_pool)} training "
                               f"images beside its queries; the protocol wants "
                               f"{cfg.train_per_class}: lower --train-per-class "
                               "(data.train_per_class) or --queries-per-class")
        train.append(rng.choice(train_pool, cfg.train_per_class, replace=False))
    query, train = np.sort(np.concatenate(query)), np.sort(np.concatenate(train))
    excluded = query if cfg.database == "all-but-queries" else np.union1d(query, train)
    database = np.setdiff1d(np.arange(len(data.labels)), excluded)
    return Split(query.astype(np.int64), train.astype(np.int64), database.astype(np.int64))


def validation_split(data: ImageSet, split: Split, per_class: int, seed: int = 0) -> Split:
    """A split for choosing settings that never touches the protocol's queries: from the
    training images, ``per_class`` a class become the validation queries; the rest are both
    the training images and the database they are searched in.

    Returns a Split of int64 rows into ``data``: query (classes x per_class), train and
    database (the same array: split.train less the validation queries)."""
    if data.multi_label:
        raise HashsdkError("a validation split needs single-label data")
    rng = np.random.default_rng(seed)
    labels = data.labels[split.train]
    query = []
    for c in range(len(data.classes)):
        pool = split.train[labels == c]
        if len(pool) <= per_class:
            raise HashsdkError(f"class {data.classes[c]!r} has {len(pool)} training images; a "
                               f"validation split of {per_class} a class needs more")
        query.append(rng.choice(pool, per_class, replace=False))
    query = np.sort(np.concatenate(query)).astype(np.int64)
    rest = np.setdiff1d(split.train, query).astype(np.int64)
    return Split(query, rest, rest.copy())


def channel_stats(images: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 images, in [0, 1] units."""
    x = images.reshape(-1, images.shape[-1]).astype(np.float64) / 255.0
    return x.mean(axis=0).tolist(), np.maximum(x.std(axis=0), 1e-3).tolist()
