"""Where training runs: CPU or CUDA, mixed precision, and multi-GPU through torchrun.

Under ``torchrun --nproc_per_node N hashsdk-train hash ...`` the environment carries RANK,
LOCAL_RANK and WORLD_SIZE; ``Distributed.start`` then joins the process group (NCCL on CUDA,
gloo on CPU) and each process drives its own GPU.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any

import torch

from hashsdk.errors import HashsdkError


@dataclass
class Distributed:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def start(cls, device: torch.device) -> Distributed:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        return cls(dist.get_rank(), int(os.environ.get("LOCAL_RANK", "0")), world)

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order, on every rank (a collective: all ranks call)."""
        if not self.enabled:
            return [obj]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.enabled:
            import torch.distributed as dist

            dist.barrier()

    def stop(self) -> None:
        if self.enabled:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


def resolve_device(name: str) -> torch.device:
    """"auto" is CUDA where it is available (this process's LOCAL_RANK GPU), else CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise HashsdkError("device 'cuda' asked for, but torch sees no CUDA GPU")
        if name == "cuda":
            name = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        torch.cuda.set_device(torch.device(name))
    elif name != "cpu":
        raise HashsdkError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {name!r}")
    return torch.device(name)


def amp_dtype(device: torch.device, amp: str) -> torch.dtype | None:
    """The autocast dtype, or None for full precision. AMP is for CUDA only."""
    if device.type != "cuda" or amp == "off":
        return None
    if amp == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[amp]


def autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A small CPU tensor on ``device``; to CUDA through pinned memory, so that the copy does
    not wait for the GPU (a copy from pageable memory synchronizes the stream)."""
    if device.type != "cuda":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)


# Training images kept on the GPU up to this size (CIFAR-10's 5,000 are 15 MB); a larger
# training split stays in pinned host memory and each batch is copied over.
DEVICE_DATA_BYTES = 4 << 30


def place_images(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 images where batches are cut from them: on the GPU when they fit, else host."""
    if device.type != "cuda":
        return images
    if images.numel() * images.element_size() <= DEVICE_DATA_BYTES:
        return images.to(device)
    return images.pin_memory()


def take(images: torch.Tensor, idx: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Rows ``idx`` (a CPU int64 tensor) of ``images`` (placed by place_images), on device."""
    if images.device == device:
        return images[to_device(idx, device)]
    return to_device(images[idx], device)
