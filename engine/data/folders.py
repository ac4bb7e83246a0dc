"""Image-folder and CSV + folder sources, and the unlabeled test folder used for predictions."""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from engine.config import DataConfig
from engine.data.csv_labels import read_csv_labels
from engine.data.decode import MAX_IMAGE_PIXELS, decode_files, is_image_file, native_channels
from engine.data.paths import resolve_under
from engine.data.sources import Located
from engine.data.table import Progress, Table, cache_key, load_cached, save_cached
from engine.errors import DataError, did_you_mean

log = logging.getLogger(__name__)


def _existing_dir(path: Path, key: str) -> Path:
    """`path` when it is a folder, else a DataError naming the config key."""
    if not path.is_dir():
        where = "" if path.is_absolute() else f" (relative paths are taken from the working folder, {Path.cwd()})"
        raise DataError(f"{key}: folder {path} does not exist{where}")
    return path


def scan_class_folders(root: Path, key: str = "data.root",
                       declared: list[str] | None = None) -> tuple[list[str], list[Path], list[str]]:
    """(classes, files, class name per file) of root/<class>/<image>; an empty class folder is an error.

    With `declared` (data.classes) the classes come in that order and every folder must be one of them.
    """
    _existing_dir(root, key)
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise DataError(f"{root}: no class sub-folders; expected {root}/<class name>/<image files>")
    _not_split_folders(root, class_dirs, key)
    if declared is not None:
        by_name = {p.name: p for p in class_dirs}
        extra = [name for name in by_name if name not in declared]
        if extra:
            raise DataError(f"{by_name[extra[0]]}: class folder `{extra[0]}` is not one of the {len(declared)} "
                            f"data.classes{did_you_mean(extra[0], declared)}")
        missing = [name for name in declared if name not in by_name]
        if missing and key == "data.root":
            raise DataError(f"{root}: no folder for class `{missing[0]}` of data.classes "
                            f"({len(missing)} missing); expected {root / missing[0]}/<image files>")
        class_dirs = [by_name[name] for name in declared if name in by_name]
    files: list[Path] = []
    names: list[str] = []
    for class_dir in class_dirs:
        images = sorted(p for p in class_dir.rglob("*") if p.is_file() and is_image_file(p))
        if not images:
            raise DataError(f"{class_dir}: class folder `{class_dir.name}` holds no image files "
                            "(.png, .jpg, .jpeg, .bmp, .gif, .webp, .tif); remove it or add its images")
        files.extend(images)
        names.extend([class_dir.name] * len(images))
    return [p.name for p in class_dirs] if declared is None else list(declared), files, names


SPLIT_NAMES = {"train": "train", "training": "train", "test": "test", "testing": "test", "val": "val",
               "valid": "val", "validation": "val"}


def _not_split_folders(root: Path, class_dirs: list[Path], key: str) -> None:
    """Refuse `root/train/<class>/…`, `root/test/<class>/…` read as two classes `train` and `test` (a model of the
    wrong classes, trained without a word): every folder named like a split, each holding class folders."""
    if not all(p.name.lower() in SPLIT_NAMES for p in class_dirs):
        return
    if not all(any(child.is_dir() and not child.name.startswith(".") for child in p.iterdir()) for p in class_dirs):
        return
    kinds = {SPLIT_NAMES[p.name.lower()]: p for p in class_dirs}
    train = kinds.get("train")
    advice = [f"data.root={train}"] if train else []
    if "test" in kinds and key == "data.root":
        advice.append(f"data.test_root={kinds['test']}")
    names = ", ".join(p.name for p in class_dirs)
    fix = f"; set {' '.join(advice)}" if advice else "; point it at the folder of class folders"
    val = " (a val folder is not read apart: val is held out of train by data.val_fraction)" if "val" in kinds else ""
    raise DataError(f"{key}: {root} holds split folders ({names}) that hold class folders, not classes{fix}{val}")


def _file_digest(files: list[Path], labels: list[int]) -> str:
    """A hash of the file list: path, size, modification time and label of every file."""
    digest = hashlib.sha256()
    for path, label in zip(files, labels):
        stat = path.stat()
        digest.update(f"{path}|{stat.st_size}|{stat.st_mtime_ns}|{label}\n".encode())
    return digest.hexdigest()


def _labelled_files(cfg: DataConfig) -> tuple[Path, list[str], list[Path], list[int], int | None]:
    """(root, classes, files, labels, test_start) of a folder or csv config; test rows come last."""
    if cfg.root is None:
        raise DataError(f"data.root: source `{cfg.source}` needs the folder of the images")
    root = _existing_dir(Path(cfg.root).expanduser(), "data.root")
    if cfg.source == "folder":
        declared = None if cfg.classes is None else [str(c) for c in cfg.classes]
        classes, files, names = scan_class_folders(root, declared=declared)
        index = {name: i for i, name in enumerate(classes)}
        labels = [index[name] for name in names]
        if cfg.test_root is None:
            return root, classes, files, labels, None
        test_root = Path(cfg.test_root).expanduser()
        test_classes, test_files, test_names = scan_class_folders(test_root, "data.test_root", declared)
        unknown = sorted(set(test_classes) - set(classes))
        if unknown:
            raise DataError(f"{test_root / unknown[0]}: test class `{unknown[0]}` is not one of the "
                            f"{len(classes)} training classes in {root}")
        _no_overlap(files, test_files)
        return root, classes, files + test_files, labels + [index[n] for n in test_names], len(files)
    if cfg.csv_file is None:
        raise DataError("data.csv_file: source `csv` needs the CSV file of image names and labels")
    labelled = read_csv_labels(_csv_file(root, cfg.csv_file, "data.csv_file"), root, cfg)
    classes, files, labels = labelled.classes, labelled.files, labelled.labels
    if cfg.test_csv_file is None:
        return root, classes, files, labels, None
    test_dir = _existing_dir(Path(cfg.test_root).expanduser(), "data.test_root") if cfg.test_root else root
    test = read_csv_labels(_csv_file(root, cfg.test_csv_file, "data.test_csv_file"), test_dir, cfg, classes=labelled)
    _no_overlap(files, test.files)
    return root, classes, files + test.files, labels + test.labels, len(files)


