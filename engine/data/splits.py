"""Seeded, stratified splits as index arrays: holdout fractions, a limited subset, k-fold folds."""

from __future__ import annotations

import zlib

import torch

from engine.errors import DataError


def derived_seed(seed: int, purpose: str) -> int:
    """A seed for one purpose ("test", "val", ...) so that each split is independent of the others."""
    return (int(seed) * 1_000_003 + zlib.crc32(purpose.encode())) % (2**63)


def _class_groups(labels: torch.Tensor, pool: torch.Tensor, generator: torch.Generator) -> list[torch.Tensor]:
    """The members of `pool` per class (classes in ascending order), each group in a seeded random order."""
    pool_labels = labels[pool]
    groups = []
    for cls in torch.unique(pool_labels).tolist():
        members = pool[pool_labels == cls]
        groups.append(members[torch.randperm(len(members), generator=generator)])
    return groups


def stratified_holdout(
    labels: torch.Tensor, pool: torch.Tensor, fraction: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split `pool` into (kept, held), both sorted: round(fraction * len(pool)) images held out in total, shared
    over the classes in proportion to their size (largest remainders get the rounding), never a whole class."""
    if fraction <= 0 or len(pool) == 0:
        return pool.sort().values, pool.new_empty(0)
    generator = torch.Generator().manual_seed(seed)
    groups = _class_groups(labels, pool, generator)
    quotas = [len(members) * fraction for members in groups]
    counts = [int(q) for q in quotas]
    spare = int(len(pool) * fraction + 0.5) - sum(counts)  # half rounds up, not to even
    by_remainder = sorted(range(len(groups)), key=lambda i: (-(quotas[i] - counts[i]), i))
    for i in by_remainder:
        if spare <= 0:
            break
        if counts[i] < len(groups[i]) - 1:
            counts[i] += 1
            spare -= 1
    kept = [members[n:] for members, n in zip(groups, counts)]
    held = [members[:n] for members, n in zip(groups, counts)]
    return torch.cat(kept).sort().values, torch.cat(held).sort().values


def stratified_subset(labels: torch.Tensor, pool: torch.Tensor, count: int, seed: int) -> torch.Tensor:
    """Exactly `count` members of `pool` (all when fewer) with class proportions kept, seeded; sorted."""
    if count >= len(pool):
        return pool.sort().values
    generator = torch.Generator().manual_seed(seed)
    members, keys = [], []
    for group in _class_groups(labels, pool, generator):
        members.append(group)
        keys.append((torch.arange(len(group), dtype=torch.float64) + 0.5) / len(group))
    order = torch.cat(keys).argsort(stable=True)
    return torch.cat(members)[order[:count]].sort().values


def stratified_folds(labels: torch.Tensor, pool: torch.Tensor, folds: int, seed: int,
                     class_names: list[str] | None = None) -> list[torch.Tensor]:
    """`folds` disjoint, covering, class-balanced folds of `pool` (each sorted); every class needs an image
    in every fold."""
    if len(pool) < folds:
        raise DataError(f"data.folds: {folds} folds need at least {folds} images, the training pool has {len(pool)}")
    counts = torch.bincount(labels[pool])
    smallest = int(counts[counts > 0].min())
    if folds > smallest:
        label = int(((counts > 0) & (counts == smallest)).nonzero()[0, 0])
        name = class_names[label] if class_names and label < len(class_names) else str(label)
        raise DataError(f"data.folds: {folds} folds, but class `{name}` has only {smallest} images in the training "
                        f"pool: some validation folds would lack it; use at most {smallest} folds")
    generator = torch.Generator().manual_seed(seed)
    ordered = torch.cat(_class_groups(labels, pool, generator))
    assignment = torch.arange(len(ordered)) % folds
    return [ordered[assignment == fold].sort().values for fold in range(folds)]


def make_splits(
    labels: torch.Tensor,
    test_start: int | None,
    *,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    folds: int | None = None,
    fold: int = 0,
    limit: int | None = None,
    class_names: list[str] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train, val, test) index arrays. The test split is the source's own (rows from `test_start`) or a
    stratified `test_fraction` holdout; val is a stratified holdout of the rest or fold `fold` of `folds`."""
    n = len(labels)
    if test_start is not None:
        pool, test = torch.arange(test_start), torch.arange(test_start, n)
    else:
        pool, test = stratified_holdout(labels, torch.arange(n), test_fraction, derived_seed(seed, "test"))
    if limit is not None:
        pool = stratified_subset(labels, pool, limit, derived_seed(seed, "limit"))
    if folds is not None:
        parts = stratified_folds(labels, pool, folds, derived_seed(seed, "folds"), class_names)
        val = parts[fold]
        train = torch.cat([p for i, p in enumerate(parts) if i != fold]).sort().values
    else:
        train, val = stratified_holdout(labels, pool, val_fraction, derived_seed(seed, "val"))
    return train, val, test
