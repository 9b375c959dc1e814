"""Copy detection: hashsdk's learned 64-bit codes against imagehash's on the same images.

    python benchmarks/copydetect.py [--originals 1000] [--distractors 5000] [--size 256]
    python benchmarks/copydetect.py --seeds 0 1 2 3     # the default model's seed spread

Images no one here made: CIFAR-10's test images (the archive in ../shared/datasets), upsampled
to ``--size`` px (bicubic). ``--originals`` of them (the same number a class) are edited with
each edit of hashsdk.edits (blur, JPEG 30-95, gamma, noise, a text overlay, crop 5-20%, pad
20%, rotation 4 degrees, half size, mirror), as the perception library's benchmark edits; the
database is the originals and ``--distractors`` other test images, unedited. Each edited copy
searches the database; its original is the one right answer.

Rows: imagehash's pHash, dHash, wHash and aHash at 64 bits (hash_size 8), and hashsdk models at
64 bits, each exported to ONNX and run by the Encoder as users run them: label-free (trained by
``hashsdk-train hash`` on a flat folder of 5,000 CIFAR-10 *training* images, labels never
seen: ITQ, edit-ITQ, Bi-half and contrastive on EfficientNet-Lite0's frozen features, which
are mirror-invariant by default without labels (and edit-ITQ once without that), and
contrastive fine-tuning the backbone on each batch and an edited copy of it; and frozen
contrastive with the fakes of a DCGAN trained on the same folder, at the default weight; all
these without the low-pass filter and the border trim, as first measured; then edit-ITQ and
contrastive with both, and contrastive with both on the features of the backbone's block 4:
the defaults without labels, chosen by benchmarks/copydetect_blur.py) and supervised (the
same features and folder with its class folders, the pairwise loss, frozen).
Columns per edit: recall at 99% and 99.9% precision (one Hamming threshold for all queries of
the edit: a pair within it is a match; precision over every query-database pair), and mAP
(ties broken by the smaller database row); then all edits together, and encode images/s on
this machine.
Writes benchmarks/results/copydetect.json and .md. ``--seeds`` instead trains the default
label-free model once a seed and scores each beside pHash, with each edit's mean and SD over
the seeds (results/copydetect-seeds-test): how much of a row is the seed's draw.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
from _results import RESULTS, write_results
from PIL import Image

from hashsdk.edits import EDITS, apply
from hashsdk.train.edited import DEFAULT_TRAINING_EDITS, TRAINING_EDITS

ROOT = Path(__file__).resolve().parent.parent
ARCHIVE = ROOT.parent / "shared" / "datasets" / "cifar10-jpeg.tar.gz"
IMAGEHASHES = ("phash", "dhash", "whash", "average_hash")
GAN_STEPS = 800  # the GAN of the row with fakes: make demo's size (docs/results.md)
PRECISIONS = (0.99, 0.999)


# ---- the images ---------------------------------------------------------------------------


def read_split(archive: Path, split: str) -> list[tuple[str, str, bytes]]:
    """(class, member name, JPEG bytes) of one split of the archive, sorted by name."""
    out = []
    with tarfile.open(archive) as tar:
        for m in tar.getmembers():
            parts = m.name.split("/")
            if m.isfile() and len(parts) >= 3 and parts[-3] == split:
                out.append((parts[-2], m.name, tar.extractfile(m).read()))
    return sorted(out, key=lambda t: t[1])


def pick(items: list, count: int, rng: np.random.Generator) -> list:
    """``count`` items, the same number from each class (as near as count allows)."""
    classes = sorted({c for c, _, _ in items})
    per = -(-count // len(classes))
    chosen = []
    for c in classes:
        members = [i for i, t in enumerate(items) if t[0] == c]
        chosen += list(rng.choice(members, min(per, len(members)), replace=False))
    return [items[i] for i in sorted(chosen)[:count]]


def upsample(raw: bytes, size: int) -> Image.Image:
    import io

    return Image.open(io.BytesIO(raw)).convert("RGB").resize((size, size), Image.BICUBIC)


TWIN_MAE = 0.08  # mean absolute difference (of 1) below which two images are one photo
TWIN_SHIFT = 3   # pixels of translation tried when comparing two 32 px images


def twins(items: list[tuple[str, str, bytes]]) -> set[int]:
    """Rows of ``items`` that are near-duplicates of another row: CIFAR-10's test split holds
    the same photo twice (other crops, other JPEG passes), and a copy of one would rightly
    match the other. Candidates: each image's 3 nearest by cosine of 16 px grey thumbnails;
    kept where some shift of up to TWIN_SHIFT pixels brings the 32 px images within TWIN_MAE.
    The test is on pixels, none of the compared hashes."""
    import io

    small = np.stack([np.asarray(Image.open(io.BytesIO(raw)).convert("RGB"), np.float32) / 255
                      for _, _, raw in items])
    grey = np.stack([np.asarray(Image.fromarray((s.mean(axis=2) * 255).astype(np.uint8))
                                .resize((16, 16), Image.BILINEAR), np.float32) for s in small])
    g = grey.reshape(len(grey), -1)
    g = g - g.mean(axis=1, keepdims=True)
    g /= np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-6)
    out = set()
    for start in range(0, len(g), 2048):
        sim = g[start:start + 2048] @ g.T
        sim[np.arange(len(sim)), start + np.arange(len(sim))] = -1
        for row, near in enumerate(np.argsort(-sim, axis=1)[:, :3]):
            i = start + row
            for j in near:
                if sim[row, j] > 0.8 and shifted_mae(small[i], small[j]) < TWIN_MAE:
                    out |= {i, int(j)}
    return out


def shifted_mae(a: np.ndarray, b: np.ndarray) -> float:
    """The least mean absolute difference of a and b (H, W, C) over shifts of b."""
    best, s, h = 1.0, TWIN_SHIFT, a.shape[0]
    for dy in range(-s, s + 1):
        for dx in range(-s, s + 1):
            pa = a[max(0, dy):h + min(0, dy), max(0, dx):h + min(0, dx)]
            pb = b[max(0, -dy):h + min(0, -dy), max(0, -dx):h + min(0, -dx)]
            best = min(best, float(np.abs(pa - pb).mean()))
    return best


def make_sets(archive: Path, originals: int, distractors: int, size: int, seed: int,
              split: str = "test", exclude: frozenset[str] = frozenset()
              ) -> tuple[list[Image.Image], list[Image.Image], np.ndarray, np.ndarray, int]:
    """Database images (originals first), edited copies, each copy's original row, each
    copy's edit (an index into EDITS), and how many images were left out as twins. From
    ``split``'s images but those whose member names are in ``exclude`` (a validation set
    from the training split leaves out the images the models train on); a pool of twice the
    images needed, as many a class, is searched for twins."""
    rng = np.random.default_rng(seed)
    pool = [t for t in read_split(archive, split) if t[1] not in exclude]
    if len(pool) > 2 * (originals + distractors):  # twins() compares each image with all
        pool = pick(pool, 2 * (originals + distractors), rng)
    left_out = twins(pool)
    pool = [t for i, t in enumerate(pool) if i not in left_out]
    chosen = pick(pool, originals + distractors, rng)
    order = rng.permutation(len(chosen))
    db = [upsample(chosen[i][2], size) for i in order]
    copies, source, edit = [], [], []
    for row in range(originals):
        for e, name in enumerate(EDITS):
            copies.append(apply(name, db[row], rng))
            source.append(row)
            edit.append(e)
    return db, copies, np.array(source), np.array(edit), len(left_out)


# ---- the hashes ---------------------------------------------------------------------------


def imagehash_codes(name: str, images: list[Image.Image]) -> tuple[np.ndarray, float]:
    """(n, 64) bits of imagehash's ``name`` at hash_size 8, and images/s."""
    import imagehash

    fn = getattr(imagehash, name)
    started = time.perf_counter()
    bits = np.array([fn(im, hash_size=8).hash.reshape(-1) for im in images], np.uint8)
    return bits, len(images) / (time.perf_counter() - started)


