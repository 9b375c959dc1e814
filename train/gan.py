"""Stage 1: a DCGAN (Radford et al.) at 32x32 or 64x64 (its paper's resolution), trained on the
training split only.

Resolution (``gan.image_size``): 64 where the run's images are at least 64 pixels, else 32;
the training images are fitted to it first (the input contract's ``fit``, as the data loader
fits them), and the hashing stage fits the fakes back to the run's size (train/loop.py's
``load_fakes``), so fakes and real images go through the same resize and normalization. A
64x64 DCGAN adds one stage to each network (4 -> 64 in the generator, 64 -> 4 in the
discriminator), as the DCGAN paper's.

No labels and no extra data: the discriminator sees the protocol's training images (5,000
for CIFAR-10), nothing else. Adam at 2e-4 with betas (0.5, 0.999), and one-sided label
smoothing (Salimans et al.): real targets are 1 - smoothing, fake targets stay 0.

Files in the GAN directory: config.json, generator.pt (checkpoint, rebuilt from model_args),
samples/step_NNNNNN.png (a fixed-noise grid every ``sample_every`` steps), losses.csv and
losses.png, and fakes.npz: ``images``, uint8 (N, S, S, C) with S the GAN's resolution, the
fake bank of stage 2.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from hashsdk._atomic import atomic_write
from hashsdk.encoder.contract import InputContract
from hashsdk.errors import HashsdkError
from hashsdk.train import checkpoint, plots
from hashsdk.train.config import RunConfig, write
from hashsdk.train.data import ImageSet, Split
from hashsdk.train.device import place_images, resolve_device, take, to_device

KIND = "hashsdk.dcgan"


def _init(module: nn.Module) -> None:
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


SIZES = (32, 64)


def _up(cin: int, cout: int) -> list[nn.Module]:
    return [nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout),
            nn.ReLU(True)]


def _down(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout),
            nn.LeakyReLU(0.2, True)]


class Generator(nn.Module):
    """z (B, z_dim) to images (B, channels, size, size) in [-1, 1], size 32 or 64."""

    def __init__(self, z_dim: int = 100, width: int = 64, channels: int = 3, size: int = 32):
        super().__init__()
        if size not in SIZES:
            raise HashsdkError(f"the DCGAN makes images of {SIZES} pixels, not {size}")
        self.model_args = dict(z_dim=z_dim, width=width, channels=channels, size=size)
        w, top = width, (4 if size == 32 else 8)  # channels of the 4x4 stage, over width
        layers: list[nn.Module] = [nn.ConvTranspose2d(z_dim, top * w, 4, 1, 0, bias=False),
                                   nn.BatchNorm2d(top * w), nn.ReLU(True)]      # 4x4
        while top > 1:                                                         # to size / 2
            layers += _up(top * w, top // 2 * w)
            top //= 2
        layers += [nn.ConvTranspose2d(w, channels, 4, 2, 1, bias=False), nn.Tanh()]  # size
        self.net = nn.Sequential(*layers)
        self.apply(_init)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z[:, :, None, None])


class Discriminator(nn.Module):
    """Images (B, channels, size, size) to real/fake logits (B,), size 32 or 64."""

    def __init__(self, width: int = 64, channels: int = 3, size: int = 32):
        super().__init__()
        w, top = width, (4 if size == 32 else 8)
        layers: list[nn.Module] = [nn.Conv2d(channels, w, 4, 2, 1, bias=False),
                                   nn.LeakyReLU(0.2, True)]                     # size / 2
        c = 1
        while c < top:                                                         # to 4x4
            layers += _down(c * w, 2 * c * w)
            c *= 2
        layers += [nn.Conv2d(top * w, 1, 4, 1, 0, bias=False)]
        self.net = nn.Sequential(*layers)
        self.apply(_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten()


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """[-1, 1] (B, C, H, W) to uint8 (B, H, W, C)."""
    return ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8) \
        .permute(0, 2, 3, 1).cpu().numpy()


def load_generator(path: str | Path) -> Generator:
    ckpt = checkpoint.load(path, KIND)
    g = Generator(**ckpt["model_args"])
    g.load_state_dict(ckpt["state_dict"])
    return g.eval()


@torch.inference_mode()
def generate(g: Generator, n: int, seed: int, device: torch.device,
             batch_size: int = 500) -> np.ndarray:
    """n fake images, uint8 (n, S, S, C) at the generator's resolution S."""
    gen = torch.Generator().manual_seed(seed)
    z_dim = g.model_args["z_dim"]
    g.eval()
    out = [to_uint8(g(torch.randn(min(batch_size, n - s), z_dim, generator=gen).to(device)))
           for s in range(0, n, batch_size)]
    return np.concatenate(out)


