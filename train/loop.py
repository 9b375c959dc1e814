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
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from hashsdk.errors import HashsdkError
from hashsdk.train import checkpoint, plots
from hashsdk.train.backbones import lookup_backbone
from hashsdk.train.config import (
    DataConfig,
    HashConfig,
    RunConfig,
    differences,
    input_contract,
    write,
)
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
from hashsdk.train.edited import DEFAULT_TRAINING_EDITS, edit_batch
from hashsdk.train.evaluate import evaluate_model, normalizer, to_input
from hashsdk.train.losses import RealLoss, fake_loss
from hashsdk.train.losses import lookup as lookup_loss
from hashsdk.train.mix import Mix, mix_batch
from hashsdk.train.model import KIND, HashNet, create_model
from hashsdk.train.schedule import fit_schedule, lr_factor


def augment(x: torch.Tensor, gen: torch.Generator, crop: str = "pad",
            pad: int = 4) -> torch.Tensor:
    """A random crop and a horizontal flip of uint8 (B, H, W, C) images; ``crop`` "pad" pads
    ``pad`` pixels and cuts the input size back out (for small inputs), "resized" is
    resized_crop's (for large ones).

    The draws come from ``gen`` (a CPU generator) wherever ``x`` lives, so a run draws the same
    numbers on every device; on CUDA only the crop indices cross over, and the images stay on
    the GPU.
    """
    if crop == "resized":
        return resized_crop(x, gen)
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


def trivial_augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """TrivialAugment (torchvision's TrivialAugmentWide) on each of the (B, H, W, C) images,
    uint8 or float in [0, 255] (resized_crop's); returns uint8 on x's device. torchvision draws
    from torch's global generator: it runs inside fork_rng, seeded from ``gen``, so that a run
    stays reproducible and the global stream untouched."""
    from torchvision.transforms import v2

    op = v2.TrivialAugmentWide()
    seed = int(torch.randint(2**62, (1,), generator=gen))
    u8 = x if x.dtype == torch.uint8 else x.round().clamp(0, 255).to(torch.uint8)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        out = torch.stack([op(image) for image in u8.permute(0, 3, 1, 2).cpu()])
    return out.permute(0, 2, 3, 1).to(x.device)


def resized_crop(x: torch.Tensor, gen: torch.Generator, scale: tuple[float, float] = (0.25, 1.0),
                 ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> torch.Tensor:
    """Random-resized crop and flip of uint8 (B, H, W, C) images, back to (H, W): each crop
    covers ``scale`` of the area at an aspect ratio in ``ratio`` (log-uniform), clipped to the
    image, at a uniform place; bilinear (torchvision's roi_align). Returns float (B, H, W, C)
    in [0, 255]. The draws come from ``gen`` on the CPU, as in augment."""
    from torchvision.ops import roi_align

    b, h, w, _ = x.shape
    area = torch.empty(b).uniform_(*scale, generator=gen) * h * w
    log_r = torch.empty(b).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=gen)
    cw = (area * log_r.exp()).sqrt().clamp(1, w)
    ch = (area / log_r.exp()).sqrt().clamp(1, h)
    x0 = torch.rand(b, generator=gen) * (w - cw)
    y0 = torch.rand(b, generator=gen) * (h - ch)
    flip = torch.rand(b, generator=gen) < 0.5
    boxes = torch.stack([torch.arange(b, dtype=torch.float32), x0, y0, x0 + cw, y0 + ch], 1)
    out = roi_align(x.permute(0, 3, 1, 2).float(), to_device(boxes, x.device), (h, w),
                    sampling_ratio=2, aligned=True)
    out = torch.where(to_device(flip, x.device)[:, None, None, None], out.flip(3), out)
    return out.permute(0, 2, 3, 1)


