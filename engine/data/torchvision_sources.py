"""MNIST, FashionMNIST, KMNIST, CIFAR-10, CIFAR-100 and SVHN read from their official on-disk formats
(the layout torchvision uses), downloaded with torchvision's own classes only when files are missing."""

from __future__ import annotations

import contextlib
import re
import gzip
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from engine.config import DataConfig
from engine.data.paths import data_dir, offline
from engine.data.sources import Located
from engine.data.table import Progress, Table
from engine.errors import DataError

MNIST_FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
CIFAR10_FILES = [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta"]
CIFAR100_FILES = ["train", "test", "meta"]
SVHN_FILES = ["train_32x32.mat", "test_32x32.mat"]
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot"]
KMNIST_CLASSES = ["o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"]


@dataclass(frozen=True)
class Spec:
    """Where a dataset's files live under the root, which files, and which torchvision class downloads them."""

    folder: str
    files: list[str]
    torchvision_class: str
    read: Callable[[Path], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]]
    native: tuple[int, int]  # (size, channels) of every image
    idx_files: bool = False  # MNIST family: files under raw/, plain or .gz


def read_idx(path: Path) -> np.ndarray:
    """An idx-ubyte file (MNIST's format), plain or gzip-compressed, as a uint8 array."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        data = handle.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataError(f"{path}: not an idx-ubyte file of unsigned bytes (bad magic number)")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    count = int(np.prod(dims))
    payload = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if payload.size != count:
        raise DataError(f"{path}: truncated idx file ({payload.size} of {count} bytes)")
    return payload.reshape(dims)


def _find(folder: Path, name: str) -> Path:
    """folder/name or folder/name.gz, whichever exists."""
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(folder / name)


def _mnist_reader(classes: list[str]) -> Callable[[Path], tuple]:
    """A reader of the four idx files under <folder>/raw with the given class names."""
    def read(folder: Path) -> tuple:
        raw = folder / "raw"
        train_x, train_y, test_x, test_y = (read_idx(_find(raw, name)) for name in MNIST_FILES)
        return train_x[:, None], train_y, test_x[:, None], test_y, classes
    return read


# The official CIFAR batches are python pickles of dicts, lists, strings and numpy arrays. Only what rebuilds
# those is allowed, so a crafted file cannot run code (no os.system, no builtins.eval).
_PICKLE_ALLOWED = {
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
}


class _DataOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain data and numpy arrays; refuses every other global."""

    def find_class(self, module: str, name: str) -> object:
        if (module, name) in _PICKLE_ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused global {module}.{name}")


def _unpickle(path: Path) -> dict:
    """One CIFAR batch file, read as data only."""
    with open(path, "rb") as handle:
        try:
            batch = _DataOnlyUnpickler(handle, encoding="latin1").load()
        except (pickle.UnpicklingError, EOFError, ValueError) as exc:
            raise DataError(f"{path}: not a CIFAR batch file of plain data ({exc})") from exc
    if not isinstance(batch, dict):
        raise DataError(f"{path}: not a CIFAR batch file (expected a dict, got {type(batch).__name__})")
    return batch


def _cifar_images(batch: dict) -> np.ndarray:
    """A batch's (N, 3072) rows as (N, 3, 32, 32): channel-major as stored."""
    return np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)


def read_cifar10(folder: Path) -> tuple:
    """cifar-10-batches-py: data_batch_1..5, test_batch and batches.meta."""
    batches = [_unpickle(folder / f"data_batch_{i}") for i in range(1, 6)]
    test = _unpickle(folder / "test_batch")
    classes = list(_unpickle(folder / "batches.meta")["label_names"])
    train_x = np.concatenate([_cifar_images(b) for b in batches])
    train_y = np.concatenate([np.asarray(b["labels"]) for b in batches])
    return train_x, train_y, _cifar_images(test), np.asarray(test["labels"]), classes


