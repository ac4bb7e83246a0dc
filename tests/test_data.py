"""The digits source, Dataset, splits, class weights and BatchLoader (real tensors, CPU)."""

from __future__ import annotations

import pytest
import torch

from engine.config import DataConfig
from engine.data import BatchLoader, class_weights, data_dir, load_dataset
from engine.data.splits import make_splits, stratified_folds, stratified_holdout, stratified_subset

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def isolated_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("IMGCLS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("IMGCLS_OFFLINE", "1")


def test_data_dir_follows_env(tmp_path):
    assert data_dir() == tmp_path / "data"


def test_digits_default_dataset():
    ds = load_dataset(DataConfig())
    assert ds.images.dtype == torch.uint8 and ds.images.shape == (1797, 1, 8, 8)
    assert ds.images.is_contiguous() and ds.labels.dtype == torch.int64
    assert ds.classes == [str(i) for i in range(10)]
    assert (ds.num_classes, ds.channels, ds.image_size) == (10, 1, 8)
    assert int(ds.images.max()) == 255 and int(ds.images.min()) == 0
    assert set(torch.unique(ds.images).tolist()) <= {round(v * 255 / 16) for v in range(17)}
    everything = torch.cat([ds.train_idx, ds.val_idx, ds.test_idx])
    assert len(everything) == 1797 and len(everything.unique()) == 1797
    assert abs(len(ds.test_idx) / 1797 - 0.2) < 0.01
    assert ds.info["counts"] == {"train": len(ds.train_idx), "val": len(ds.val_idx), "test": len(ds.test_idx)}
    train = ds.images[ds.train_idx].double() / 255
    assert ds.mean[0] == pytest.approx(train.mean().item(), abs=1e-5)
    assert ds.std[0] == pytest.approx(train.std(unbiased=False).item(), abs=1e-5)


def test_digits_resized_rgb_and_seeded_splits():
    a = load_dataset(DataConfig(image_size=16, channels=3, split_seed=3))
    b = load_dataset(DataConfig(image_size=16, channels=3, split_seed=3))
    c = load_dataset(DataConfig(image_size=16, channels=3, split_seed=4))
    assert a.images.shape == (1797, 3, 16, 16)
    assert torch.equal(a.images[:, 0], a.images[:, 2])
    assert torch.equal(a.train_idx, b.train_idx) and torch.equal(a.test_idx, b.test_idx)
    assert not torch.equal(a.test_idx, c.test_idx)


def test_limit_keeps_class_balance_and_compacts_table():
    ds = load_dataset(DataConfig(limit=200, val_fraction=0.25))
    assert len(ds.train_idx) + len(ds.val_idx) == 200
    assert len(ds.images) == 200 + len(ds.test_idx)
    counts = torch.bincount(ds.labels[torch.cat([ds.train_idx, ds.val_idx])], minlength=10)
    assert counts.min() >= 19 and counts.max() <= 21


def test_holdout_is_stratified():
    labels = torch.arange(1000) % 4
    labels[:100] = 0  # imbalanced: class 0 has 325, others 225
    kept, held = stratified_holdout(labels, torch.arange(1000), 0.2, seed=1)
    assert len(torch.cat([kept, held]).unique()) == 1000
    for cls in range(4):
        n = int((labels == cls).sum())
        assert int((labels[held] == cls).sum()) == round(n * 0.2)


def test_kfold_disjoint_covering_and_stratified():
    labels = torch.arange(103) % 3
    pool = torch.arange(103)
    folds = stratified_folds(labels, pool, 5, seed=0)
    joined = torch.cat(folds)
    assert len(joined) == 103 and torch.equal(joined.sort().values, pool)
    for fold in folds:
        assert 20 <= len(fold) <= 21
        assert torch.bincount(labels[fold], minlength=3).min() >= 6
    train, val, test = make_splits(labels, 90, val_fraction=0.1, test_fraction=0.2, seed=0, folds=3, fold=1)
    assert torch.equal(test, torch.arange(90, 103))
    assert len(set(train.tolist()) & set(val.tolist())) == 0 and len(train) + len(val) == 90
    vals = [make_splits(labels, 90, val_fraction=0.1, test_fraction=0.2, seed=0, folds=3, fold=f)[1] for f in range(3)]
    assert torch.equal(torch.cat(vals).sort().values, torch.arange(90))


def test_kfold_in_load_dataset():
    folds = [load_dataset(DataConfig(folds=4, fold=f)) for f in range(4)]
    assert all(torch.equal(f.test_idx, folds[0].test_idx) for f in folds)
    vals = torch.cat([f.val_idx for f in folds]).sort().values
    pool = torch.cat([folds[0].train_idx, folds[0].val_idx]).sort().values
    assert torch.equal(vals, pool)


def test_subset_exact_count():
    labels = torch.arange(500) % 7
    subset = stratified_subset(labels, torch.arange(500), 70, seed=2)
    assert len(subset) == 70 and torch.bincount(labels[subset]).tolist() == [10] * 7


def test_class_weights_inverse_frequency_mean_one():
    labels = torch.tensor([0] * 8 + [1] * 2 + [2] * 4)
    weights = class_weights(labels, 4)
    assert weights.dtype == torch.float32 and weights[3] == 0
    assert weights.mean().item() == pytest.approx(1.0)
    assert weights[1] / weights[0] == pytest.approx(4.0) and weights[2] / weights[0] == pytest.approx(2.0)


def _loader(n: int = 50, **kw) -> BatchLoader:
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 2, 2).contiguous()
    labels = torch.arange(n) % 5
    args = dict(batch_size=8, device=CPU, shuffle=True, drop_last=False, seed=7)
    args.update(kw)
    return BatchLoader(images, labels, kw.pop("indices", torch.arange(n)), **args)


