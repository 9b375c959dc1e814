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
from hashsdk.train.evaluate import encode, score
from hashsdk.train.evaluate import write as write_eval
from hashsdk.train.losses import RealLoss, fake_loss
from hashsdk.train.model import KIND, HashNet
from hashsdk.train.schedule import lr_factor


def features_key(model: HashNet, images: np.ndarray) -> str:
    """What the cached features depend on: the network's arguments and the images' bytes."""
    args = {k: v for k, v in model.model_args.items() if k not in ("bits", "num_classes")}
    h = hashlib.sha256(json.dumps(args, sort_keys=True, default=str).encode())
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
    history = _train_head(hc, model, feats[split.train], data.labels[split.train], fake_feats,
                          device, progress)
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


def _train_head(hc: HashConfig, model: HashNet, train_feats: np.ndarray, labels: np.ndarray,
                fake_feats: np.ndarray | None, device: torch.device,
                progress: bool) -> list[dict]:
    """The hash layer (and the classifier of the "ce" loss) on features: AdamW, linear
    warmup then cosine decay, seeded; the same losses as the fine-tuning loop."""
    torch.manual_seed(hc.seed)
    gen = torch.Generator().manual_seed(hc.seed)
    x = torch.from_numpy(train_feats).to(device)
    y = torch.from_numpy(labels.astype(np.int64) if labels.ndim == 1 else labels).to(device)
    xf = None if fake_feats is None else torch.from_numpy(fake_feats).to(device)
    head = [p for n, p in model.named_parameters() if not n.startswith("features.")]
    opt = torch.optim.AdamW(head, lr=hc.lr, weight_decay=hc.weight_decay)
    steps = max(1, len(x) // hc.batch_size)
    total, warmup = steps * hc.epochs, int(hc.warmup_epochs * steps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, total, warmup))
    real_loss = RealLoss(hc.loss, hc.quantization, hc.margin, y, hc.bits,
                         memory=hc.pairwise_memory)
    n_fake = max(1, round(hc.batch_size * hc.fake_ratio))
    history = []
    for epoch in tqdm(range(hc.epochs), desc="head", disable=not progress):
        t0, sums = time.perf_counter(), torch.zeros(2)
        order = torch.randperm(len(x), generator=gen)
        for i in range(steps):
            idx = order[i * hc.batch_size:(i + 1) * hc.batch_size].to(device)
            h = torch.tanh(model.hash(x[idx]))
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