def _csv_file(root: Path, name: str, key: str) -> Path:
    """A CSV named relative to data.root (or absolute); a path that only works from the working directory is
    named in the error, with the value that would work."""
    path = resolve_under(root, name)
    if not path.is_file():
        from_here = Path(name).expanduser()
        hint = (f" ({key} is relative to data.root; {from_here} exists from the working directory: "
                f"--set {key}={from_here.resolve()})" if from_here.is_file() else "")
        raise DataError(f"{key}: {path} does not exist{hint}")
    return path


def _no_overlap(train_files: list[Path], test_files: list[Path]) -> None:
    """The explicit test set must not share an image with the training files (that would leak it)."""
    shared = set(map(Path.resolve, train_files)) & set(map(Path.resolve, test_files))
    if shared:
        example = sorted(shared)[0]
        raise DataError(f"{example}: is in the training set and in the test set ({len(shared)} such images); "
                        "point data.test_root / data.test_csv_file at images kept apart from training")


def locate_files(cfg: DataConfig) -> Located:
    """A folder or csv source: scan the files now, decode them only when the cache misses."""
    root, classes, files, labels, test_start = _labelled_files(cfg)
    channels = cfg.channels or native_channels(files)
    fingerprint = {
        "source": cfg.source, "root": str(root.resolve()), "classes": classes, "files": _file_digest(files, labels),
        "count": len(files), "test_start": test_start, "resolved_channels": channels,
        "on_bad_image": cfg.on_bad_image, "max_image_pixels": cfg.max_image_pixels,
    }

    def read(progress: Progress | None) -> Table:
        array, skipped = decode_files(files, cfg.image_size, channels, on_bad_image=cfg.on_bad_image,
                                      progress=progress, max_pixels=cfg.max_image_pixels)
        keep = np.ones(len(files), dtype=bool)
        keep[skipped] = False
        start = None if test_start is None else int(keep[:test_start].sum())
        meta = {"root": str(root), "native_size": None if cfg.image_size else int(array.shape[-1]),
                "skipped": len(skipped), "skipped_files": [str(files[i]) for i in skipped[:100]]}
        images = torch.from_numpy(array[keep]) if skipped else torch.from_numpy(array)
        label_tensor = torch.tensor(labels, dtype=torch.int64)[torch.from_numpy(keep)]
        return Table(images.contiguous(), label_tensor, classes, start, meta)

    return Located(fingerprint, read)


def load_unlabeled(folder: str | Path, *, image_size: int, channels: int, on_bad_image: str = "error",
                   progress: Progress | None = None,
                   max_pixels: int = MAX_IMAGE_PIXELS) -> tuple[torch.Tensor, list[str]]:
    """Images (uint8 N, C, S, S) of an unlabeled folder (or of one image file) and their ids (file name without
    suffix), sorted by id. Images in sub-folders are not read: said, with how many."""
    given = Path(folder).expanduser()
    if given.is_file() and is_image_file(given):
        root, files = given.parent, [given]
    else:
        root = _existing_dir(given, "images to predict (--images)")
        files = sorted((p for p in root.iterdir() if p.is_file() and is_image_file(p)),
                       key=lambda p: (p.stem, p.name))
        nested = sum(1 for p in root.rglob("*") if p.parent != root and p.is_file() and is_image_file(p))
        if nested:
            log.warning("%s: %d image file%s in its sub-folders not read (a folder's own images are; give a "
                        "sub-folder to --images for its images)", root, nested, "" if nested == 1 else "s")
    if not files:
        raise DataError(f"{root}: no image files to predict (.png, .jpg, .jpeg, .bmp, .gif, .webp, .tif)")
    ids = [p.stem for p in files]
    duplicated = sorted(i for i, n in Counter(ids).items() if n > 1)
    if duplicated:
        sharing = ", ".join(p.name for p in files if p.stem == duplicated[0])
        raise DataError(f"{root}: several files share the id `{duplicated[0]}` ({sharing}); ids (file names without "
                        f"suffix) must be unique" + (f"; {len(duplicated)} such ids" if len(duplicated) > 1 else ""))
    key = cache_key({"source": "unlabeled", "root": str(root.resolve()), "files": _file_digest(files, [0] * len(files)),
                     "image_size": image_size, "channels": channels, "on_bad_image": on_bad_image,
                     "max_image_pixels": max_pixels})
    cached = load_cached(key)
    if cached is not None:
        return cached.images, cached.meta["ids"]
    array, skipped = decode_files(files, image_size, channels, on_bad_image=on_bad_image, progress=progress,
                                  max_pixels=max_pixels)
    skipped_set = set(skipped)
    keep = [i for i in range(len(files)) if i not in skipped_set]
    images = torch.from_numpy(array[keep] if skipped else array).contiguous()
    kept_ids = [ids[i] for i in keep]
    save_cached(key, Table(images, torch.zeros(len(kept_ids), dtype=torch.int64), [], None,
                           {"ids": kept_ids, "skipped": len(skipped)}),
                {"source": "unlabeled", "root": str(root.resolve()), "image_size": image_size, "channels": channels})
    return images, kept_ids

