"""`data`: inspect a dataset: counts per class and split, per-channel mean/std of the training split."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from console.common import JsonOption, OverrideOption, err_console, out_console, print_json, reports_errors
from console.fmt import plural

app = typer.Typer(help="Inspect datasets (class counts per split, normalization statistics) and the decoded-image "
                       "cache.",
                  no_args_is_help=True)


@app.callback()
def data_group() -> None:
    """Inspect datasets: class counts per split and normalization statistics."""


def load_data_config(name: str, overrides: list[str] | None = None) -> Any:
    """The data section of a data preset or an experiment (name or YAML file), with `--set` overrides.

    Overrides may name the key with or without its `data.` prefix.
    """
    from engine.config import from_dict
    from engine.errors import ConfigError
    from engine.presets import apply_overrides, detect_kind, find_preset, load_mapping, load_section_preset
    from engine.presets import resolve_experiment

    overrides = [text if text.startswith("data.") else f"data.{text}" for text in overrides or []]
    try:
        path = find_preset("data", name)
    except ConfigError as missing:
        try:
            find_preset("experiment", name)
        except ConfigError:
            raise missing from None  # names the data presets there are, and the closest one
        return resolve_experiment(name, overrides).data
    if detect_kind(path, load_mapping(path)) == "experiment":
        return resolve_experiment(str(path), overrides).data
    raw = apply_overrides({"data": load_section_preset("data", str(path))}, overrides)
    return from_dict(raw, str(path)).data


@app.command()
@reports_errors
def stats(
    data: Annotated[str, typer.Argument(metavar="DATA", help="A data preset name (see `presets list data`) or a YAML file.")],
    overrides: OverrideOption = None,
    as_json: JsonOption = False,
) -> None:
    """Print images per class for train/val/test and the per-channel mean/std of the training split."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
    from rich.table import Table

    from engine.data import load_dataset
    from engine.preview import split_counts

    cfg = load_data_config(data, overrides)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=err_console,
                  transient=True, disable=as_json) as bar:
        tasks: dict[str, Any] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        ds = load_dataset(cfg, progress=progress)
    splits = {"train": ds.train_idx, "val": ds.val_idx, "test": ds.test_idx}
    counts = split_counts(ds.labels, splits, ds.num_classes)
    if as_json:
        print_json({"source": cfg.source, "classes": ds.classes, "counts": counts, "mean": ds.mean, "std": ds.std,
                    "image_size": ds.image_size, "channels": ds.channels, "info": ds.info})
        return
    table = Table("class", "name", "train", "val", "test", title=f"{data}: {cfg.source}, {ds.num_classes} classes, "
                  f"{ds.channels}x{ds.image_size}x{ds.image_size} px")
    for index, name in enumerate(ds.classes):
        table.add_row(str(index), name, *(str(counts[split][index]) for split in splits))
    table.add_row("", "total", *(str(len(idx)) for idx in splits.values()), style="bold")
    out_console.print(table)
    means = ", ".join(f"{v:.4f}" for v in ds.mean)
    stds = ", ".join(f"{v:.4f}" for v in ds.std)
    out_console.print(f"train mean: [{means}]  std: [{stds}]", highlight=False)
    if ds.info.get("skipped"):
        out_console.print(f"skipped {plural(ds.info['skipped'], 'unreadable file')}", highlight=False)
    if ds.info.get("cached"):
        cache = f"cache {ds.info['cache_key']} ({'hit' if ds.info.get('cache_hit') else 'written'})"
    else:
        cache = "not cached"
    err_console.print(f"{cache}, loaded in {ds.info['load_seconds']:.2f}s", highlight=False)


@app.command()
@reports_errors
def cache(
    clear: Annotated[bool, typer.Option("--clear",
                                        help="Delete the entries listed (all, or those --unused-for).")] = False,
    unused_for: Annotated[float | None, typer.Option("--unused-for", metavar="DAYS", min=0,
                                                     help="Only entries not used for this many days.")] = None,
    as_json: JsonOption = False,
) -> None:
    """List the decoded image tables cached under the data folder (what, size, last use); --clear deletes them."""
    import time

    from rich.table import Table

    from console.common import fmt_bytes, fmt_seconds
    from engine.data import data_dir
    from engine.data.table import cache_entries, remove_cached

    entries = cache_entries()
    if unused_for is not None:
        entries = [e for e in entries if time.time() - e["last_used"] >= unused_for * 86400]
    if clear:
        for entry in entries:
            remove_cached(entry["key"])
    if as_json:
        print_json({"folder": str(data_dir() / "cache"), "entries": entries, "cleared": clear})
        return
    if not entries:
        out_console.print(f"nothing {'to delete' if clear else 'cached'} in {data_dir() / 'cache'}"
                          + (f" unused for {plural(unused_for, 'day')}" if unused_for is not None else ""), highlight=False)
        return
    table = Table("key", "source", "root", "images", "shape", "size", "last used",
                  title=f"{'deleted from' if clear else 'cached in'} {data_dir() / 'cache'}")
    for entry in entries:
        shape = "x".join(str(v) for v in entry.get("shape", [])) or "?"
        table.add_row(entry["key"], str(entry.get("source", "?")), str(entry.get("root") or "-"),
                      str(entry.get("images", "?")), shape, fmt_bytes(entry["bytes"]),
                      f"{fmt_seconds(time.time() - entry['last_used'])} ago")
    out_console.print(table)
    total = sum(entry["bytes"] for entry in entries)
    out_console.print(f"{plural(len(entries), 'entry')}, {fmt_bytes(total)}" + (" deleted" if clear else ""), highlight=False)