def encoder_codes(model: Path, images: list[Image.Image]) -> tuple[np.ndarray, float]:
    from hashsdk import Encoder

    encoder = Encoder(str(model), threads=2)
    encoder.encode(images[:64], packed=False)  # warm-up: the session's first runs allocate
    started = time.perf_counter()
    out = encoder.encode(images, packed=False)
    return (out > 0).astype(np.uint8), len(images) / (time.perf_counter() - started)


# ---- the scores ---------------------------------------------------------------------------


def distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamming distances int32 (len(a), len(b)) of unpacked 0/1 rows, by two products."""
    a, b = a.astype(np.float32), b.astype(np.float32)
    same = a @ b.T + (1 - a) @ (1 - b).T
    return (a.shape[1] - same).round().astype(np.int32)


def copy_distances(d: np.ndarray, source: np.ndarray, bits: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Each copy's distance to its original, int (copies,), and how many other database rows
    lie at each distance from it, int64 (copies, bits + 1), from distances ``d`` (copies, db)."""
    pos = d[np.arange(len(d)), source]
    negatives = np.stack([np.bincount(row, minlength=bits + 1) for row in d]).astype(np.int64)
    negatives[np.arange(len(d)), pos] -= 1
    return pos, negatives


def recall_at(pos: np.ndarray, negatives: np.ndarray, precision: float) -> float:
    """The highest recall at a Hamming threshold whose precision reaches ``precision``, for
    copies at distances ``pos`` from their originals and ``negatives[t]`` other pairs at t."""
    tp = np.array([(pos <= t).sum() for t in range(len(negatives))])
    fp = np.cumsum(negatives)
    ok = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 1.0) >= precision
    return float((tp / len(pos))[ok].max(initial=0.0))


