"""Decoding image files with Pillow into uint8 (C, S, S) arrays, many at a time on a thread pool."""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps

from engine.data.table import Progress
from engine.errors import DataError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"})
GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
WIDE_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is an error (or skipped), never half-decoded
# Pillow warns about images past 89 M pixels when it opens them; data.max_image_pixels (tighter) names them instead
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


class SizeMismatch(DataError):
    """Images of different sizes while no training resolution is set."""


def is_image_file(path: Path) -> bool:
    """A visible file with an image suffix."""
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def native_channels(paths: list[Path], *, sample: int = 256) -> int:
    """3 when any of up to `sample` images spread over the list is colour, else 1 (headers only).

    Unreadable files are passed over here (decoding names or skips them later).
    """
    step = max(1, len(paths) // sample)
    readable = 0
    for path in paths[::step][:sample]:
        try:
            with Image.open(path) as img:
                if img.mode not in GRAY_MODES:
                    return 3
                readable += 1
        except Exception:  # noqa: BLE001 - decoding reports the file with its reason
            continue
    if readable == 0:
        raise DataError(f"{paths[0].parent}: none of the sampled images can be read; is it an image folder?")
    return 1


def _to_8bit_gray(img: Image.Image) -> Image.Image:
    """16-bit / 32-bit / float gray to 8-bit L (16-bit values scaled by 1/257)."""
    arr = np.asarray(img)
    if img.mode == "F":
        scaled = arr * 255.0 if arr.max(initial=0.0) <= 1.0 else arr  # float images in [0, 1] or [0, 255]
    else:
        scaled = arr.astype(np.float64) / (257.0 if arr.max(initial=0) > 255 or img.mode.startswith("I;16") else 1.0)
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), "L")


def to_channels(img: Image.Image, channels: int) -> Image.Image:
    """Any Pillow mode (L, LA, P, RGBA, CMYK, 16-bit, ...) as L or RGB; alpha is dropped like torchvision."""
    if img.mode in WIDE_MODES:
        img = _to_8bit_gray(img)
    elif img.mode in ("P", "PA", "LA", "La", "RGBa"):
        img = img.convert("RGBA")
    target = "L" if channels == 1 else "RGB"
    return img if img.mode == target else img.convert(target)


MAX_IMAGE_PIXELS = 40_000_000  # data.max_image_pixels' default: well below Pillow's bomb limit (89 M)


class ImageTooLarge(DataError):
    """An image whose header declares more pixels than the decoding limit (it is never decoded)."""


def decode_image(path: Path, size: int | None, channels: int, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """One file as uint8 (C, S, S): EXIF orientation applied, converted, resized with antialiasing. A file whose
    header declares more than `max_pixels` pixels (after a JPEG's DCT-domain downscale) is refused unread."""
    with Image.open(path) as img:
        if size is not None and img.format == "JPEG":
            img.draft("L" if channels == 1 else "RGB", (size, size))  # DCT-domain downscale: fast on photos
        width, height = img.size
        if width * height > max_pixels:
            raise ImageTooLarge(f"{width}x{height} = {width * height:,} pixels, more than data.max_image_pixels "
                                f"({max_pixels:,}); it is not decoded (a decompression bomb?)")
        img = ImageOps.exif_transpose(img)
        img.load()
        img = to_channels(img, channels)
        if size is not None and img.size != (size, size):
            img = img.resize((size, size), Image.Resampling.BICUBIC)
        arr = np.asarray(img, dtype=np.uint8)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def _decode_chunk(paths: list[Path], start: int, out: np.ndarray | None, size: int | None, channels: int,
                  shape: tuple[int, int] | None, max_pixels: int) -> list[tuple[int, Exception]]:
    """Decode paths[i] into out[start + i]; return (index, error) of the files that failed."""
    failed = []
    for offset, path in enumerate(paths):
        try:
            arr = decode_image(path, size, channels, max_pixels)
        except Exception as exc:
            failed.append((start + offset, exc))
            continue
        if shape is not None and tuple(arr.shape[1:]) != shape:
            raise SizeMismatch(
                f"{path}: image is {arr.shape[2]}x{arr.shape[1]} px but the first image is {shape[1]}x{shape[0]} px;"
                " set data.image_size to train on images of mixed sizes"
            )
        out[start + offset] = arr
    return failed


def bad_image_message(path: Path, exc: Exception) -> str:
    """The error text for an undecodable file."""
    if isinstance(exc, ImageTooLarge):
        return (f"{path}: image of {exc}; raise data.max_image_pixels if it is wanted, or skip such files "
                "(data.on_bad_image: skip for training, --skip-bad-images for predict)")
    return (f"{path}: cannot decode image ({type(exc).__name__}: {exc}); fix or remove the file, "
            "or skip such files (data.on_bad_image: skip for training, --skip-bad-images for predict)")


def _first_shape(paths: list[Path], channels: int, max_pixels: int) -> tuple[int, int]:
    """(H, W) of the first decodable image, for a table at native size."""
    for path in paths:
        try:
            height, width = decode_image(path, None, channels, max_pixels).shape[1:]
        except Exception:  # noqa: BLE001 - decoding reports the file with its reason
            continue
        if height != width:
            raise DataError(f"{path}: images are {width}x{height} px, not square; set data.image_size to train "
                            "at a square size")
        return height, width
    raise DataError(f"{paths[0].parent}: none of the {len(paths)} images can be decoded")


def decode_files(paths: list[Path], size: int | None, channels: int, *, on_bad_image: str = "error",
                 progress: Progress | None = None,
                 max_pixels: int = MAX_IMAGE_PIXELS) -> tuple[np.ndarray, list[int]]:
    """Decode all files into uint8 (N, C, S, S); return the array and the indices of skipped files (those
    rows are left zero). A bad file (or one larger than `max_pixels`, never decoded) raises DataError naming it
    unless on_bad_image is 'skip'."""
    if not paths:
        return np.zeros((0, channels, size or 1, size or 1), dtype=np.uint8), []
    shape = (size, size) if size is not None else _first_shape(paths, channels, max_pixels)
    out = np.zeros((len(paths), channels, *shape), dtype=np.uint8)
    chunk = max(16, min(256, len(paths) // 64 or 16))
    failed: list[tuple[int, Exception]] = []
    done = 0
    workers = min(32, (os.cpu_count() or 2) + 2)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {
            pool.submit(_decode_chunk, paths[i:i + chunk], i, out, size, channels, None if size else shape,
                        max_pixels):
            min(chunk, len(paths) - i)
            for i in range(0, len(paths), chunk)
        }
        try:
            for future in as_completed(futures):
                failed.extend(future.result())
                done += futures[future]
                if progress is not None:
                    progress("decode", done, len(paths))
        except BaseException:  # a stop asked for (or an error): the chunks not started are not decoded
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    failed.sort(key=lambda item: item[0])
    if failed and on_bad_image != "skip":
        index, exc = failed[0]
        others = [paths[i].name for i, _ in failed[1:4]]
        more = (f" ({len(failed) - 1} more bad file{'s' if len(failed) > 2 else ''}: {', '.join(others)}"
                f"{', …' if len(failed) > 4 else ''})" if len(failed) > 1 else "")
        raise DataError(bad_image_message(paths[index], exc) + more)
    return out, [index for index, _ in failed]
