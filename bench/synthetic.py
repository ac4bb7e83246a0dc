"""Benchmark data: random images written in CIFAR-10's real on-disk format (python pickle batches).

Throughput does not depend on pixel values, and the GPU machines have no network to fetch CIFAR-10.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np


def write_cifar10_like(root: Path, *, train: int = 50_000, test: int = 10_000, seed: int = 0) -> Path:
    """Write `cifar-10-batches-py` (5 train batches, test batch, meta) of random images under `root`."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    per_batch = train // 5
    for index in range(1, 6):
        _dump(folder / f"data_batch_{index}", rng, per_batch)
    _dump(folder / "test_batch", rng, test)
    with open(folder / "batches.meta", "wb") as handle:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)]}, handle)
    return root


def _dump(path: Path, rng: np.random.Generator, count: int) -> None:
    batch = {"data": rng.integers(0, 256, (count, 3072), dtype=np.uint8),
             "labels": rng.integers(0, 10, count).tolist()}
    with open(path, "wb") as handle:
        pickle.dump(batch, handle)


def random_images(count: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(count, size, size, 3) uint8 HWC images and int64 labels, as a PIL pipeline would hold them."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (count, size, size, 3), dtype=np.uint8), rng.integers(0, 10, count)


def write_mnist_like(root: Path, *, train: int = 60_000, test: int = 10_000, seed: int = 0) -> Path:
    """Write `MNIST/raw/` (gzipped idx-ubyte files, as torchvision keeps them) of random 28x28 digits."""
    import gzip
    import struct

    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for prefix, count in (("train", train), ("t10k", test)):
        for kind, array in (("images-idx3", rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)),
                            ("labels-idx1", rng.integers(0, 10, count).astype(np.uint8))):
            header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
            with gzip.open(raw / f"{prefix}-{kind}-ubyte.gz", "wb") as handle:
                handle.write(header + array.tobytes())
    return root
