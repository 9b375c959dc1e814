"""How long and in what steps a run trains: the batch size and epochs the data decide (where the
config leaves them None), and the learning-rate shape every training loop uses (linear warmup,
then cosine decay).

Batch size and epochs, left None, follow the training split's size n, so that a folder of 60
photos trains as well as 5,000 images do (one optimizer step an epoch, as a fixed batch of 128
gives 60 images, learns nothing):

    batch   n // MIN_STEPS_PER_EPOCH, between MIN_BATCH and MAX_BATCH (128 for n >= 1,024)
    epochs  from scratch, and in frozen-feature mode: 60; fine-tuning a pretrained backbone:
            enough epochs for MIN_STEPS optimizer steps, between 8 and 60 (8 for 5,000 images)
"""

from __future__ import annotations

import dataclasses
import math

MIN_STEPS_PER_EPOCH = 8
MIN_BATCH, MAX_BATCH = 8, 128
MIN_STEPS = 300           # optimizer steps a fine-tuning run takes at least
SCRATCH_EPOCHS = 60
FINETUNE_EPOCHS = (8, 60)


def fit_schedule(hc, n_train: int, world_size: int = 1):
    """``hc`` (a HashConfig) with its batch size and epochs decided where they are None."""
    batch = hc.batch_size or min(MAX_BATCH, max(MIN_BATCH, n_train // MIN_STEPS_PER_EPOCH))
    epochs = hc.epochs
    if epochs is None:
        if hc.pretrained is None or hc.frozen:
            epochs = SCRATCH_EPOCHS
        else:
            steps = max(1, n_train // (batch * world_size))
            low, high = FINETUNE_EPOCHS
            epochs = min(high, max(low, math.ceil(MIN_STEPS / steps)))
    return dataclasses.replace(hc, batch_size=batch, epochs=epochs)


def lr_factor(step: int, total: int, warmup: int) -> float:
    """The factor on the base learning rate at optimizer step ``step`` of ``total``: linear
    warmup over the first ``warmup`` steps, then cosine decay to zero."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
