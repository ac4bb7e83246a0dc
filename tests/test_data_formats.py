"""The torchvision datasets read from files written in their official on-disk formats (idx ubyte, gz;
CIFAR python pickle batches; SVHN .mat), and the clear errors when files are missing offline."""

from __future__ import annotations

import builtins
import gzip
import io
import pickle
import struct

import numpy as np
import pytest
import torch

from engine.config import DataConfig
from engine.data import load_dataset
from engine.data.torchvision_sources import read_idx
from engine.errors import DataError


@pytest.fixture(autouse=True)
def isolated_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("IMGCLS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("IMGCLS_OFFLINE", "1")


def write_idx(path, array: np.ndarray, compress: bool) -> None:
    """An idx-ubyte file: magic 0x0000 08 <ndim>, big-endian int32 dims, the bytes."""
    payload = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload += array.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(f"{path}.gz", "wb") as handle:
            handle.write(payload)
    else:
        path.write_bytes(payload)


def write_mnist(root, folder="MNIST", n_train=30, n_test=10, compress=True):
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n) % 10
        images = rng.integers(0, 256, (n, 28, 28)).astype(np.uint8)
        images[:, 0, 0] = labels  # a marker tying each image to its label
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images, compress)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels, compress)


@pytest.mark.parametrize("source,folder,compress", [
    ("mnist", "MNIST", True), ("fashion_mnist", "FashionMNIST", False), ("kmnist", "KMNIST", True),
])
def test_mnist_family_from_idx_files(tmp_path, source, folder, compress):
    write_mnist(tmp_path, folder, compress=compress)
    ds = load_dataset(DataConfig(source=source, root=str(tmp_path), val_fraction=0.2))
    assert ds.images.shape == (40, 1, 28, 28) and ds.num_classes == 10
    assert torch.equal(ds.test_idx, torch.arange(30, 40))
    assert len(ds.train_idx) + len(ds.val_idx) == 30
    assert torch.equal(ds.images[:, 0, 0, 0].long(), ds.labels)
    if source == "fashion_mnist":
        assert ds.classes[0] == "T-shirt/top"


def test_idx_reader_rejects_bad_files(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x00\x00\x0d\x01\x00\x00\x00\x02ab")
    with pytest.raises(DataError, match="magic"):
        read_idx(tmp_path / "bad")
    write_idx(tmp_path / "short", np.zeros((4, 2), np.uint8), compress=False)
    (tmp_path / "short").write_bytes((tmp_path / "short").read_bytes()[:-3])
    with pytest.raises(DataError, match="truncated"):
        read_idx(tmp_path / "short")


def _cifar_batch(n: int, label_key: str, offset: int) -> dict:
    labels = [(offset + i) % 10 for i in range(n)]
    data = np.zeros((n, 3072), dtype=np.uint8)
    data[:, 0] = labels  # red channel, pixel (0, 0)
    data[:, 1024] = 200  # green channel, pixel (0, 0): checks the channel-major layout
    return {"data": data, label_key: labels, "batch_label": "synthetic"}


def _pickle(path, obj) -> None:
    with open(path, "wb") as handle:
        pickle.dump(obj, handle)


class _Python2Pickler(pickle._Pickler):
    """Writes what Python 2's cPickle wrote for the official CIFAR files: protocol 2, str and bytes as
    BINSTRING, numpy globals under numpy.core (patched below)."""

    dispatch = pickle._Pickler.dispatch.copy()

    def _binstring(self, data: bytes) -> None:
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(data)

    def save_str(self, obj: str) -> None:
        self._binstring(obj.encode("latin1"))

    def save_bytes(self, obj: bytes) -> None:
        self._binstring(obj)

    dispatch[str] = save_str
    dispatch[bytes] = save_bytes


def _pickle_py2(path, obj) -> None:
    """A file laid out as the published CIFAR batches are (numpy.core globals, BINSTRING data)."""
    buffer = io.BytesIO()
    _Python2Pickler(buffer, protocol=2).dump(obj)
    path.write_bytes(buffer.getvalue().replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))