def read_cifar100(folder: Path) -> tuple:
    """cifar-100-python: train, test and meta (the 100 fine labels)."""
    train, test = _unpickle(folder / "train"), _unpickle(folder / "test")
    classes = list(_unpickle(folder / "meta")["fine_label_names"])
    return (_cifar_images(train), np.asarray(train["fine_labels"]), _cifar_images(test),
            np.asarray(test["fine_labels"]), classes)


def _load_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 3, 32, 32) and labels 0..9 of an SVHN .mat file."""
    try:
        from scipy.io import loadmat
    except ImportError as exc:
        raise DataError("source svhn reads .mat files with scipy, which is not installed: pip install scipy") from exc
    mat = loadmat(str(path))
    images = np.ascontiguousarray(np.transpose(mat["X"], (3, 2, 0, 1)), dtype=np.uint8)  # (H,W,C,N) -> (N,C,H,W)
    labels = mat["y"].astype(np.int64).reshape(-1)
    labels[labels == 10] = 0  # SVHN stores the digit 0 as label 10
    return images, labels


def read_svhn(folder: Path) -> tuple:
    """train_32x32.mat and test_32x32.mat (the 'extra' set is not used)."""
    train_x, train_y = _load_mat(folder / "train_32x32.mat")
    test_x, test_y = _load_mat(folder / "test_32x32.mat")
    return train_x, train_y, test_x, test_y, [str(i) for i in range(10)]


SPECS = {
    "mnist": Spec("MNIST", MNIST_FILES, "MNIST", _mnist_reader([str(i) for i in range(10)]), (28, 1), True),
    "fashion_mnist": Spec("FashionMNIST", MNIST_FILES, "FashionMNIST", _mnist_reader(FASHION_CLASSES), (28, 1),
                          True),
    "kmnist": Spec("KMNIST", MNIST_FILES, "KMNIST", _mnist_reader(KMNIST_CLASSES), (28, 1), True),
    "cifar10": Spec("cifar-10-batches-py", CIFAR10_FILES, "CIFAR10", read_cifar10, (32, 3)),
    "cifar100": Spec("cifar-100-python", CIFAR100_FILES, "CIFAR100", read_cifar100, (32, 3)),
    "svhn": Spec("SVHN", SVHN_FILES, "SVHN", read_svhn, (32, 3)),
}


def _file_paths(spec: Spec, folder: Path) -> list[Path] | None:
    """The dataset's files under `folder` (idx files plain or .gz), or None when any is missing."""
    if spec.idx_files:
        try:
            return [_find(folder / "raw", name) for name in spec.files]
        except FileNotFoundError:
            return None
    paths = [folder / name for name in spec.files]
    return paths if all(p.is_file() for p in paths) else None


def _expected(spec: Spec, folder: Path) -> str:
    """'<folder>/ with file, file, ...' for error messages."""
    base = folder / "raw" if spec.idx_files else folder
    suffix = " (each plain or .gz)" if spec.idx_files else ""
    return f"{base}/ with {', '.join(spec.files)}{suffix}"


def missing_files_message(source: str, root: Path, why: str, *, root_is_set: bool) -> str:
    """Two lines: the folder looked in, the files expected and why they were not fetched; then how to put them
    there or point elsewhere (IMGCLS_DATA_DIR, --set data.root), each naming the sub-folder the files go in."""
    spec = SPECS[source]
    inside = f"{spec.folder}/raw" if spec.idx_files else spec.folder
    found = f"{source}: dataset files not found. Expected {_expected(spec, root / spec.folder)}; {why}"
    if root_is_set:
        elsewhere = (f"--set data.root=DIR (now {root}), or leave data.root unset to use the data folder "
                     f"IMGCLS_DATA_DIR=DIR (now {data_dir()})")
    else:
        elsewhere = f"IMGCLS_DATA_DIR=DIR (the data folder, now {root}) or --set data.root=DIR (this run only)"
    return f"{found}\nCopy the files there, or point elsewhere: {elsewhere}; the files go in DIR/{inside}/"


