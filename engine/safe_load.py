"""Reading weight files that may be hostile or mislabelled: safetensors, and torch archives through
`torch.load(weights_only=True)`; a file that is not what its name says is refused in one line naming it and what
it really is."""

from __future__ import annotations

import io
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from engine.errors import CheckpointError


def describe_bytes(head: bytes) -> str:
    """What the first bytes of a file say it is, in words (for errors about a file that is not what its name
    says)."""
    if not head:
        return "an empty file"
    if head.startswith(b"PK\x03\x04"):
        return "a zip archive (a torch.save file)"
    if head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5:
        return "a raw Python pickle"
    if len(head) >= 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < (100 << 20):
        return "a safetensors file"
    if head.startswith(b"\x89HDF"):
        return "an HDF5 file"
    if head.startswith((b"\x89PNG", b"\xff\xd8\xff", b"GIF8")):
        return "an image"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return "binary data of an unknown format"
    return "a text file"


def _head(source: bytes | Path) -> bytes:
    if isinstance(source, bytes):
        return source[:16]
    try:
        with open(source, "rb") as handle:
            return handle.read(16)
    except OSError:
        return b""


def load_safetensors(source: bytes | Path, shown: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file (its bytes or its path); anything else is one line naming `shown` and
    what the file is."""
    from safetensors.torch import load as load_bytes
    from safetensors.torch import load_file

    try:
        return load_bytes(source) if isinstance(source, bytes) else load_file(str(source))
    except Exception as exc:  # noqa: BLE001 - SafetensorError, a torn header, a foreign file: all the same here
        what = describe_bytes(_head(source))
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{shown}: not a readable safetensors file: it is {what} ({detail})") from None


def load_torch_values(source: bytes | Path, shown: Path, *, archive_only: bool = False) -> Any:
    """`torch.load(weights_only=True)` of a file (its bytes or its path): tensors and plain values only. A file
    naming Python code or objects is refused in one line naming `shown` and the global it names (never torch's
    advice to load it unsafely). `archive_only`: anything but a torch.save zip archive is refused unread."""
    head = _head(source)
    if archive_only and not head.startswith(b"PK\x03\x04"):
        raise CheckpointError(f"{shown}: refused: it is {describe_bytes(head)}, not a torch.save archive")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's notes about pickle protocols: the error below says it all
            return torch.load(io.BytesIO(source) if isinstance(source, bytes) else str(source),
                              map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - UnpicklingError, RuntimeError of a torn zip, EOFError, ...
        text = str(exc)
        named = re.search(r"GLOBAL ([\w.]+)", text)
        if named or "Weights only load failed" in text:
            what = f"names {named.group(1)}" if named else "holds objects other than tensors and plain values"
            raise CheckpointError(f"{shown}: refused: it is {describe_bytes(head)} that {what}; only tensors and "
                                  "plain values are loaded, so it is not a file this tool wrote") from None
        first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
        raise CheckpointError(f"{shown}: cannot be read: it is {describe_bytes(head)} ({first})") from None