@pytest.mark.parametrize("write", [_pickle, _pickle_py2], ids=["python3", "python2-as-published"])
def test_cifar10_from_pickle_batches(tmp_path, write):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for i in range(1, 6):
        write(folder / f"data_batch_{i}", _cifar_batch(4, "labels", i))
    write(folder / "test_batch", _cifar_batch(5, "labels", 0))
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    write(folder / "batches.meta", {"label_names": names, "num_vis": 3072})
    ds = load_dataset(DataConfig(source="cifar10", root=str(tmp_path)))
    assert ds.images.shape == (25, 3, 32, 32) and ds.classes == names
    assert torch.equal(ds.test_idx, torch.arange(20, 25))
    assert torch.equal(ds.images[:, 0, 0, 0].long(), ds.labels)
    assert (ds.images[:, 1, 0, 0] == 200).all()
    gray = load_dataset(DataConfig(source="cifar10", root=str(tmp_path), channels=1, image_size=16))
    assert gray.images.shape == (25, 1, 16, 16)


def test_cifar100_from_pickle_files(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    _pickle(folder / "train", _cifar_batch(12, "fine_labels", 0))
    _pickle(folder / "test", _cifar_batch(6, "fine_labels", 0))
    _pickle(folder / "meta", {"fine_label_names": [f"c{i}" for i in range(100)]})
    ds = load_dataset(DataConfig(source="cifar100", root=str(tmp_path)))
    assert ds.num_classes == 100 and len(ds.test_idx) == 6 and ds.images.shape[1:] == (3, 32, 32)


def test_svhn_from_mat_files(tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    folder = tmp_path / "SVHN"
    folder.mkdir()
    for split, n in (("train", 12), ("test", 4)):
        x = np.zeros((32, 32, 3, n), dtype=np.uint8)
        y = (np.arange(n) % 10 + 1).reshape(n, 1)  # SVHN labels are 1..10, 10 meaning the digit 0
        x[0, 0, 0, :] = y[:, 0]
        scipy_io.savemat(folder / f"{split}_32x32.mat", {"X": x, "y": y})
    ds = load_dataset(DataConfig(source="svhn", root=str(tmp_path)))
    assert ds.images.shape == (16, 3, 32, 32) and ds.classes == [str(i) for i in range(10)]
    assert torch.equal(ds.images[:, 0, 0, 0].long() % 10, ds.labels)
    assert int(ds.labels.max()) == 9


def test_svhn_without_scipy_says_to_install_it(tmp_path, monkeypatch):
    (tmp_path / "SVHN").mkdir()
    for split in ("train", "test"):
        (tmp_path / "SVHN" / f"{split}_32x32.mat").write_bytes(b"MATLAB")
    real_import = builtins.__import__

    def import_without_scipy(name, *args, **kwargs):
        if name.startswith("scipy"):
            raise ImportError("No module named 'scipy'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", import_without_scipy)
    with pytest.raises(DataError, match="pip install scipy"):
        load_dataset(DataConfig(source="svhn", root=str(tmp_path)))


@pytest.mark.parametrize("source,expected", [
    ("mnist", r"MNIST/raw/ with train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte"),
    ("cifar10", r"cifar-10-batches-py/ with data_batch_1, .*test_batch, batches\.meta"),
    ("cifar100", r"cifar-100-python/ with train, test, meta"),
    ("svhn", r"SVHN/ with train_32x32\.mat, test_32x32\.mat"),
])
def test_missing_files_offline_name_folder_and_files(tmp_path, source, expected):
    with pytest.raises(DataError, match=str(tmp_path).replace("\\", "\\\\") + "/.*" + expected):
        load_dataset(DataConfig(source=source, root=str(tmp_path)))


def test_default_root_is_the_data_dir(tmp_path):
    with pytest.raises(DataError, match=str(tmp_path / "data" / "KMNIST")):
        load_dataset(DataConfig(source="kmnist"))
    write_mnist(tmp_path / "data", "KMNIST")
    assert load_dataset(DataConfig(source="kmnist")).classes[:2] == ["o", "ki"]


def test_torchvision_table_is_cached(tmp_path):
    write_mnist(tmp_path, "MNIST")
    first = load_dataset(DataConfig(source="mnist", root=str(tmp_path), image_size=14))
    second = load_dataset(DataConfig(source="mnist", root=str(tmp_path), image_size=14))
    assert not first.info["cache_hit"] and second.info["cache_hit"]
    assert torch.equal(first.images, second.images) and first.images.shape[-1] == 14


def test_cifar_pickle_that_runs_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            import os
            return (os.system, (f"touch {marker}",))

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]:
        with open(folder / name, "wb") as handle:
            pickle.dump({"data": Evil(), "labels": [0]}, handle)
    with pytest.raises(DataError, match="refused global"):
        load_dataset(DataConfig(source="cifar10", root=str(tmp_path)))
    assert not marker.exists()