def _download(source: str, spec: Spec, root: Path, *, root_is_set: bool) -> None:
    """Fetch the official files with torchvision (train and test); any failure becomes a DataError."""
    if offline():
        raise DataError(missing_files_message(source, root, "downloads are off (IMGCLS_OFFLINE is set)",
                                              root_is_set=root_is_set))
    import torchvision.datasets as tvd

    cls = getattr(tvd, spec.torchvision_class)
    try:
        if source == "svhn":
            for split in ("train", "test"):
                cls(root=str(root / spec.folder), split=split, download=True)
        else:
            for train in (True, False):
                cls(root=str(root), train=train, download=True)
    except Exception as exc:  # no network, a proxy, a changed mirror: the user needs the folder and file names
        _remove_empty_folders(root / spec.folder, stop_at=root)
        raise DataError(missing_files_message(source, root, f"the download failed ({download_failure(exc)})",
                                              root_is_set=root_is_set)) from exc


def download_failure(exc: BaseException) -> str:
    """Why a torchvision download failed, on one line: the last mirror's reason (`[Errno -2] Name or service not
    known`) rather than every mirror's URL and urllib's wrapping; else the exception as it reads."""
    text = " ".join(str(exc).split())  # one line, whatever the exception says
    reasons = re.findall(r"got: <urlopen error (.+?)>(?= Tried |$)", text) or re.findall(r"got: (.+?)(?= Tried |$)",
                                                                                          text)
    return reasons[-1] if reasons else f"{type(exc).__name__}: {text}"


def _remove_empty_folders(folder: Path, *, stop_at: Path) -> None:
    """Remove the folders a failed download left empty (MNIST/raw, then MNIST), up to `stop_at`."""
    for path in sorted((p for p in folder.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            path.rmdir()  # only succeeds when empty
    while folder != stop_at and folder.is_dir():
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent


def locate_torchvision(cfg: DataConfig) -> Located:
    """A torchvision dataset under data.root (default: the data folder), downloaded when files are missing."""
    spec = SPECS[cfg.source]
    root = Path(cfg.root).expanduser() if cfg.root else data_dir()
    folder = root / spec.folder
    if cfg.source == "svhn" and _file_paths(spec, folder) is None and _file_paths(spec, root) is not None:
        folder = root  # torchvision's own SVHN layout keeps the .mat files directly in its root
    paths = _file_paths(spec, folder)
    if paths is None:
        _download(cfg.source, spec, root, root_is_set=bool(cfg.root))
        paths = _file_paths(spec, folder)
        if paths is None:
            raise DataError(missing_files_message(cfg.source, root, "still missing after the download",
                                                  root_is_set=bool(cfg.root)))
    files = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in paths]
    fingerprint = {"source": cfg.source, "folder": str(folder.resolve()), "files": files}

    def read(progress: Progress | None) -> Table:
        if progress is not None:
            progress("read", 0, 1)
        try:
            train_x, train_y, test_x, test_y, classes = spec.read(folder)
        except DataError:
            raise
        except Exception as exc:
            raise DataError(f"{folder}: cannot read the {cfg.source} files ({type(exc).__name__}: {exc}); "
                            "delete them to download again") from exc
        images = torch.from_numpy(np.ascontiguousarray(np.concatenate([train_x, test_x])))
        labels = torch.from_numpy(np.concatenate([train_y, test_y]).astype(np.int64))
        size, channels = spec.native  # the cache key counts on it: image_size 28 and null are one MNIST table
        if tuple(images.shape[1:]) != (channels, size, size):
            shape = "x".join(map(str, images.shape[1:]))
            raise DataError(f"{folder}: the {cfg.source} files hold {shape} images (channels x height x width); "
                            f"the official ones are {channels}x{size}x{size}")
        if progress is not None:
            progress("read", 1, 1)
        meta = {"root": str(folder), "native_size": int(images.shape[-1]), "native_channels": int(images.shape[1])}
        return Table(images, labels, [str(c) for c in classes], len(train_y), meta)

    return Located(fingerprint, read, native=spec.native)
