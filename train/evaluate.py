"""Evaluation: encode the split's queries and database, score with hashsdk.metrics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from hashsdk import RetrievalMetrics, evaluate, pack_bits
from hashsdk._atomic import atomic_write
from hashsdk.encoder.contract import InputContract
from hashsdk.metrics import average_precisions, mean_average_precision
from hashsdk.train import plots
from hashsdk.train.data import ImageSet, Split


def normalizer(contract: InputContract, device: torch.device | str
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """The contract's (scale, offset), float32 (C,) each on ``device``, for ``to_input``."""
    return tuple(torch.from_numpy(v).to(device) for v in contract.scale_offset())


def to_input(images: torch.Tensor, scale: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """uint8 (B, H, W, C) to normalized float (B, C, H, W): x * scale - offset, the Encoder's
    arithmetic (hashsdk.encoder.contract)."""
    x = images.permute(0, 3, 1, 2).float()
    return x * scale[:, None, None] - offset[:, None, None]


def memory_format(model: torch.nn.Module) -> torch.memory_format:
    """channels_last where the model's convolutions are (training makes them so, see
    loop.build_model): an NCHW input would send every convolution down the slow path, 2.5x
    slower at 96 px on the CPU (benchmarks/results/cpu-speed.md)."""
    for p in model.parameters():
        if p.dim() == 4:
            return torch.channels_last if p.is_contiguous(memory_format=torch.channels_last) \
                and not p.is_contiguous() else torch.contiguous_format
    return torch.contiguous_format


# On the CPU, a large encode runs the network through onnxruntime, as the Encoder will: 2.5x
# eager torch's speed for EfficientNet-Lite0 at 64 px on 2 cores, outputs within 1e-5 of
# torch's. Below ORT_MIN_IMAGES the export (about a second) costs more than it saves.
ORT_MIN_IMAGES = 4096


class _Encodes(torch.nn.Module):
    """uint8 (B, H, W, C) -> the network's outputs (B, bits), or its features (B, F)."""

    def __init__(self, model: torch.nn.Module, scale: torch.Tensor, offset: torch.Tensor,
                 features: bool):
        super().__init__()
        self.model, self.features = model, features
        self.register_buffer("scale", scale)
        self.register_buffer("offset", offset)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = to_input(images, self.scale, self.offset).contiguous(
            memory_format=memory_format(self.model))
        return self.model.embed(x) if self.features else self.model(x)


def _onnx_runner(module: _Encodes, example: torch.Tensor):
    """``module`` exported to ONNX in memory and run by onnxruntime on the CPU with torch's
    thread count: a function uint8 tensor -> float32 array; None where the export fails."""
    import io
    import warnings

    import onnxruntime as ort

    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():  # the exporter's deprecation and tracing notes
            warnings.simplefilter("ignore")
            torch.onnx.export(module, (example,), buffer, dynamo=False, opset_version=17,
                              input_names=["images"], output_names=["outputs"],
                              dynamic_axes={"images": {0: "batch"}, "outputs": {0: "batch"}})
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        session = ort.InferenceSession(buffer.getvalue(), options,
                                       providers=["CPUExecutionProvider"])
    except Exception:  # the exporter raises many kinds of errors: eager torch encodes then
        return None
    return lambda batch: session.run(None, {"images": batch.numpy()})[0]


@torch.inference_mode()
def encode(model: torch.nn.Module, images: np.ndarray, device: torch.device,
           batch_size: int = 512, progress: bool = False, features: bool = False) -> np.ndarray:
    """Network outputs for uint8 images (N, H, W, C): float32 (N, bits), or the backbone's
    features (N, F) with ``features=True``. On the CPU, ORT_MIN_IMAGES images or more run
    through onnxruntime (``_onnx_runner``)."""
    args = model.model_args
    was_training = model.training
    model.eval()
    module = _Encodes(model, *normalizer(model.contract, device), features)
    run = None
    if torch.device(device).type == "cpu" and len(images) >= ORT_MIN_IMAGES:
        run = _onnx_runner(module, torch.from_numpy(images[:2]))
    if run is None:
        def run(batch):
            return module(batch.to(device)).float().cpu().numpy()
    out = [run(torch.from_numpy(images[start:start + batch_size]))
           for start in tqdm(range(0, len(images), batch_size), desc="encoding",
                             disable=not progress, unit="batch")]
    model.train(was_training)
    return np.concatenate(out) if out else np.empty((0, args["bits"]), np.float32)


def backbone_features(checkpoint_path: str | Path, data: ImageSet, device: str = "auto",
                      progress: bool = True) -> np.ndarray:
    """A trained hashing network's backbone features for every image, float32 (N, F)."""
    from hashsdk.train.device import resolve_device
    from hashsdk.train.model import HashNet

    model, _ = HashNet.from_checkpoint(checkpoint_path)
    dev = resolve_device(device)
    return encode(model.to(dev), data.images, dev, progress=progress, features=True)


def score(query_outputs: np.ndarray, db_outputs: np.ndarray, data: ImageSet,
          split: Split) -> tuple[RetrievalMetrics, np.ndarray]:
    """Metrics and per-query average precision (NaN where a query has no relevant item)."""
    q, db = pack_bits(query_outputs), pack_bits(db_outputs)
    bits = query_outputs.shape[1]
    ql, dl = data.labels[split.query], data.labels[split.database]
    metrics = evaluate(q, db, ql, dl, bits=bits, ks=(100, 1000), radius=2)
    return metrics, average_precisions(q, db, ql, dl, bits=bits)


def evaluate_model(model: torch.nn.Module, data: ImageSet, split: Split, device: torch.device,
                   out_dir: Path | None = None, label: str = "model",
                   progress: bool = True) -> RetrievalMetrics:
    """Encodes, scores, and (with ``out_dir``) writes eval.json, ap.npy and pr.png."""
    query = encode(model, data.images[split.query], device, progress=progress)
    database = encode(model, data.images[split.database], device, progress=progress)
    metrics, aps = score(query, database, data, split)
    if out_dir is not None:
        write(out_dir, metrics, aps, label)
    return metrics


def chance_map(data: ImageSet, split: Split) -> float:
    """The mAP a random ranking scores on the split, about: the mean over queries of the share
    of the database that is relevant to each (what a model must beat to have learned)."""
    q, db = data.labels[split.query], data.labels[split.database]
    if q.ndim == 1:
        counts = np.bincount(db, minlength=int(max(q.max(), db.max())) + 1)
        return float(np.mean(counts[q] / len(db)))
    relevant = (q.astype(np.float32) @ db.astype(np.float32).T) > 0
    return float(relevant.mean())


def write(out_dir: Path, metrics: RetrievalMetrics, aps: np.ndarray, label: str) -> None:
    with atomic_write(out_dir / "eval.json") as f:
        f.write((json.dumps(metrics.as_dict(), indent=1) + "\n").encode())
    with atomic_write(out_dir / "ap.npy") as f:
        np.save(f, aps)
    plots.precision_recall(out_dir / "pr.png", {label: (metrics.pr_precision, metrics.pr_recall)},
                           f"precision-recall over Hamming radius (mAP {metrics.map:.3f})")


SEEN_QUERIES = 1000


def seen_unseen(model: torch.nn.Module, data: ImageSet, split: Split, device: torch.device,
                seen_queries: int = SEEN_QUERIES, seed: int = 0) -> dict[str, float]:
    """Does the network over-fit? mAP@all of the protocol's (unseen) queries against the
    database, beside mAP@all of ``seen_queries`` training images (seen, with their labels, in
    training; drawn with ``seed``) against the database less those images.

    Returns {"map_unseen", "map_seen", "gap"}, gap = seen minus unseen: a large positive gap
    means memorised training images, one near zero a network with nothing for a regularizer
    to correct.
    """
    rng = np.random.default_rng(seed)
    seen = np.sort(rng.choice(split.train, min(seen_queries, len(split.train)), replace=False))
    # one encoding of every image involved, then index into it (needed is sorted)
    needed = np.unique(np.concatenate([split.query, split.database, seen]))
    codes = pack_bits(encode(model, data.images[needed], device))
    bits = model.model_args["bits"]

    def rows(idx: np.ndarray) -> np.ndarray:
        return codes[np.searchsorted(needed, idx)]

    db_less_seen = np.setdiff1d(split.database, seen)
    unseen_map = mean_average_precision(rows(split.query), rows(split.database),
                                        data.labels[split.query], data.labels[split.database],
                                        bits=bits)
    seen_map = mean_average_precision(rows(seen), rows(db_less_seen), data.labels[seen],
                                      data.labels[db_less_seen], bits=bits)
    return dict(map_unseen=unseen_map, map_seen=seen_map, gap=seen_map - unseen_map)