def load_fakes(path: str | Path, like: np.ndarray, cfg_data: DataConfig | None = None
               ) -> np.ndarray:
    """The fake bank: uint8 (N, H, W, C), checked against the real images' channels and, where
    its size differs from theirs, fitted to it as the real images were (``cfg_data``'s resize
    and interpolation, through the input contract): fakes go through the same resize and then
    the same normalization as real images."""
    try:
        with np.load(path, allow_pickle=False) as f:
            fakes = f["images"]
    except FileNotFoundError:
        raise HashsdkError(f"fake bank not found: {path}; run `hashsdk-train gan` first") from None
    except (KeyError, ValueError, OSError) as exc:
        raise HashsdkError(f"{path}: not a fake bank (expected an .npz with 'images'; {exc})"
                           ) from None
    if fakes.dtype == np.uint8 and fakes.ndim == 4 and len(fakes) and cfg_data is not None \
            and fakes.shape[3] == like.shape[3] and fakes.shape[1:3] != like.shape[1:3]:
        fakes = input_contract(cfg_data, like.shape[3]).fit_batch(fakes)
    if fakes.dtype != np.uint8 or fakes.shape[1:] != like.shape[1:] or len(fakes) == 0:
        raise HashsdkError(f"{path}: expected uint8 fakes shaped (N,) + {like.shape[1:]}, got "
                           f"{fakes.dtype} {fakes.shape}")
    return fakes


@dataclass
class _Run:
    """Everything one training run holds: data where the model runs, the model and its
    optimizer, schedule and scaler, the loss, and the two random generators."""

    hc: HashConfig
    device: torch.device
    train_x: torch.Tensor          # uint8 (n, H, W, C), placed by place_images
    train_y: torch.Tensor          # labels, on the device
    fakes: torch.Tensor | None     # uint8 (m, H, W, C) or None
    fake_batch: int
    per_step: int                  # images per step over all ranks
    steps_per_epoch: int
    model: HashNet
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    dtype: torch.dtype | None      # autocast dtype, None for full precision
    real_loss: RealLoss
    gen: torch.Generator           # data order and fake sampling
    aug_gen: torch.Generator       # augmentation, one per rank
    scale: torch.Tensor  # the input contract's normalization (evaluate.to_input)
    offset: torch.Tensor
    ema: torch.optim.swa_utils.AveragedModel | None = None  # hash.ema's average, or None
    views: bool = False  # the loss needs_views: each batch gains an edited copy of each image


def train_hash(cfg: RunConfig, data: ImageSet, split: Split, run_dir: Path,
               resume: bool = True, progress: bool = True, evaluate: bool = True) -> dict:
    """Trains and evaluates a hashing network; returns the final metrics as a dict, with
    ``epoch_seconds``, the median epoch's wall time. ``evaluate=False`` skips the evaluation
    (the dict then holds ``epoch_seconds`` alone), for timing runs."""
    run_dir = Path(run_dir)
    # the config as given is what checkpoints record and resumes compare; the run trains with
    # its batch size and epochs decided by the data where the config leaves them None
    if cfg.hash.frozen:
        from hashsdk.train.frozen import train_frozen

        hc = fit_schedule(cfg.hash, len(split.train))
        torch.manual_seed(hc.seed)  # the hash layer's initialization
        fakes = load_fakes(hc.fakes, data.images, cfg.data) if uses_fakes(hc) else None
        return train_frozen(cfg, hc, build_model(hc, cfg.data, data, split), data, split,
                            run_dir, fakes, progress)
    device = resolve_device(cfg.hash.device)
    dist = Distributed.start(device)
    hc = fit_schedule(cfg.hash, len(split.train), dist.world_size)
    torch.manual_seed(hc.seed)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: pick the fastest kernels once
    if dist.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write(cfg, run_dir / "config.json")
    r = _build(hc, cfg.data, data, split, device, dist)
    ckpt_path = run_dir / "checkpoint.pt"
    start_epoch, history = 0, []
    if resume and ckpt_path.exists():
        start_epoch, history = _restore(r, ckpt_path, cfg, dist)
    net = r.model
    if dist.enabled:
        net = torch.nn.parallel.DistributedDataParallel(
            r.model, device_ids=[device.index] if device.type == "cuda" else None)

    for epoch in range(start_epoch, hc.epochs):
        row = _epoch(r, net, epoch, dist, progress and dist.main)
        if dist.main and hc.eval_every and (epoch + 1) % hc.eval_every == 0 \
                and epoch + 1 < hc.epochs:
            row["map"] = evaluate_model(r.model, data, split, device, progress=False).map
        history.append(row)
        _save(r, ckpt_path, cfg, epoch + 1, history, dist, progress)
    if r.ema is not None:  # the average is the network the run gives
        r.model.load_state_dict(r.ema.module.state_dict())
    if _balance(r, data, split):
        _save(r, ckpt_path, cfg, hc.epochs, history, dist, say=False)

    result = _finish(r, data, split, run_dir, history, evaluate, progress) if dist.main else {}
    dist.barrier()
    dist.stop()
    return result


