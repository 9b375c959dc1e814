"""Stage 2: the one training loop, for every real-image loss, with or without fakes.

Read it top to bottom: set up (device, data, model, optimizer, resume), then each step draws a
batch of real training images (and, with a fake bank, ``fake_ratio`` as many fakes), computes
L = L_real + lambda * L_fake, and steps; each epoch ends with a checkpoint and a line of
history; the run ends with an evaluation on the saved split.

Files in the run directory: config.json, split.npz (shared with the GAN stage),
checkpoint.pt, history.json, loss.png, eval.json, ap.npy (per-query average precision),
pr.png.

Determinism: every random draw (data order, augmentation, fake sampling) comes from one
seeded torch.Generator whose state is checkpointed, so resuming continues bit for bit on the
same machine and thread count. Under DDP each rank draws its own augmentation.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from hashsdk._atomic import atomic_write
from hashsdk.errors import HashsdkError
from hashsdk.train import checkpoint, plots
from hashsdk.train.config import RunConfig, differences, write
from hashsdk.train.data import ImageSet, Split, channel_stats
from hashsdk.train.device import (
    Distributed,
    amp_dtype,
    autocast,
    place_images,
    resolve_device,
    take,
    to_device,
)
from hashsdk.train.evaluate import evaluate_model, to_input
from hashsdk.train.losses import RealLoss, fake_loss
from hashsdk.train.model import KIND, create_model


def augment(x: torch.Tensor, gen: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop (zero padding ``pad``) and horizontal flip of uint8 (B, H, W, C) images.

    The draws come from ``gen`` (a CPU generator) wherever ``x`` lives, so a run draws the same
    numbers on every device; on CUDA only the crop indices cross over, and the images stay on
    the GPU.
    """
    b, h, w, _ = x.shape
    padded = torch.nn.functional.pad(x, (0, 0, pad, pad, pad, pad))
    oy = torch.randint(0, 2 * pad + 1, (b,), generator=gen)
    ox = torch.randint(0, 2 * pad + 1, (b,), generator=gen)
    flip = torch.rand(b, generator=gen) < 0.5
    rows = oy[:, None] + torch.arange(h)
    cols = ox[:, None] + torch.arange(w)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    rows, cols = to_device(rows, x.device), to_device(cols, x.device)
    batch = torch.arange(b, device=x.device)
    return padded[batch[:, None, None], rows[:, :, None], cols[:, None, :]]


def load_fakes(path: str | Path, like: np.ndarray) -> np.ndarray:
    """The fake bank: uint8 (N, H, W, C), checked against the real images' shape."""
    try:
        with np.load(path, allow_pickle=False) as f:
            fakes = f["images"]
    except FileNotFoundError:
        raise HashsdkError(f"fake bank not found: {path}; run `hashsdk-train gan` first") from None
    except (KeyError, ValueError, OSError) as exc:
        raise HashsdkError(f"{path}: not a fake bank (expected an .npz with 'images'; {exc})"
                           ) from None
    if fakes.dtype != np.uint8 or fakes.shape[1:] != like.shape[1:] or len(fakes) == 0:
        raise HashsdkError(f"{path}: expected uint8 fakes shaped (N,) + {like.shape[1:]}, got "
                           f"{fakes.dtype} {fakes.shape}")
    return fakes


