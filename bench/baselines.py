"""The loops our users write by hand, for side-by-side comparison with the engine."""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset


class PilImages(Dataset):
    """uint8 HWC arrays served as PIL images through torchvision transforms (torchvision's CIFAR10 does this)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: object) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(Image.fromarray(self.images[index])), int(self.labels[index])


def pil_loader(images: np.ndarray, labels: np.ndarray, transform: object, *, batch_size: int,
               workers: int) -> DataLoader:
    """A shuffled DataLoader with pinned memory and persistent workers."""
    return DataLoader(PilImages(images, labels, transform), batch_size=batch_size, shuffle=True,
                      num_workers=workers, pin_memory=True, drop_last=True, persistent_workers=workers > 0)


def time_pil_training(model: torch.nn.Module, loader: DataLoader, *, steps: int, warmup: int,
                      device: torch.device) -> float:
    """images/s of a plain fp32 training loop fed by a DataLoader (the users' notebook loop)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    model.train()
    seen, done, start = 0, 0, 0.0
    while done < steps + warmup:
        for images, labels in loader:
            if done == warmup:
                torch.cuda.synchronize(device) if device.type == "cuda" else None
                start, seen = time.perf_counter(), 0
            images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            loss = F.cross_entropy(model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            seen += labels.shape[0]
            done += 1
            if done >= steps + warmup:
                break
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return seen / (time.perf_counter() - start)


def flip_translate(x: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """Per-sample random horizontal flip and whole-pixel shift up to `pad` (reflect padding), batched."""
    batch, channels, height, width = x.shape
    flip = torch.rand(batch, device=x.device, generator=generator) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    dy = torch.randint(0, 2 * pad + 1, (batch,), device=x.device, generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (batch,), device=x.device, generator=generator)
    rows = (torch.arange(height, device=x.device)[None] + dy[:, None])[:, None, :, None]
    cols = (torch.arange(width, device=x.device)[None] + dx[:, None])[:, None, None, :]
    index_b = torch.arange(batch, device=x.device)[:, None, None, None]
    index_c = torch.arange(channels, device=x.device)[None, :, None, None]
    return padded[index_b, index_c, rows, cols]


def time_resident_training(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, *,
                           batch_size: int, epochs: int, mean: torch.Tensor, std: torch.Tensor) -> float:
    """images/s of a hand-written GPU-resident bf16 channels_last loop (no events, no checkpoints)."""
    device = images.device
    model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    generator = torch.Generator(device=device).manual_seed(0)
    steps = len(images) // batch_size
    model.train()
    rates = []
    for _epoch in range(epochs):
        torch.cuda.synchronize(device) if device.type == "cuda" else None
        start = time.perf_counter()
        order = torch.randperm(len(images), device=device, generator=generator)
        for step in range(steps):
            index = order[step * batch_size:(step + 1) * batch_size]
            x = (images[index].float().div_(255) - mean) / std
            x = flip_translate(x, 4, generator).contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                loss = F.cross_entropy(model(x).float(), labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        torch.cuda.synchronize(device) if device.type == "cuda" else None
        rates.append(steps * batch_size / (time.perf_counter() - start))
    return float(np.median(rates[1:] if len(rates) > 1 else rates))
