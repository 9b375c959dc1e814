"""Frozen-feature mode (``hash.frozen = true``): the backbone never trains, so its features of
every image are computed once and cached, fakes included, and only the hash layer trains on
them, in seconds, with the same real-image loss and fake-image loss as train/loop.py.

Features: float32 (N, F), the backbone's pooled output of each image as evaluation sees it
(centre crop, no augmentation, BatchNorm in eval mode), cached under the data cache directory
as ``features-<key>.npy``, keyed by the backbone, its weights, the input contract and a digest
of the images; a run with other settings computes its own. Fakes are fitted to the run's
image size first, as in the fine-tuning loop (train/loop.py's ``load_fakes``).

The checkpoint is a whole HashNet (the untouched backbone and the trained hash layer), so
export, the Encoder and evaluation take it like any other; eval.json and ap.npy are scored on
the cached features, which are the network's own (a test checks the codes against the
network's).
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from hashsdk._atomic import atomic_write
from hashsdk.train import checkpoint, plots
from hashsdk.train.config import HashConfig, RunConfig, write
from hashsdk.train.data import ImageSet, Split, cache_dir
from hashsdk.train.device import resolve_device
from hashsdk.train.edited import EDIT_VIEWS, edited_views
from hashsdk.train.evaluate import encode, score
from hashsdk.train.evaluate import write as write_eval
from hashsdk.train.losses import RealLoss, fake_loss, lookup
from hashsdk.train.model import KIND, HashNet
from hashsdk.train.schedule import lr_factor

# network arguments added after features were first cached, at the value that is the network
# those features were computed with
OFF_BEFORE_KEYED = {"input_median": 0, "feature_pool": "avg", "dct_features": 0}


def features_key(model: HashNet, images: np.ndarray) -> str:
    """What the cached features depend on: the network's arguments (but the head's: bits,
    classes, flip averaging at encoding), the backbone's weights (ImageNet's, a weights
    file's, a fine-tuned checkpoint's: the arguments do not tell them apart) and the images'
    bytes."""
    args = {k: v for k, v in model.model_args.items()
            if k not in ("bits", "num_classes", "flip_average")}
    for key, off in OFF_BEFORE_KEYED.items():  # features cached before the key stay valid
        if args.get(key) == off:
            del args[key]
    h = hashlib.sha256(json.dumps(args, sort_keys=True, default=str).encode())
    for name, tensor in sorted(model.features.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    h.update(str(images.shape).encode())
    h.update(memoryview(np.ascontiguousarray(images)).cast("B"))
    return h.hexdigest()[:20]


def cached_features(model: HashNet, images: np.ndarray, folder: Path, device: torch.device,
                    progress: bool, what: str = "images") -> np.ndarray:
    """The backbone's features of ``images`` (uint8 NHWC), from ``folder``'s cache or computed
    and cached (written atomically)."""
    path = Path(folder) / f"features-{what}-{features_key(model, images)}.npy"
    if path.exists():
        return np.load(path, allow_pickle=False)
    feats = encode(model, images, device, progress=progress, features=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as f:
        np.save(f, feats)
    return feats


def train_frozen(cfg: RunConfig, hc: HashConfig, model: HashNet, data: ImageSet, split: Split,
                 run_dir: Path, fakes: np.ndarray | None, progress: bool = True) -> dict:
    """Trains ``model``'s hash layer on cached backbone features; writes config.json,
    checkpoint.pt, history.json, eval.json and ap.npy into ``run_dir``; returns the metrics
    with ``epoch_seconds`` and ``feature_seconds`` (0 where the cache had them). ``hc``: the
    run's settings, its batch size and epochs decided (train/schedule.py)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write(cfg, run_dir / "config.json")
    device = resolve_device(hc.device)
    model.to(device).eval()
    started = time.perf_counter()
    folder = cache_dir(cfg.data)
    feats = cached_features(model, data.images, folder, device, progress)
    fake_feats = (None if fakes is None else
                  cached_features(model, fakes, folder, device, progress, "fakes"))
    feature_seconds = time.perf_counter() - started
    views = None
    if lookup(hc.loss).edited_copies:  # edited copies' features too
        images, source = edited_views(data.images[split.train], model.contract, hc.seed,
                                       hc.training_edits)
        views = cached_features(model, images, folder, device, progress, "views")
    if hc.loss in ("itq", "edit-itq"):  # closed form, no batches: the fakes have no part in it
        history = fit_itq(hc, model, feats[split.train], views,
                          None if views is None else source)
    else:
        history = _train_head(hc, model, feats[split.train], data.labels[split.train],
                              fake_feats, device, progress, views)
        if hc.loss in BALANCED:
            centre_bits(model, feats[split.train], device)
    checkpoint.save(run_dir / "checkpoint.pt", kind=KIND, model_args=model.model_args,
                    state_dict=model.state_dict(), optimizer=None, scheduler=None,
                    step=0, epoch=hc.epochs, config=cfg.to_dict(),
                    extra=dict(history=history, frozen=True))
    with torch.inference_mode():
        outputs = torch.tanh(model.hash(torch.from_numpy(feats).to(device))).cpu().numpy()
    metrics, aps = score(outputs[split.query], outputs[split.database], data, split)
    write_eval(run_dir, metrics, aps, "with fakes" if fakes is not None else "without fakes")

    plots.write_history(run_dir, history)
    with atomic_write(run_dir / "features.json") as f:  # what the features cost this run
        f.write(json.dumps({"seconds": feature_seconds, "count": len(feats)}).encode())
    return metrics.as_dict() | {"epoch_seconds": float(np.median([r["seconds"]
                                                                   for r in history])),
                                "feature_seconds": feature_seconds}


