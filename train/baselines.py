"""Unsupervised hashing baselines in numpy, fitted on the training split.

    lsh  sign random projections of centred features (Charikar; the usual LSH baseline);
    pca  sign of the top ``bits`` principal components (PCAH; ITQ without its rotation);
    itq  PCA to ``bits`` dimensions, then the rotation that minimises quantization error
         (Gong and Lazebnik, 2011), 50 iterations;
    sh   spectral hashing (Weiss, Torralba and Fergus, 2008): PCA, then the ``bits``
         analytical eigenfunctions of a uniform distribution with the smallest eigenvalues,
         thresholded.

Each ``fit(features, bits, seed)`` returns an object whose ``encode(features)`` gives float
outputs (N, bits) with bit = output > 0, the same convention as the networks. Features are
pixels (``pixel_features``) or a trained backbone's (``hashsdk.train.evaluate.encode`` with
``features=True``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hashsdk.errors import HashsdkError

METHODS = ("lsh", "itq", "sh")


def pixel_features(images: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W, C) to float32 (N, H * W * C) in [0, 1]."""
    return images.reshape(len(images), -1).astype(np.float32) / 255.0


def _pca(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    mean = x.mean(axis=0)
    cov = np.cov(x - mean, rowvar=False)
    values, vectors = np.linalg.eigh(cov)
    top = np.argsort(values)[::-1][:k]
    return mean, vectors[:, top]


@dataclass
class LSH:
    mean: np.ndarray
    planes: np.ndarray

    def encode(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean) @ self.planes


@dataclass
class ITQ:
    mean: np.ndarray
    pcs: np.ndarray
    rotation: np.ndarray

    def encode(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean) @ self.pcs @ self.rotation


@dataclass
class SH:
    mean: np.ndarray
    pcs: np.ndarray
    low: np.ndarray
    high: np.ndarray
    modes: np.ndarray  # (bits, dims): the frequency of each eigenfunction along each PC

    def encode(self, x: np.ndarray) -> np.ndarray:
        v = (x - self.mean) @ self.pcs - self.low
        omegas = self.modes * (np.pi / (self.high - self.low))
        # eigenfunction i is prod_d sin(pi / 2 + omega_id * v_d); one sine per nonzero mode
        out = np.ones((len(x), len(self.modes)))
        for i, omega in enumerate(omegas):
            out[:, i] = np.prod(np.sin(np.pi / 2 + v * omega), axis=1)
        return out


def itq_rotation(v: np.ndarray, rng: np.random.Generator, iterations: int = 50) -> np.ndarray:
    """ITQ's orthogonal rotation (bits, bits) of projected data v (N, bits): from a random
    one, alternately the codes sign(v R) and the R that fits them best (Procrustes)."""
    bits = v.shape[1]
    rotation, _ = np.linalg.qr(rng.standard_normal((bits, bits)))
    for _ in range(iterations):
        b = np.sign(v @ rotation)
        u, _, wt = np.linalg.svd(b.T @ v)
        rotation = (u @ wt).T
    return rotation


def fit(method: str, features: np.ndarray, bits: int, seed: int = 0):
    """Fits a baseline on training features float (N, D)."""
    if method not in (*METHODS, "pca"):
        raise HashsdkError(f"baseline must be one of {(*METHODS, 'pca')}, got {method!r}")
    x = np.asarray(features, np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise HashsdkError(f"baselines need features shaped (N >= 2, D), got {x.shape}")
    rng = np.random.default_rng(seed)
    if method == "lsh":
        return LSH(x.mean(axis=0), rng.standard_normal((x.shape[1], bits)))
    if bits > x.shape[1]:
        raise HashsdkError(f"{method} needs bits <= feature dimension ({x.shape[1]}), got {bits}")
    if method == "pca":
        mean, pcs = _pca(x, bits)
        return ITQ(mean, pcs, np.eye(bits))
    if method == "itq":
        mean, pcs = _pca(x, bits)
        return ITQ(mean, pcs, itq_rotation((x - mean) @ pcs, rng))
    # spectral hashing
    mean, pcs = _pca(x, bits)
    v = (x - mean) @ pcs
    low, high = v.min(axis=0) - 1e-6, v.max(axis=0) + 1e-6
    spread = high - low
    max_mode = np.ceil((bits + 1) * spread / spread.max()).astype(int)
    # candidate modes: along one PC at a time, 1..max_mode[d]
    modes = [np.zeros(bits)]
    for d in range(bits):
        for m in range(1, max_mode[d] + 1):
            mode = np.zeros(bits)
            mode[d] = m
            modes.append(mode)
    modes = np.array(modes)
    eigenvalues = ((modes * (np.pi / spread)) ** 2).sum(axis=1)
    order = np.argsort(eigenvalues, kind="stable")
    return SH(mean, pcs, low, high, modes[order[1:bits + 1]])  # skip the constant mode