def scores(d: np.ndarray, source: np.ndarray, bits: int) -> dict:
    """Recall at each target precision and mAP for copies with distances ``d`` (copies, db)."""
    pos, negatives = copy_distances(d, source, bits)
    hist = negatives.sum(0)
    out = {f"recall_at_{p}": recall_at(pos, hist, p) for p in PRECISIONS}
    better = (d < pos[:, None]).sum(axis=1)
    ties_before = ((d == pos[:, None]) & (np.arange(d.shape[1]) < source[:, None])).sum(axis=1)
    out["map"] = float(np.mean(1.0 / (1 + better + ties_before)))
    return out


def paired_se(d_a: np.ndarray, d_b: np.ndarray, source: np.ndarray, precision: float = 0.999,
              draws: int = 300, seed: int = 0) -> float:
    """The bootstrap standard error of (b's recall at ``precision`` minus a's) over all copies,
    paired: originals drawn with replacement, each with all its copies, the database kept.
    ``d_a``, ``d_b``: int (copies, db) Hamming distances of two models on the same sets."""
    bits = int(max(d_a.max(), d_b.max()))
    parts = [copy_distances(d, source, bits) for d in (d_a, d_b)]
    rng = np.random.default_rng(seed)
    originals = np.unique(source)
    copies_of = {o: np.flatnonzero(source == o) for o in originals}
    diffs = []
    for _ in range(draws):
        rows = np.concatenate([copies_of[o] for o in rng.choice(originals, len(originals))])
        a, b = (recall_at(pos[rows], neg[rows].sum(0), precision) for pos, neg in parts)
        diffs.append(b - a)
    return float(np.std(diffs))


def evaluate(db_bits: np.ndarray, copy_bits: np.ndarray, source: np.ndarray,
             edit: np.ndarray) -> dict:
    d = distances(copy_bits, db_bits)
    bits = db_bits.shape[1]
    out = {name: scores(d[edit == e], source[edit == e], bits) for e, name in enumerate(EDITS)}
    out["all"] = scores(d, source, bits)
    return out


# ---- the models ---------------------------------------------------------------------------


def training_members(archive: Path, count: int, seed: int) -> list[tuple[str, str, bytes]]:
    """The ``count`` CIFAR-10 training images (as many a class) the models train on."""
    return pick(read_split(archive, "train"), count, np.random.default_rng(seed))


