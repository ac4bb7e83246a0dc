"""Augmented images/s: the engine's pipeline (GPU-resident table + batched per-sample augmentation) vs a
torchvision DataLoader with the equivalent PIL transforms (batch 512, 4 workers), at 32 px and 224 px, plus a
ResNet-18 small-input training step fed by the pipeline vs the same step on one fixed pre-made batch.

    python bench/data_throughput.py [--out results.json] [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.baselines import pil_loader  # noqa: E402
from bench.synthetic import random_images  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def engine_pipeline(images: torch.Tensor, labels: torch.Tensor, device: torch.device, *, batch: int,
                    epochs: int) -> tuple[float, object, object]:
    """images/s of BatchLoader + Augmenter(flip, translate 1/8, erasing) over whole epochs (median of 2..)."""
    from engine.augment import Augmenter
    from engine.config import section_from_dict
    from engine.data import BatchLoader
    from engine.presets import load_section_preset

    cfg = section_from_dict("augment", load_section_preset("augment", "flip-translate-erase"))
    augmenter = Augmenter(cfg, mean=[0.5] * 3, std=[0.25] * 3, num_classes=10, device=device)
    loader = BatchLoader(images, labels, torch.arange(len(images)), batch_size=batch, device=device, shuffle=True,
                         drop_last=True, seed=0, budget_gb=40.0)
    generator = torch.Generator(device=device).manual_seed(0)
    rates = []
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        _sync(device)
        start, seen = time.perf_counter(), 0
        for x, y in loader:
            out, _ = augmenter.train_batch(x, y, generator)
            seen += y.shape[0]
        _sync(device)
        rates.append(seen / (time.perf_counter() - start))
    steady = sorted(rates[1:] or rates)
    return steady[len(steady) // 2], loader, augmenter


def pil_pipeline(size: int, count: int, device: torch.device, *, batch: int, steps: int) -> float:
    """images/s of a DataLoader (4 workers, PIL transforms) delivering augmented batches onto the device."""
    from torchvision import transforms

    images, labels = random_images(count, size)
    transform = transforms.Compose([
        transforms.RandomHorizontalFlip(), transforms.RandomAffine(0, translate=(0.125, 0.125)),
        transforms.ToTensor(), transforms.Normalize((0.5,) * 3, (0.25,) * 3), transforms.RandomErasing(p=0.5)])
    loader = pil_loader(images, labels, transform, batch_size=batch, workers=4)
    seen, done, start = 0, 0, 0.0
    while done < steps + 3:
        for x, y in loader:
            if done == 3:
                _sync(device)
                start, seen = time.perf_counter(), 0
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            seen += y.shape[0]
            done += 1
            if done >= steps + 3:
                break
    _sync(device)
    return seen / (time.perf_counter() - start)


def step_fed_vs_fixed(loader: object, augmenter: object, device: torch.device, *, steps: int) -> dict:
    """ResNet-18 small-input bf16 channels_last step time: fed by the pipeline vs one fixed pre-made batch."""
    from engine.models import create_model

    model = create_model("resnet18", 10, 3, 32, 0.0, small_input=True, stem_kernel=3).to(device)
    model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    generator = torch.Generator(device=device).manual_seed(1)
    amp = device.type == "cuda"

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = F.cross_entropy(model(x.contiguous(memory_format=torch.channels_last)).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    from engine.prefetch import AugmentedBatches

    def fed() -> float:
        done = 0
        loader.set_epoch(7)  # type: ignore[attr-defined]
        batches = AugmentedBatches(loader, lambda x, y: augmenter.train_batch(x, y, generator))  # type: ignore[attr-defined]
        _sync(device)
        start = time.perf_counter()
        for x, y in batches:  # the engine's path
            step(x, y)
            done += 1
            if done == steps:
                break
        _sync(device)
        return (time.perf_counter() - start) / done

    x0, y0 = next(iter(loader))  # type: ignore[call-overload]
    fixed_x, fixed_y = augmenter.train_batch(x0, y0, generator)  # type: ignore[attr-defined]

    def fixed() -> float:
        _sync(device)
        start = time.perf_counter()
        for _ in range(steps):
            step(fixed_x, fixed_y)
        _sync(device)
        return (time.perf_counter() - start) / steps

    fixed(), fed()  # warm-up: cuDNN tuning
    fed_s = sorted(fed() for _ in range(3))[1]
    fixed_s = sorted(fixed() for _ in range(3))[1]
    return {"fed_step_ms": fed_s * 1e3, "fixed_step_ms": fixed_s * 1e3, "overhead": fed_s / fixed_s - 1.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check the script on a CPU")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cudnn.benchmark = True
    sizes = {32: 50_000, 224: 5_000} if not args.quick else {32: 1024, 224: 64}
    batch, pil_steps, epochs = (512, 40, 4) if not args.quick else (32, 2, 2)
    results: dict = {"device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
                     "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"), "batch": batch}
    for size, count in sizes.items():
        images, labels = random_images(count, size)
        table = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
        rate, loader, augmenter = engine_pipeline(table, torch.from_numpy(labels), device, batch=batch, epochs=epochs)
        pil = pil_pipeline(size, min(count, 20_000), device, batch=batch, steps=pil_steps if size == 32 else pil_steps // 2 + 1)
        results[f"{size}px"] = {"engine": rate, "dataloader": pil, "ratio": rate / pil}
        if size == 32:
            results["step_32px"] = step_fed_vs_fixed(loader, augmenter, device, steps=50 if not args.quick else 3)
    print(f"device: {results['device']}, torch {results['torch']}, {results['date']}, batch {batch}")
    print("| size | engine images/s | DataLoader+PIL (4 workers) images/s | ratio |")
    print("| --- | ---: | ---: | ---: |")
    for size in sizes:
        r = results[f"{size}px"]
        print(f"| {size} px | {r['engine']:,.0f} | {r['dataloader']:,.0f} | {r['ratio']:.1f}x |")
    s = results["step_32px"]
    print(f"ResNet-18 small-input step at 32 px: fed by the pipeline {s['fed_step_ms']:.2f} ms, "
          f"fixed batch {s['fixed_step_ms']:.2f} ms, overhead {100 * s['overhead']:+.1f}%")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