def train_gan(cfg: RunConfig, data: ImageSet, split: Split, out_dir: Path,
              progress: bool = True) -> Path:
    """Trains the DCGAN and writes its files; returns the path of fakes.npz."""
    gc = cfg.gan
    out_dir = Path(out_dir)
    (out_dir / "samples").mkdir(parents=True, exist_ok=True)
    write(cfg, out_dir / "config.json")
    size = gan_size(cfg, data.images.shape[1])
    images = data.images[split.train]
    if images.shape[1] != size:
        images = InputContract(size).fit_batch(images)  # squares: a plain bilinear resize
    device = resolve_device(gc.device)
    torch.manual_seed(gc.seed)
    gen = torch.Generator().manual_seed(gc.seed)
    channels = images.shape[3]
    g = Generator(gc.z_dim, gc.width, channels, size).to(device)
    d = Discriminator(gc.width, channels, size).to(device)
    opt_g = torch.optim.Adam(g.parameters(), lr=gc.lr, betas=(gc.beta1, gc.beta2))
    opt_d = torch.optim.Adam(d.parameters(), lr=gc.lr, betas=(gc.beta1, gc.beta2))
    # the training images live where the networks run (on CUDA: decoded once, on the GPU);
    # the draws come from the CPU generator on every device, so CPU and CUDA runs draw alike
    real_x = place_images(torch.from_numpy(images), device)
    fixed_z = torch.randn(64, gc.z_dim, generator=gen).to(device)
    rows: list[tuple] = []
    pending: list[torch.Tensor] = []  # per-step statistics, read back at each sample
    for step in tqdm(range(1, gc.steps + 1), desc="GAN", disable=not progress):
        xb = take(real_x, torch.randint(len(real_x), (gc.batch_size,), generator=gen), device)
        xb = xb.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)
        z = to_device(torch.randn(gc.batch_size, gc.z_dim, generator=gen), device)
        pending.append(_step(g, d, opt_g, opt_d, xb, z, 1.0 - gc.label_smoothing))
        if step % gc.sample_every == 0 or step == gc.steps:
            rows += [(len(rows) + 1 + k, *values) for k, values in
                     enumerate(torch.stack(pending).tolist())]
            pending.clear()
            g.eval()
            with torch.inference_mode():
                grid = plots.image_grid(to_uint8(g(fixed_z)))
            g.train()
            plots.save_png(out_dir / "samples" / f"step_{step:06d}.png", grid, scale=2)
            _write_losses(out_dir, rows)
    checkpoint.save(out_dir / "generator.pt", kind=KIND, model_args=g.model_args,
                    state_dict=g.state_dict(), optimizer=opt_g.state_dict(), scheduler=None,
                    step=gc.steps, epoch=0, config=cfg.to_dict(),
                    rng=dict(data=gen.get_state()),
                    extra=dict(discriminator=d.state_dict(), optimizer_d=opt_d.state_dict()))
    return _write_fakes(g, out_dir, gc.num_fakes or len(images), gc.seed + 1, device)


def gan_size(cfg: RunConfig, image_size: int) -> int:
    """The DCGAN's resolution: ``gan.image_size``, else 64 where the run's images are at
    least 64 pixels, else 32."""
    size = cfg.gan.image_size or (64 if image_size >= 64 else 32)
    if size not in SIZES:
        raise HashsdkError(f"gan.image_size: expected one of {SIZES}, got {size}")
    return size


def _step(g: Generator, d: Discriminator, opt_g: torch.optim.Optimizer,
          opt_d: torch.optim.Optimizer, xb: torch.Tensor, z: torch.Tensor,
          real_target: float) -> torch.Tensor:
    """One discriminator and one generator update; returns (loss_d, loss_g, D(real),
    D(fake)) as a tensor on the device, so that the loop need not wait for it."""
    bce = nn.functional.binary_cross_entropy_with_logits
    fake = g(z)
    # discriminator: real toward 1 - smoothing, fake toward 0
    d_real, d_fake = d(xb), d(fake.detach())
    loss_d = bce(d_real, torch.full_like(d_real, real_target)) + \
        bce(d_fake, torch.zeros_like(d_fake))
    opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    opt_d.step()
    # generator: make the discriminator call fakes real
    d_fake = d(fake)
    loss_g = bce(d_fake, torch.ones_like(d_fake))
    opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    opt_g.step()
    return torch.stack([loss_d.detach(), loss_g.detach(), torch.sigmoid(d_real.detach()).mean(),
                        torch.sigmoid(d_fake.detach()).mean()])


def _write_fakes(g: Generator, out_dir: Path, n: int, seed: int, device: torch.device) -> Path:
    """The fake bank (fakes.npz) and a grid of its first 64 (fakes.png)."""
    fakes = generate(g, n, seed, device)
    with atomic_write(out_dir / "fakes.npz") as f:
        np.savez(f, images=fakes)
    plots.save_png(out_dir / "fakes.png", plots.image_grid(fakes[:64]), scale=2)
    return out_dir / "fakes.npz"


def _write_losses(out_dir: Path, rows: list[tuple]) -> None:
    with atomic_write(out_dir / "losses.csv") as f:
        text = "step,loss_d,loss_g,d_real,d_fake\n" + "".join(
            f"{s},{a:.5f},{b:.5f},{c:.4f},{e:.4f}\n" for s, a, b, c, e in rows)
        f.write(text.encode())
    steps = [r[0] for r in rows]
    window = max(1, len(rows) // 100)

    def smooth(values: list[float]) -> list[float]:
        return plots.moving_average(values, window)

    plots.curves(out_dir / "losses.png", {"discriminator": (steps, smooth([r[1] for r in rows])),
                                          "generator": (steps, smooth([r[2] for r in rows]))},
                 "step", "DCGAN losses")