def write_folder(archive: Path, folder: Path, count: int, flat: bool, seed: int) -> None:
    """``training_members`` as JPEG files: in one folder (``flat``: no labels), or in class
    folders."""
    if folder.exists():
        return
    for c, name, raw in training_members(archive, count, seed):
        target = folder if flat else folder / c
        target.mkdir(parents=True, exist_ok=True)
        (target / f"{c}-{Path(name).name}" if flat else target / Path(name).name
         ).write_bytes(raw)


def train_model(work: Path, name: str, folder: Path, extra: list[str], gan_steps: int = 0
                ) -> Path:
    """``hashsdk-train hash`` on ``folder`` at 64 bits (after ``hashsdk-train gan`` of
    ``gan_steps`` steps on the same folder, whose fakes it then takes, where that is not 0),
    then ``hashsdk-export``; the .onnx."""
    onnx = work / f"{name}.onnx"
    if onnx.exists():
        return onnx
    run = work / f"run-{name}"
    bin_dir = Path(sys.executable).parent
    common = ["--dataset", "imagefolder", "--root", str(folder), "--run-dir", str(run),
              "--quiet"]
    if gan_steps:
        subprocess.run([str(bin_dir / "hashsdk-train"), "gan", *common, "--gan-steps",
                        str(gan_steps)], check=True)
        extra = [*extra, "--fakes", str(run / "gan" / "fakes.npz")]
    subprocess.run([str(bin_dir / "hashsdk-train"), "hash", *common, "--bits", "64",
                    "--name", name, *extra], check=True)
    subprocess.run([str(bin_dir / "hashsdk-export"), str(run / name / "checkpoint.pt"), "-o",
                    str(onnx)], check=True)
    return onnx


# the hashsdk rows: label, run name, training folder, hashsdk-train's options beyond the
# common, and the steps of a GAN on the same folder whose fakes the run takes (0: none). The
# rows before the low-pass filter, the trim and the block's features (their defaults without
# labels since copydetect-blur.md and copydetect-blocks.md) keep them off, as measured
PLAIN = ["--input-blur", "0", "--no-trim", "--feature-block", "-1"]
LOWPASS_TRIM = ["--input-blur", "1.5", "--trim"]
# the contrastive rows measured before the KoLeo term (a default since, on frozen features:
# copydetect_blur.py --seeds --koleo) keep it off, so that their commands retrain them as they were
NO_KOLEO = ["--koleo", "0"]
MODELS = [(f"hashsdk label-free, {label}", name, "train-flat", ["--loss", *loss], gan)
          for label, name, loss, gan in (
              ("ITQ", "itq", ["itq", *PLAIN], 0),
              ("edit-ITQ", "edit-itq", ["edit-itq", *PLAIN], 0),
              ("edit-ITQ, not mirror-invariant", "edit-itq-plain",
               ["edit-itq", "--no-mirror-invariant", *PLAIN], 0),
              ("Bi-half", "bihalf", ["bihalf", *PLAIN], 0),
              ("contrastive", "contrastive", ["contrastive", "--frozen", *PLAIN, *NO_KOLEO], 0),
              # without mirror invariance, which would double its 13 minutes of training
              ("contrastive, fine-tuned, not mirror-invariant", "contrastive-finetuned",
               ["contrastive", "--finetune", "--no-mirror-invariant", *PLAIN], 0),
              ("contrastive, with fakes", "contrastive-fakes",
               ["contrastive", "--frozen", *PLAIN, *NO_KOLEO], GAN_STEPS),
              # the low-pass filter and the trim on (copydetect-blur.md), the head's features
              ("edit-ITQ, low-pass filter and trim", "edit-itq-lowpass-trim",
               ["edit-itq", *LOWPASS_TRIM, "--feature-block", "-1"], 0),
              ("contrastive, low-pass filter and trim", "contrastive-lowpass-trim",
               ["contrastive", "--frozen", *LOWPASS_TRIM, "--feature-block", "-1", *NO_KOLEO],
               0),
              # and block 4's features (copydetect-blocks.md): the defaults without labels
              ("contrastive, block 4, low-pass filter and trim", "contrastive-block4-lowpass-trim",
               ["contrastive", "--frozen", *LOWPASS_TRIM, "--feature-block", "4", *NO_KOLEO],
               0),
              # and the DCT's 6 x 6 lowest frequencies beside them (copydetect-dct.md; not a
              # default: its gain there stayed within 2 standard errors)
              ("contrastive, block 4 and DCT features, low-pass filter and trim",
               "contrastive-block4-dct-lowpass-trim",
               ["contrastive", "--frozen", *LOWPASS_TRIM, "--feature-block", "4", *NO_KOLEO,
                "--dct-features", "6"], 0))]