# the label-free losses whose bits are balanced after training (each split at its median)
BALANCED = ("bihalf", "contrastive")


def _train_head(hc: HashConfig, model: HashNet, train_feats: np.ndarray, labels: np.ndarray,
                fake_feats: np.ndarray | None, device: torch.device, progress: bool,
                views: np.ndarray | None = None) -> list[dict]:
    """The hash layer (and the classifier of the "ce" loss) on features: AdamW, linear
    warmup then cosine decay, seeded; the same losses as the fine-tuning loop. ``views``:
    features of EDIT_VIEWS edited copies of each training row (row i's at i * EDIT_VIEWS + k,
    as ``edited_views`` lays them out), for a loss that ``needs_views``: its h is the batch's
    outputs, then those of one copy of each item drawn at random."""
    torch.manual_seed(hc.seed)
    gen = torch.Generator().manual_seed(hc.seed)
    x = torch.from_numpy(train_feats).to(device)
    y = torch.from_numpy(labels.astype(np.int64) if labels.ndim == 1 else labels).to(device)
    xf = None if fake_feats is None else torch.from_numpy(fake_feats).to(device)
    xv = None if views is None else torch.from_numpy(views).to(device)
    head = [p for n, p in model.named_parameters() if not n.startswith("features.")]
    opt = torch.optim.AdamW(head, lr=hc.lr, weight_decay=hc.weight_decay)
    steps = max(1, len(x) // hc.batch_size)
    total, warmup = steps * hc.epochs, int(hc.warmup_epochs * steps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, total, warmup))
    real_loss = RealLoss(hc.loss, hc.quantization, hc.margin, y, hc.bits,
                         memory=hc.pairwise_memory, train_features=x, codewords=hc.codewords,
                         label_smoothing=hc.label_smoothing, koleo=hc.koleo)
    n_fake = max(1, round(hc.batch_size * hc.fake_ratio))
    history = []
    for epoch in tqdm(range(hc.epochs), desc="head", disable=not progress):
        t0, sums = time.perf_counter(), torch.zeros(2)
        order = torch.randperm(len(x), generator=gen)
        for i in range(steps):
            idx = order[i * hc.batch_size:(i + 1) * hc.batch_size].to(device)
            h = torch.tanh(model.hash(x[idx]))
            if xv is not None:
                k = torch.randint(EDIT_VIEWS, (len(idx),), generator=gen).to(device)
                h = torch.cat([h, torch.tanh(model.hash(xv[idx * EDIT_VIEWS + k]))])
            logits = model.classifier(h) if model.classifier is not None else None
            loss_r = real_loss(h, y[idx], logits, idx)
            loss_f = torch.zeros((), device=device)
            if xf is not None and hc.lam > 0:
                pick = torch.randint(len(xf), (n_fake,), generator=gen).to(device)
                loss_f = fake_loss(torch.tanh(model.hash(xf[pick])), hc.fake_loss)
            loss = loss_r + hc.lam * loss_f
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            sums += torch.stack([loss_r.detach(), loss_f.detach()]).cpu()
        real, fake = (sums / steps).tolist()
        history.append(dict(epoch=epoch + 1, loss_real=real, loss_fake=fake,
                            lr=sched.get_last_lr()[0], seconds=time.perf_counter() - t0))
    return history