def _epoch_rows(loader: BatchLoader, epoch: int) -> list[int]:
    loader.set_epoch(epoch)
    return [int(v) for x, _ in loader for v in x[:, 0, 0, 0]]


def test_loader_covers_each_index_once_and_depends_on_seed_epoch():
    loader = _loader()
    assert loader.resident and len(loader) == 7
    first = _epoch_rows(loader, 0)
    assert sorted(first) == list(range(50))
    assert first == _epoch_rows(_loader(), 0)  # a fresh loader: same (seed, epoch) -> same order
    assert first != _epoch_rows(loader, 1)
    assert first == _epoch_rows(loader, 0)  # resume: going back to epoch 0 reproduces it
    assert first != _epoch_rows(_loader(seed=8), 0)


def test_loader_labels_follow_images_and_subset_indices():
    images = torch.arange(30, dtype=torch.uint8).view(30, 1, 1, 1)
    labels = torch.arange(30) * 2
    loader = BatchLoader(images, labels, torch.arange(10, 20), batch_size=4, device=CPU, shuffle=True,
                         drop_last=False, seed=0)
    seen = []
    for x, y in loader:
        assert x.dtype == torch.uint8 and y.dtype == torch.int64
        assert torch.equal(y, x.view(-1).long() * 2)
        seen += x.view(-1).tolist()
    assert sorted(seen) == list(range(10, 20))


def test_loader_drop_last_and_no_shuffle():
    loader = _loader(drop_last=True)
    assert len(loader) == 6
    sizes = [len(x) for x, _ in loader]
    assert sizes == [8] * 6
    ordered = _loader(shuffle=False)
    assert _epoch_rows(ordered, 3) == list(range(50))


def test_loader_shards_ranks_equally_and_disjointly():
    parts = [_epoch_rows(_loader(n=51, rank=r, world_size=3), 2) for r in range(3)]
    assert len({len(p) for p in parts}) == 1
    assert sorted(sum(parts, [])) == list(range(51))
    ragged = [_loader(n=50, rank=r, world_size=3) for r in range(3)]
    assert len({len(loader) for loader in ragged}) == 1
    assert set(sum((_epoch_rows(loader, 0) for loader in ragged), [])) == set(range(50))


def test_weighted_sampling_favours_rare_classes():
    n = 1000
    labels = torch.zeros(n, dtype=torch.long)
    labels[:50] = 1  # class 1 is rare: 5%
    images = torch.zeros(n, 1, 1, 1, dtype=torch.uint8)
    weights = class_weights(labels, 2)[labels]
    loader = BatchLoader(images, labels, torch.arange(n), batch_size=100, device=CPU, shuffle=True,
                         drop_last=False, seed=0, sample_weights=weights)
    drawn = torch.cat([y for _, y in loader])
    assert len(drawn) == n
    assert 0.4 < drawn.float().mean().item() < 0.6
    loader.set_epoch(1)
    again = torch.cat([y for _, y in loader])
    loader.set_epoch(1)
    assert torch.equal(again, torch.cat([y for _, y in loader]))


def test_loader_on_cpu_keeps_table_in_place_whatever_the_budget():
    loader = _loader(budget_gb=0.0)
    assert loader.resident and loader.images.device.type == "cpu"
    assert sorted(_epoch_rows(loader, 0)) == list(range(50))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("budget_gb", [8.0, 0.0])
def test_cuda_loader_resident_and_pinned_paths(budget_gb):
    n = 1000
    images = torch.arange(n).remainder(256).to(torch.uint8).view(n, 1, 1, 1).expand(n, 3, 4, 4).contiguous()
    labels = torch.arange(n)
    device = torch.device("cuda")
    loader = BatchLoader(images, labels, torch.arange(n), batch_size=64, device=device, shuffle=True,
                         drop_last=False, seed=3, budget_gb=budget_gb)
    assert loader.resident == (budget_gb > 0)
    for epoch in range(2):
        loader.set_epoch(epoch)
        seen = []
        for x, y in loader:
            assert x.device.type == "cuda" and y.device.type == "cuda" and x.dtype == torch.uint8
            assert torch.equal(x[:, 0, 0, 0].long(), y.remainder(256))
            seen.append(y)
        assert torch.equal(torch.cat(seen).sort().values.cpu(), labels)
    weights = torch.ones(n, dtype=torch.float64)
    weighted = BatchLoader(images, labels, torch.arange(n), batch_size=100, device=device, shuffle=True,
                           drop_last=True, seed=0, sample_weights=weights, budget_gb=budget_gb)
    assert sum(len(y) for _, y in weighted) == n


def test_holdout_sizes_follow_the_fractions_even_for_tiny_classes():
    from engine.data.splits import make_splits

    labels = torch.arange(20).repeat_interleave(3)  # 20 classes of 3 images
    train, val, test = make_splits(labels, None, val_fraction=0.1, test_fraction=0.2, seed=0)
    assert (len(train), len(val), len(test)) == (43, 5, 12)
    assert len(set(train.tolist()) | set(val.tolist()) | set(test.tolist())) == 60
    for cls in range(20):  # no class is held out whole
        assert (labels[train] == cls).any()