def protocol(args: argparse.Namespace) -> list[str]:
    """The supervised run's protocol on its class folders: a tenth of each class as queries."""
    per_class = args.train_images // 10
    queries = max(1, per_class // 10)
    return ["--queries-per-class", str(queries), "--train-per-class", str(per_class - queries)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--archive", type=Path, default=ARCHIVE)
    p.add_argument("--originals", type=int, default=1000)
    p.add_argument("--distractors", type=int, default=5000)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--train-images", type=int, default=5000)
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "copydetect")
    p.add_argument("--results", type=Path, default=RESULTS / "copydetect")
    p.add_argument("--seeds", type=int, nargs="+", default=None,
                   help="instead: the default label-free model trained with each seed, beside "
                        "pHash (results/copydetect-seeds[-EDITS]-test)")
    p.add_argument("--training-edits", choices=tuple(TRAINING_EDITS),
                   default=DEFAULT_TRAINING_EDITS,
                   help="with --seeds: how the training copies' edits are drawn")
    p.add_argument("--koleo", type=float, default=0.0,
                   help="with --seeds: the KoLeo weight beside the contrastive loss (0: off)")
    args = p.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    write_folder(args.archive, args.work / "train-flat", args.train_images, True, 1)
    if args.seeds is not None:
        return seeds_main(args)
    write_folder(args.archive, args.work / "train-classes", args.train_images, False, 1)
    models = {label: train_model(args.work, name, args.work / folder, extra, gan)
              for label, name, folder, extra, gan in MODELS}
    models["hashsdk supervised (pairwise)"] = train_model(
        args.work, "supervised", args.work / "train-classes",
        ["--loss", "pairwise", "--frozen", *protocol(args)])
    db, copies, source, edit, left_out = make_sets(args.archive, args.originals,
                                                   args.distractors, args.size, seed=0)
    print(f"{len(db)} database images, {len(copies)} edited copies; {left_out} test images "
          "left out as near-duplicates of another", flush=True)
    rows = []
    methods = [(f"imagehash {n}", lambda ims, n=n: imagehash_codes(n, ims)) for n in IMAGEHASHES]
    methods += [(label, lambda ims, m=m: encoder_codes(m, ims)) for label, m in models.items()]
    for label, fn in methods:
        db_bits, speed = fn(db)
        copy_bits, _ = fn(copies)
        rows.append(dict(method=label, bits=int(db_bits.shape[1]), images_per_second=speed,
                         scores=evaluate(db_bits, copy_bits, source, edit)))
        print(label, rows[-1]["scores"]["all"], f"{speed:.0f} img/s", flush=True)
    report = dict(command="python benchmarks/copydetect.py" + "".join(
        f" --{k} {getattr(args, k)}" for k in ("originals", "distractors", "size")),
        database=len(db), copies=len(copies), twins_left_out=left_out,
        edits={k: v[1] for k, v in EDITS.items()}, train_images=args.train_images, rows=rows)
    write_results(args.results, report, markdown(report))


# the defaults without labels, spelled out (copydetect_blur.py chose them on validation), but
# for the KoLeo weight, which seed_spread names
DEFAULT_FREE = ["--loss", "contrastive", "--frozen", *LOWPASS_TRIM, "--feature-block", "4"]


def edits_tag(edits: str) -> str:
    """What a run's and a results file's name carry for training copies drawn as ``edits``:
    nothing for the default (the runs made before the option keep their names)."""
    return "" if edits == DEFAULT_TRAINING_EDITS else f"-{edits}"


def koleo_tag(koleo: float) -> str:
    """What a run's and a results file's name carry for hash.koleo: nothing for 0 (off); the
    weight without a dot (0.3: koleo0p3), which a results name cannot hold."""
    return f"-koleo{koleo:g}".replace(".", "p") if koleo else ""


def seed_spread(work: Path, sets, seeds: list[int], edits: str = DEFAULT_TRAINING_EDITS,
                koleo: float = 0.0) -> dict:
    """The default label-free model, its training copies' edits drawn as ``edits``
    (hash.training_edits) and its KoLeo weight ``koleo`` (hash.koleo), trained on
    work/train-flat once a ``--seed`` (which of the folder's images it trains on, their edited
    copies, the head's initialization and batches), scored on ``sets`` (make_sets') beside
    pHash: its rows, pHash's scores, and each edit's recall at each precision as (mean, SD)
    over the seeds."""
    if len(seeds) < 2:
        raise SystemExit("--seeds: give at least 2 seeds, to measure their spread")
    db, copies, source, edit, _ = sets
    phash = evaluate(imagehash_codes("phash", db)[0], imagehash_codes("phash", copies)[0],
                     source, edit)
    rows, first = [], None
    for seed in seeds:
        name = f"contrastive-blur1.5-trim-block4{edits_tag(edits)}{koleo_tag(koleo)}-seed{seed}"
        model = train_model(work, name, work / "train-flat", [
            *DEFAULT_FREE, "--seed", str(seed), "--training-edits", edits,
            "--koleo", f"{koleo:g}"])
        db_bits, speed = encoder_codes(model, db)
        copy_bits, _ = encoder_codes(model, copies)
        scores_ = evaluate(db_bits, copy_bits, source, edit)
        d = distances(copy_bits, db_bits)
        first = (d, scores_["all"]["recall_at_0.999"]) if first is None else first
        # the paired bootstrap over originals sees the copies' sampling, not the seed's
        rows.append(dict(seed=seed, images_per_second=speed, scores=scores_,
                         minus_first=scores_["all"]["recall_at_0.999"] - first[1],
                         bootstrap_se=paired_se(first[0], d, source)))
        print(seed, scores_["all"], f"{speed:.0f} img/s", flush=True)
    return dict(phash=phash, rows=rows, spread=spread_of(rows), training_edits=edits,
                koleo=koleo)


def spread_of(rows: list[dict]) -> dict:
    """{precision: {edit or "all": (mean, sample SD)}} of the rows' recalls (2 rows at least)."""
    return {str(p): {e: (float(np.mean(v)), float(np.std(v, ddof=1))) for e, v in (
        (e, [r["scores"][e][f"recall_at_{p}"] for r in rows]) for e in ["all", *EDITS])}
        for p in PRECISIONS}


def seed_table(report: dict, sets: str) -> list[str]:
    """seed_spread's tables, the sets described by ``sets``: a row a seed, then at each
    precision the seeds' mean ± SD beside pHash's."""
    lines = [f"{sets} ({report['copies']:,} edited copies searching {report['database']:,} "
             "images). The default label-free model (contrastive, 64 bits, block 4 of "
             f"EfficientNet-Lite0, the 1.5 px filter and the trim; training copies' edits "
             f"{report.get('training_edits', DEFAULT_TRAINING_EDITS)}"
             + (f"; KoLeo weight {report['koleo']:g}" if report.get("koleo") else "")
             + "), one row a seed (`--seed`: "
             "the run's split of its folder, the edited copies, the head's initialization and "
             "batches) and nothing else changed; imagehash's pHash on the same sets. Recall at "
             "99.9% precision, one Hamming threshold an edit; mAP with ties broken by the "
             "smaller database row. Minus the first: the recall over all edits minus the "
             "first seed's, ± the paired bootstrap's standard error of that difference "
             "(originals resampled with their copies).", "",
             *table_head("minus the first", seed="---:")]
    lines += [table_line(r, r["seed"]) + f" {r['minus_first']:+.3f} ± {r['bootstrap_se']:.3f} |"
              for r in report["rows"]]
    for p in sorted(PRECISIONS, reverse=True):
        cells = " | ".join(f"{m:.3f} ± {sd:.3f}" for m, sd in report["spread"][str(p)].values())
        ref = " | ".join(f"{report['phash'][e][f'recall_at_{p}']:.3f}" for e in ["all", *EDITS])
        lines += ["", f"Recall at {100 * p:g}% precision, mean ± SD over the "
                  f"{len(report['rows'])} seeds, and pHash's:", "",
                  "| | " + " | ".join(["all", *EDITS]) + " |",
                  "|---|" + "---:|" * (len(EDITS) + 1),
                  f"| seeds | {cells} |", f"| pHash | {ref} |"]
    return lines


def table_head(*extra: str, **settings: str) -> list[str]:
    """A grid table's header and alignment lines: the settings' columns (name=alignment), then
    recall over all edits and each edit, mAP, images/s and the ``extra`` columns."""
    names = [*settings, "all", *EDITS, "mAP (all)", "images/s", *extra]
    aligns = [*settings.values(), *["---:"] * (len(names) - len(settings))]
    return ["| " + " | ".join(names) + " |", "|" + "|".join(aligns) + "|"]


def table_line(row: dict, *settings) -> str:
    """A grid table's line: the row's ``settings`` cells, its recall cells, mAP and images/s."""
    return (f"| {' | '.join(map(str, settings))} | {recall_cells(row['scores'])} | "
            f"{row['scores']['all']['map']:.3f} | {row['images_per_second']:.0f} |")


def seeds_main(args: argparse.Namespace) -> None:
    """--seeds on the benchmark's own (test) sets: results/copydetect-seeds-test."""
    sets = make_sets(args.archive, args.originals, args.distractors, args.size, seed=0)
    report = seed_spread(args.work, sets, args.seeds, args.training_edits, args.koleo)
    db, copies, _, _, left_out = sets
    report.update(command="python benchmarks/copydetect.py --seeds " + " ".join(
        map(str, args.seeds)) + f" --training-edits {args.training_edits}"
        + (f" --koleo {args.koleo:g}" if args.koleo else "") + "".join(
            f" --{k} {getattr(args, k)}" for k in ("originals", "distractors", "size")),
        database=len(db), copies=len(copies), twins_left_out=left_out)
    lines = seed_table(report, "The benchmark's sets as copydetect.md")
    write_results(RESULTS / (f"copydetect-seeds{edits_tag(args.training_edits)}"
                             f"{koleo_tag(args.koleo)}-test"), report, lines)


def recall_cells(scores: dict, precision: float = 0.999) -> str:
    """A table row's cells of recall at ``precision``: all edits, then each edit."""
    return " | ".join(f"{scores[n][f'recall_at_{precision}']:.3f}" for n in ["all", *EDITS])


def markdown(report: dict) -> list[str]:
    names = ["all", *EDITS]
    lines = [f"{report['copies']:,} edited copies of {report['copies'] // len(EDITS):,} CIFAR-10 "
             f"test images upsampled to 256 px, searching a database of {report['database']:,} "
             f"(the originals and distractors; {report['twins_left_out']} test images that are "
             "near-duplicates of another left out). Recall at 99.9% precision, one Hamming "
             "threshold an edit (all: one for every copy); ties broken by the smaller "
             "database row for mAP.", "",
             "| method | " + " | ".join(names) + " | mAP (all) | images/s |",
             "|---|" + "---:|" * (len(names) + 2)]
    for r in report["rows"]:
        lines.append(f"| {r['method']} | {recall_cells(r['scores'])} | "
                     f"{r['scores']['all']['map']:.3f} | {r['images_per_second']:.0f} |")
    lines += ["", "Recall at 99% precision:", "",
              "| method | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for r in report["rows"]:
        lines.append(f"| {r['method']} | {recall_cells(r['scores'], 0.99)} |")
    return lines


if __name__ == "__main__":
    main()