def _lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warmup, then cosine decay to zero."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def train_hash(cfg: RunConfig, data: ImageSet, split: Split, run_dir: Path,
               resume: bool = True, progress: bool = True, evaluate: bool = True) -> dict:
    """Trains and evaluates a hashing network; returns the final metrics as a dict, with
    ``epoch_seconds``, the median epoch's wall time. ``evaluate=False`` skips the evaluation
    (the dict then holds ``epoch_seconds`` alone), for timing runs."""
    hc = cfg.hash
    run_dir = Path(run_dir)
    device = resolve_device(hc.device)
    dist = Distributed.start(device)
    torch.manual_seed(hc.seed)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: pick the fastest kernels once
    if dist.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write(cfg, run_dir / "config.json")

    # ---- data: the training split as one uint8 tensor; fakes likewise. On CUDA both live
    # on the GPU, decoded once, and each step moves only its indices ---------------------
    train_x = place_images(torch.from_numpy(data.images[split.train]), device)
    labels = data.labels[split.train]
    train_y = torch.from_numpy(labels.astype(np.int64) if labels.ndim == 1 else labels)
    train_y = train_y.to(device)
    fakes = None
    if hc.fakes is not None and hc.lam > 0 and hc.fake_ratio > 0:
        fakes = place_images(torch.from_numpy(load_fakes(hc.fakes, data.images)), device)
    mean, std = channel_stats(data.images[split.train])
    n = len(train_x)
    per_step = hc.batch_size * dist.world_size
    steps_per_epoch = max(1, n // per_step)
    total_steps = steps_per_epoch * hc.epochs
    fake_batch = max(1, round(hc.batch_size * hc.fake_ratio)) if fakes is not None else 0

    # ---- model, optimizer, schedule --------------------------------------------------------
    model = create_model(hc.backbone, hc.bits, in_channels=data.channels,
                         image_size=data.images.shape[1],
                         num_classes=len(data.classes) if hc.loss == "ce" else 0,
                         stem32=hc.stem32, mean=mean, std=std, pretrained=hc.pretrained)
    model_args = model.model_args
    model.to(device)
    if device.type == "cuda" and hc.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if hc.optimizer == "adamw":
        opt = torch.optim.AdamW(model.parameters(), lr=hc.lr, weight_decay=hc.weight_decay)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=hc.lr, momentum=hc.momentum,
                              weight_decay=hc.weight_decay, nesterov=True)
    warmup = int(hc.warmup_epochs * steps_per_epoch)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, total_steps, warmup))
    dtype = amp_dtype(device, hc.amp)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    real_loss = RealLoss(hc.loss, hc.quantization, hc.margin, train_y, hc.bits,
                         memory=hc.pairwise_memory)
    gen = torch.Generator().manual_seed(hc.seed)
    aug_gen = torch.Generator().manual_seed(hc.seed * 1000 + dist.rank)
    mean_t, std_t = torch.tensor(mean, device=device), torch.tensor(std, device=device)

    # ---- resume ----------------------------------------------------------------------------
    start_epoch, history = 0, []
    ckpt_path = run_dir / "checkpoint.pt"
    if resume and ckpt_path.exists():
        ckpt = checkpoint.load(ckpt_path, KIND)
        changed = differences(ckpt["config"], cfg)
        if changed:
            raise HashsdkError(f"{ckpt_path} was trained with another config "
                               f"({', '.join(changed)}); use a new run directory, or pass "
                               "--no-resume to start over")
        model.load_state_dict(ckpt["state_dict"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        scaler.load_state_dict(ckpt["extra"]["scaler"])
        gen.set_state(ckpt["rng"]["data"])
        # one augmentation state per rank; a run resumed on another number of processes
        # keeps its fresh per-rank seeds, so that ranks never augment alike
        aug_states = ckpt["rng"]["augment"]
        aug_states = aug_states if isinstance(aug_states, list) else [aug_states]
        if len(aug_states) == dist.world_size:
            aug_gen.set_state(aug_states[dist.rank])
        torch.set_rng_state(ckpt["rng"]["torch"])
        if real_loss.memory_codes is not None:
            real_loss.memory_codes.copy_(ckpt["extra"]["memory_codes"].to(device))
        start_epoch, history = ckpt["epoch"], ckpt["extra"]["history"]
    net = model
    if dist.enabled:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)

    with_logits = model.classifier is not None

    # ---- train -----------------------------------------------------------------------------
    for epoch in range(start_epoch, hc.epochs):
        net.train()
        order = torch.randperm(n, generator=gen)
        # the epoch's loss sums stay on the device; reading them (every 10 steps) is the
        # loop's only synchronization, so the CPU queues steps ahead of the GPU
        sums = torch.zeros(2, device=device)
        t0 = time.perf_counter()
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{hc.epochs}",
                   disable=not (progress and dist.main), leave=False)
        for i in bar:
            idx = order[i * per_step:(i + 1) * per_step][dist.rank::dist.world_size]
            xb = take(train_x, idx, device)
            if hc.augment:
                xb = augment(xb, aug_gen)
            x = to_input(xb, mean_t, std_t)
            idx = to_device(idx, device)
            y = train_y[idx]
            xf = None
            if fakes is not None:
                fb = take(fakes, torch.randint(len(fakes), (fake_batch,), generator=gen), device)
                if hc.augment:
                    fb = augment(fb, aug_gen)
                xf = to_input(fb, mean_t, std_t)
            if device.type == "cuda" and hc.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
                xf = None if xf is None else xf.contiguous(memory_format=torch.channels_last)
            with autocast(device, dtype):
                if xf is not None and hc.fake_bn == "shared":
                    h, logits = forward(net, torch.cat([x, xf]), with_logits)
                    h, hf = h[:len(x)], h[len(x):]
                    logits = None if logits is None else logits[:len(x)]
                else:
                    h, logits = forward(net, x, with_logits)
                    hf = None
                    if xf is not None:
                        with frozen_bn_statistics(model):
                            hf = forward(net, xf, False)[0]
            loss_r = real_loss(h, y, logits, idx)
            loss_f = (fake_loss(hf, hc.fake_loss) if hf is not None
                      else torch.zeros((), device=device))
            loss = loss_r + hc.lam * loss_f
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            sched.step()
            sums += torch.stack([loss_r.detach(), loss_f.detach()])
            if i % 10 == 0 or i == steps_per_epoch - 1:
                real, fake = (sums / (i + 1)).tolist()
                if not math.isfinite(real + fake):
                    raise HashsdkError(f"loss became {real + fake} by epoch {epoch + 1}, step "
                                       f"{i}; lower the learning rate or lambda")
                bar.set_postfix(real=f"{real:.4f}", fake=f"{fake:.4f}")
        row = dict(epoch=epoch + 1, loss_real=real, loss_fake=fake, lr=sched.get_last_lr()[0],
                   seconds=time.perf_counter() - t0)
        if dist.main and hc.eval_every and (epoch + 1) % hc.eval_every == 0 \
                and epoch + 1 < hc.epochs:
            row["map"] = evaluate_model(model, data, split, device, progress=False).map
        history.append(row)
        aug_states = dist.gather(aug_gen.get_state())
        if dist.main:
            print(json.dumps(row), flush=True)
            checkpoint.save(
                ckpt_path, kind=KIND, model_args=model_args, state_dict=model.state_dict(),
                optimizer=opt.state_dict(), scheduler=sched.state_dict(),
                step=(epoch + 1) * steps_per_epoch, epoch=epoch + 1, config=cfg.to_dict(),
                rng=dict(data=gen.get_state(), augment=aug_states,
                         torch=torch.get_rng_state()),
                extra=dict(history=history, scaler=scaler.state_dict(),
                           memory_codes=(real_loss.memory_codes.cpu()
                                         if real_loss.memory_codes is not None else None)))
            _write_history(run_dir, history)

    # ---- evaluate --------------------------------------------------------------------------
    result = {}
    if dist.main and not evaluate:
        result["epoch_seconds"] = _median_epoch_seconds(history)
    elif dist.main:
        metrics = evaluate_model(model, data, split, device, out_dir=run_dir,
                                 label="with fakes" if fakes is not None else "without fakes",
                                 progress=progress)
        result = metrics.as_dict()
        result["epoch_seconds"] = _median_epoch_seconds(history)
    dist.barrier()
    dist.stop()
    return result


@contextlib.contextmanager
def frozen_bn_statistics(model: torch.nn.Module):
    """BatchNorm layers normalize with the batch's own statistics but leave their running
    statistics alone (momentum 0), so that fakes do not shift what evaluation uses."""
    layers = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in layers]
    for m in layers:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum in zip(layers, saved, strict=True):
            m.momentum = momentum


def forward(net: torch.nn.Module, x: torch.Tensor,
            with_logits: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    if with_logits:
        return net(x, with_logits=True)
    return net(x), None


def _median_epoch_seconds(history: list[dict]) -> float | None:
    return float(np.median([r["seconds"] for r in history])) if history else None


def _write_history(run_dir: Path, history: list[dict]) -> None:
    with atomic_write(run_dir / "history.json") as f:
        f.write((json.dumps(history, indent=1) + "\n").encode())
    epochs = [r["epoch"] for r in history]
    series = {"real loss": (epochs, [r["loss_real"] for r in history])}
    if any(r["loss_fake"] for r in history):
        series["fake loss"] = (epochs, [r["loss_fake"] for r in history])
    plots.curves(run_dir / "loss.png", series, "epoch", "hashing losses")