# ITQ's outputs (x - mean) @ W are scaled so that their standard deviation is this before the
# tanh: the relaxed outputs then sit near +-1, as a trained layer's do; the bits are unchanged
ITQ_SCALE = 2.0


def fit_itq(hc: HashConfig, model: HashNet, train_feats: np.ndarray,
            view_feats: np.ndarray | None = None, source: np.ndarray | None = None
            ) -> list[dict]:
    """Sets ``model.hash`` to ITQ fitted on ``train_feats`` (float32 (n, F)): weight (bits, F)
    = s * (P @ R).T and bias = -s * mean @ P @ R, so that the network's bits are ITQ's. P: the
    top principal components, or with ``view_feats`` (features of edited copies, (m, F), of
    rows ``source``) the edit-invariant directions (``invariant_directions``). Returns a
    one-row history (the quantization error, ITQ's own objective)."""
    from hashsdk.train.baselines import fit, itq_rotation

    t0 = time.perf_counter()
    x = train_feats.astype(np.float64)
    if view_feats is None:
        itq = fit("itq", x, hc.bits, hc.seed)
        mean, w = itq.mean, itq.pcs @ itq.rotation       # (F,), (F, bits)
    else:
        mean = x.mean(axis=0)
        p = invariant_directions(x, view_feats.astype(np.float64) - x[source], hc.bits)
        w = p @ itq_rotation((x - mean) @ p, np.random.default_rng(hc.seed))
    z = (train_feats - mean) @ w
    scale = ITQ_SCALE / max(float(z.std()), 1e-12)
    with torch.no_grad():
        model.hash.weight.copy_(torch.from_numpy((scale * w).T.astype(np.float32)))
        model.hash.bias.copy_(torch.from_numpy((-scale * mean @ w).astype(np.float32)))
    error = float(np.mean((np.sign(z) - z / max(float(np.abs(z).mean()), 1e-12)) ** 2))
    return [dict(epoch=1, loss_real=error, loss_fake=0.0, lr=0.0,
                 seconds=time.perf_counter() - t0)]


def centre_bits(model: HashNet, train_feats: np.ndarray, device: torch.device) -> None:
    """Moves each bit's threshold to the median of its training outputs. Bi-half splits each
    bit at the batch's median while training; the network's bit is the sign, so without this
    a bit whose median drifted from 0 comes out the same for every image."""
    with torch.no_grad():
        z = model.hash(torch.from_numpy(train_feats).to(device))
        model.hash.bias -= z.median(dim=0).values


# the edit-invariant head's ridge on the edits' scatter
EDIT_RIDGE = 0.1  # of the scatter's mean eigenvalue, added to it: few copies, many dimensions


def invariant_directions(x: np.ndarray, noise: np.ndarray, bits: int) -> np.ndarray:
    """(F, bits): the directions v with the largest v'St v / v'Sw v, St the scatter of the
    images ``x`` (n, F) and Sw (ridged) that of the edits ``noise`` (m, F) (a copy's features
    less its original's): LDA with each image its own class."""
    st = np.cov(x, rowvar=False)
    sw = noise.T @ noise / len(noise)
    sw += EDIT_RIDGE * np.trace(sw) / len(sw) * np.eye(len(sw))
    values, vectors = np.linalg.eigh(sw)
    whiten = vectors / np.sqrt(values)                   # Sw^(-1/2)
    e, v = np.linalg.eigh(whiten.T @ st @ whiten)
    return whiten @ v[:, np.argsort(-e)[:bits]]