def _balance(r: _Run, data: ImageSet, split: Split) -> bool:
    """For a loss whose bits are balanced (train/frozen.py's BALANCED), each bit's threshold
    moves to the median of the training images' outputs (``centre_bits``), in the network
    and in its average; returns whether it did."""
    from hashsdk.train.evaluate import encode
    from hashsdk.train.frozen import BALANCED, centre_bits

    if r.hc.loss not in BALANCED:
        return False
    feats = encode(r.model, data.images[split.train], r.device, features=True)
    centre_bits(r.model, feats, r.device)
    if r.ema is not None:
        r.ema.module.load_state_dict(r.model.state_dict())
    return True


def _build(hc: HashConfig, cfg_data: DataConfig, data: ImageSet, split: Split,
           device: torch.device, dist: Distributed) -> _Run:
    """The data on the device, the model, optimizer, schedule, loss and generators."""
    # the training split as one uint8 tensor; fakes likewise. On CUDA both live on the GPU,
    # decoded once, and each step moves only its indices
    train_x = place_images(torch.from_numpy(data.images[split.train]), device)
    labels = data.labels[split.train]
    train_y = torch.from_numpy(labels.astype(np.int64) if labels.ndim == 1 else labels)
    fakes = None
    if uses_fakes(hc):
        fakes = place_images(torch.from_numpy(load_fakes(hc.fakes, data.images, cfg_data)),
                             device)
    per_step = hc.batch_size * dist.world_size
    steps_per_epoch = max(1, len(train_x) // per_step)
    model = build_model(hc, cfg_data, data, split)
    model.to(device)
    if hc.channels_last:  # CUDA and CPU alike (benchmarks/results/cpu-speed.md)
        model = model.to(memory_format=torch.channels_last)
    opt, sched = _optimizer(model, hc, steps_per_epoch)
    dtype = amp_dtype(device, hc.amp)
    train_y = train_y.to(device)
    return _Run(
        hc, device, train_x, train_y, fakes,
        max(1, round(hc.batch_size * hc.fake_ratio)) if fakes is not None else 0,
        per_step, steps_per_epoch, model, opt, sched,
        torch.amp.GradScaler("cuda", enabled=dtype == torch.float16), dtype,
        RealLoss(hc.loss, hc.quantization, hc.margin, train_y, hc.bits,
                 memory=hc.pairwise_memory, codewords=hc.codewords,
                 label_smoothing=hc.label_smoothing, koleo=hc.koleo),
        torch.Generator().manual_seed(hc.seed),
        torch.Generator().manual_seed(hc.seed * 1000 + dist.rank),
        *normalizer(model.contract, device), average(model, hc.ema),
        lookup_loss(hc.loss).needs_views)


def average(model: HashNet, decay: float) -> torch.optim.swa_utils.AveragedModel | None:
    """An exponential moving average of ``model``'s weights and BatchNorm statistics, or None
    for decay 0."""
    if not decay:
        return None
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def uses_fakes(hc: HashConfig) -> bool:
    return hc.fakes is not None and hc.lam > 0 and hc.fake_ratio > 0


def build_model(hc: HashConfig, cfg_data: DataConfig, data: ImageSet, split: Split) -> HashNet:
    """The network of a run, before training: its backbone (with its weights), the hash
    layer, and the input contract. A pretrained backbone keeps the normalization it was
    trained with; one trained from scratch takes the training images' own."""
    pretrained = lookup_backbone(hc.backbone).contract(hc.pretrained)
    mean, std = (pretrained.mean, pretrained.std) if pretrained else \
        channel_stats(data.images[split.train])
    if len(mean) != data.channels:  # grey images into RGB weights: one channel, their average
        mean, std = ([sum(v) / len(v)] * data.channels for v in (mean, std))
    contract = input_contract(cfg_data, data.channels, mean, std)
    if data.images.shape[1] != contract.size:  # the loader fits every image to the contract
        raise HashsdkError(f"images of {data.images.shape[1]} px for a {contract.size} px "
                           "input contract")
    classes = len(data.classes) if lookup_loss(hc.loss).needs_classifier else 0
    return create_model(hc.backbone, hc.bits, contract=contract, num_classes=classes,
                        stem32=hc.stem32, pretrained=hc.pretrained, width=hc.width,
                        flip_average=hc.flip_average, mirror_invariant=hc.mirror_invariant,
                        input_blur=hc.input_blur, feature_block=hc.feature_block,
                        input_median=hc.input_median, feature_pool=hc.feature_pool,
                        dct_features=hc.dct_features)


def _optimizer(model: HashNet, hc: HashConfig, steps_per_epoch: int
               ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """Two parameter groups, the backbone's at ``backbone_lr`` times the head's (and at 0
    for the first ``freeze_backbone_epochs``); warmup, then cosine decay, for both."""
    groups = [{"params": list(model.features.parameters())},
              {"params": [p for n, p in model.named_parameters()
                          if not n.startswith("features.")]}]
    if hc.optimizer == "adamw":
        opt = torch.optim.AdamW(groups, lr=hc.lr, weight_decay=hc.weight_decay)
    else:
        opt = torch.optim.SGD(groups, lr=hc.lr, momentum=hc.momentum,
                              weight_decay=hc.weight_decay, nesterov=True)
    total, warmup = steps_per_epoch * hc.epochs, int(hc.warmup_epochs * steps_per_epoch)
    frozen = hc.freeze_backbone_epochs * steps_per_epoch

    def backbone(step: int) -> float:
        return 0.0 if step < frozen else hc.backbone_lr * lr_factor(step, total, warmup)

    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, [backbone, lambda step: lr_factor(step, total, warmup)])
    return opt, sched


def _restore(r: _Run, ckpt_path: Path, cfg: RunConfig, dist: Distributed
             ) -> tuple[int, list[dict]]:
    """Loads every state of the checkpoint into ``r``; returns (epochs done, history)."""
    ckpt = checkpoint.load(ckpt_path, KIND)
    changed = differences(ckpt["config"], cfg)
    if changed:
        raise HashsdkError(f"{ckpt_path} was trained with another config "
                           f"({', '.join(changed)}); use a new run directory, or pass "
                           "--no-resume to start over")
    r.model.load_state_dict(ckpt["state_dict"])
    optimizer, scheduler = _two_groups(ckpt["optimizer"], ckpt["scheduler"], r.opt)
    r.opt.load_state_dict(optimizer)
    r.sched.load_state_dict(scheduler)
    r.scaler.load_state_dict(ckpt["extra"]["scaler"])
    r.gen.set_state(ckpt["rng"]["data"])
    # one augmentation state per rank; a run resumed on another number of processes keeps
    # its fresh per-rank seeds, so that ranks never augment alike
    aug_states = ckpt["rng"]["augment"]
    aug_states = aug_states if isinstance(aug_states, list) else [aug_states]
    if len(aug_states) == dist.world_size:
        r.aug_gen.set_state(aug_states[dist.rank])
    torch.set_rng_state(ckpt["rng"]["torch"])
    if r.real_loss.memory_codes is not None:
        r.real_loss.memory_codes.copy_(ckpt["extra"]["memory_codes"].to(r.device))
    if r.ema is not None:
        r.ema.load_state_dict(ckpt["extra"]["ema"])
    return ckpt["epoch"], ckpt["extra"]["history"]


def _two_groups(optimizer: dict, scheduler: dict, opt: torch.optim.Optimizer
                ) -> tuple[dict, dict]:
    """Optimizer and scheduler states of checkpoints from before the backbone had a group of
    its own (one group) in today's two groups. Parameters keep their order (backbone first),
    so the per-parameter state carries over as it is."""
    if len(optimizer["param_groups"]) != 1 or len(opt.param_groups) != 2:
        return optimizer, scheduler
    old = optimizer["param_groups"][0]
    groups = [dict(old, params=g["params"]) for g in opt.state_dict()["param_groups"]]
    scheduler = dict(scheduler, base_lrs=scheduler["base_lrs"] * 2,
                     _last_lr=scheduler["_last_lr"] * 2,
                     lr_lambdas=[None, None])
    return dict(optimizer, param_groups=groups), scheduler


def _epoch(r: _Run, net: torch.nn.Module, epoch: int, dist: Distributed,
           progress: bool) -> dict:
    """One pass over the training split; returns the epoch's history row."""
    net.train()
    order = torch.randperm(len(r.train_x), generator=r.gen)
    # the epoch's loss sums stay on the device; reading them (every 10 steps) is the loop's
    # only synchronization, so the CPU queues steps ahead of the GPU
    sums = torch.zeros(2, device=r.device)
    t0 = time.perf_counter()
    bar = tqdm(range(r.steps_per_epoch), desc=f"epoch {epoch + 1}/{r.hc.epochs}",
               disable=not progress, leave=False)
    for i in bar:
        idx = order[i * r.per_step:(i + 1) * r.per_step][dist.rank::dist.world_size]
        loss_r, loss_f = _step(r, net, *_batch(r, idx))
        sums += torch.stack([loss_r.detach(), loss_f.detach()])
        if i % 10 == 0 or i == r.steps_per_epoch - 1:
            real, fake = (sums / (i + 1)).tolist()
            if not math.isfinite(real + fake):
                raise HashsdkError(f"loss became {real + fake} by epoch {epoch + 1}, step {i}; "
                                   "lower the learning rate or lambda")
            bar.set_postfix(real=f"{real:.4f}", fake=f"{fake:.4f}")
    return dict(epoch=epoch + 1, loss_real=real, loss_fake=fake, lr=r.sched.get_last_lr()[-1],
                seconds=time.perf_counter() - t0)


def _batch(r: _Run, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                 torch.Tensor | None, Mix | None]:
    """The step's inputs on the device: real images x (B, C, H, W), labels y, indices idx,
    fakes xf (F, C, H, W) or None, and how x was mixed (hash.mixup, hash.cutmix) or None;
    augmented, normalized and in the model's layout."""
    xb = take(r.train_x, idx, r.device)
    if r.views:  # the batch, then an edited copy of each image in the same order
        xb = torch.cat([xb, edited_copies(xb, r.model.contract, r.aug_gen, r.hc.training_edits)])
    if r.hc.augment:
        xb = augment(xb, r.aug_gen, r.hc.crop)
    if r.hc.augment_policy == "trivial":
        xb = trivial_augment(xb, r.aug_gen)
    x, mix = mix_batch(to_input(xb, r.scale, r.offset), r.aug_gen, r.hc.mixup, r.hc.cutmix)
    idx = to_device(idx, r.device)
    xf = None
    if r.fakes is not None:
        fb = take(r.fakes, torch.randint(len(r.fakes), (r.fake_batch,), generator=r.gen),
                  r.device)
        if r.hc.augment:
            fb = augment(fb, r.aug_gen, r.hc.crop)
        if r.hc.augment_policy == "trivial":
            fb = trivial_augment(fb, r.aug_gen)
        xf = to_input(fb, r.scale, r.offset)
    if r.hc.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
        xf = None if xf is None else xf.contiguous(memory_format=torch.channels_last)
    return x, r.train_y[idx], idx, xf, mix


def edited_copies(x: torch.Tensor, contract, gen: torch.Generator,
                  edits: str = DEFAULT_TRAINING_EDITS) -> torch.Tensor:
    """One edited copy (train/edited.py) of each uint8 (B, H, W, C) image, on x's device; the
    edits draw from a numpy generator seeded from ``gen``, so a run stays reproducible."""
    rng = np.random.default_rng(int(torch.randint(2**62, (1,), generator=gen)))
    return torch.from_numpy(edit_batch(x.cpu().numpy(), contract, rng, edits)).to(x.device)


def _step(r: _Run, net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor,
          xf: torch.Tensor | None, mix: Mix | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """L = L_real + lambda * L_fake, one optimizer step; returns (L_real, L_fake)."""
    with_logits = r.model.classifier is not None
    with autocast(r.device, r.dtype):
        if xf is not None and r.hc.fake_bn == "shared":
            h, logits = forward(net, torch.cat([x, xf]), with_logits)
            h, hf = h[:len(x)], h[len(x):]
            logits = None if logits is None else logits[:len(x)]
        else:
            h, logits = forward(net, x, with_logits)
            hf = None
            if xf is not None:
                with frozen_bn_statistics(r.model):
                    hf = forward(net, xf, False)[0]
    loss_r = r.real_loss(h, y, logits, idx, mix)
    loss_f = (fake_loss(hf, r.hc.fake_loss) if hf is not None
              else torch.zeros((), device=r.device))
    r.opt.zero_grad(set_to_none=True)
    r.scaler.scale(loss_r + r.hc.lam * loss_f).backward()
    r.scaler.step(r.opt)
    r.scaler.update()
    r.sched.step()
    if r.ema is not None:
        r.ema.update_parameters(r.model)
    return loss_r, loss_f


def _save(r: _Run, ckpt_path: Path, cfg: RunConfig, epochs_done: int, history: list[dict],
          dist: Distributed, say: bool) -> None:
    """The checkpoint and history after an epoch (rank 0 writes; every rank's augmentation
    state is gathered first, a collective); with ``say``, the epoch's line."""
    aug_states = dist.gather(r.aug_gen.get_state())
    if not dist.main:
        return
    if say:
        print(epoch_line(history[-1], r.hc.epochs), flush=True)
    memory = r.real_loss.memory_codes
    # the last epoch's checkpoint holds the average, where there is one: what export takes
    final = r.ema.module if r.ema is not None and epochs_done == r.hc.epochs else r.model
    checkpoint.save(
        ckpt_path, kind=KIND, model_args=r.model.model_args, state_dict=final.state_dict(),
        optimizer=r.opt.state_dict(), scheduler=r.sched.state_dict(),
        step=epochs_done * r.steps_per_epoch, epoch=epochs_done, config=cfg.to_dict(),
        rng=dict(data=r.gen.get_state(), augment=aug_states, torch=torch.get_rng_state()),
        extra=dict(history=history, scaler=r.scaler.state_dict(),
                   memory_codes=memory.cpu() if memory is not None else None,
                   ema=r.ema.state_dict() if r.ema is not None else None))
    plots.write_history(ckpt_path.parent, history)


def epoch_line(row: dict, epochs: int) -> str:
    """One epoch of history as people read it (history.json keeps every digit)."""
    line = f"epoch {row['epoch']}/{epochs}  loss {row['loss_real']:.4f}"
    if row.get("loss_fake"):
        line += f" (fakes {row['loss_fake']:.4f})"
    line += f"  lr {row['lr']:.1e}  {row['seconds']:.1f} s"
    return line + (f"  mAP {row['map']:.4f}" if "map" in row else "")


def _finish(r: _Run, data: ImageSet, split: Split, run_dir: Path, history: list[dict],
            evaluate: bool, progress: bool) -> dict:
    """The final metrics (eval.json, ap.npy, pr.png) and the median epoch time."""
    result = {}
    if evaluate:
        metrics = evaluate_model(r.model, data, split, r.device, out_dir=run_dir,
                                 label="with fakes" if r.fakes is not None else "without fakes",
                                 progress=progress)
        result = metrics.as_dict()
    result["epoch_seconds"] = (float(np.median([row["seconds"] for row in history]))
                               if history else None)
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


