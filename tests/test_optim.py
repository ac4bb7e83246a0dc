"""Optimizers, LR schedules (against torch's own scheduler classes), warmup, resume, preview and presets."""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn
from torch.optim import lr_scheduler as tls

from engine.config import OptimConfig, ScheduleConfig, section_from_dict
from engine.errors import CheckpointError, ConfigError
from engine.optim import (
    LRSchedule,
    build_optimizer,
    clip_gradients,
    lr_drops,
    preview_note,
    preview_schedule,
)

PRESETS = Path(__file__).resolve().parents[1] / "presets"
BASE_LR = 0.1
EPOCHS = 12
SPE = 5  # optimizer steps per epoch


def _dummy_optimizer(lr: float = BASE_LR) -> torch.optim.Optimizer:
    return torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr)


def ours(cfg: ScheduleConfig, metrics: list[float] | None = None, epochs: int = EPOCHS) -> list[float]:
    """LR used at every optimizer step under LRSchedule."""
    opt = _dummy_optimizer()
    sched = LRSchedule(opt, cfg, epochs=epochs, steps_per_epoch=SPE, base_lr=BASE_LR)
    lrs = []
    for epoch in range(epochs):
        for _ in range(SPE):
            lrs.append(opt.param_groups[0]["lr"])
            sched.step_batch()
        sched.step_epoch({cfg.metric: metrics[epoch] if metrics else 0.0})
    return lrs


def theirs(make: Callable[[torch.optim.Optimizer], object], per_step: bool, epochs: int = EPOCHS,
           metrics: list[float] | None = None) -> list[float]:
    """LR used at every optimizer step under a torch scheduler stepped per batch or per epoch."""
    opt = _dummy_optimizer()
    sched = make(opt)
    lrs = []
    for epoch in range(epochs):
        for _ in range(SPE):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            if per_step:
                sched.step()
        if metrics is not None:
            sched.step(metrics[epoch])
        elif not per_step:
            sched.step()
    return lrs


def assert_close(a: list[float], b: list[float]) -> None:
    assert len(a) == len(b)
    for i, (x, y) in enumerate(zip(a, b)):
        assert x == pytest.approx(y, rel=1e-6, abs=1e-12), f"step {i}: {x} != {y}"


T = SPE  # torch per-step schedulers count epochs in steps
CASES = [
    ("step", dict(name="step", step_size=3, gamma=0.5),
     lambda o: tls.StepLR(o, 3, 0.5), lambda o: tls.StepLR(o, 3 * T, 0.5)),
    ("multistep", dict(name="multistep", milestones=[7, 3, 3], gamma=0.1),
     lambda o: tls.MultiStepLR(o, [3, 3, 7], 0.1), lambda o: tls.MultiStepLR(o, [3 * T, 3 * T, 7 * T], 0.1)),
    ("exponential", dict(name="exponential", gamma=0.7),
     lambda o: tls.ExponentialLR(o, 0.7), lambda o: tls.ExponentialLR(o, 0.7 ** (1 / T))),
    ("polynomial", dict(name="polynomial", power=2.0),
     lambda o: tls.PolynomialLR(o, EPOCHS, 2.0), lambda o: tls.PolynomialLR(o, EPOCHS * T, 2.0)),
    ("cosine", dict(name="cosine", min_lr=1e-3),
     lambda o: tls.CosineAnnealingLR(o, EPOCHS, 1e-3), lambda o: tls.CosineAnnealingLR(o, EPOCHS * T, 1e-3)),
    ("cosine-past-tmax", dict(name="cosine", t_max=5, min_lr=1e-3),
     lambda o: tls.CosineAnnealingLR(o, 5, 1e-3), lambda o: tls.CosineAnnealingLR(o, 5 * T, 1e-3)),
]


@pytest.mark.parametrize("interval", ["epoch", "step"])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_schedule_matches_torch(case: tuple, interval: str) -> None:
    _, fields, per_epoch, per_step = case
    cfg = ScheduleConfig(interval=interval, **fields)
    expected = theirs(per_step, True) if interval == "step" else theirs(per_epoch, False)
    assert_close(ours(cfg), expected)


def test_constant_schedule() -> None:
    assert ours(ScheduleConfig(name="constant")) == [BASE_LR] * EPOCHS * SPE


@pytest.mark.parametrize("pct_start", [0.3, 0.25])
def test_onecycle_matches_torch(pct_start: float) -> None:
    cfg = ScheduleConfig(name="onecycle", pct_start=pct_start)  # interval epoch still steps per batch
    expected = theirs(lambda o: tls.OneCycleLR(o, BASE_LR, epochs=EPOCHS, steps_per_epoch=SPE, pct_start=pct_start,
                                               cycle_momentum=False), True)
    # torch refuses a step past the end; the last LR used is the same
    assert_close(ours(cfg), expected)


@pytest.mark.parametrize("mode", ["min", "max"])
def test_plateau_matches_torch(mode: str) -> None:
    raw = [1.0, 0.8, 0.8, 0.79999, 0.9, 0.7, 0.7, 0.7, 0.7, 0.6, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7]
    metrics = raw if mode == "min" else [2.0 - m for m in raw]  # the same story for an accuracy
    cfg = ScheduleConfig(name="plateau", mode=mode, factor=0.5, patience=1, cooldown=1, min_lr=0.01,
                         threshold=1e-3, metric="val_x")
    expected = theirs(lambda o: tls.ReduceLROnPlateau(o, mode=mode, factor=0.5, patience=1, cooldown=1,
                                                      min_lr=0.01, threshold=1e-3), False, len(raw), metrics)
    got = ours(cfg, metrics, len(raw))
    assert_close(got, expected)
    assert min(got) == pytest.approx(0.01) and got[0] == BASE_LR


def test_warmup_per_step_then_cosine_matches_sequential() -> None:
    cfg = ScheduleConfig(name="cosine", interval="step", warmup_epochs=2, warmup_start_factor=0.1, min_lr=1e-3)
    expected = theirs(lambda o: tls.SequentialLR(o, [
        tls.LinearLR(o, start_factor=0.1, total_iters=2 * T),
        tls.CosineAnnealingLR(o, (EPOCHS - 2) * T, 1e-3)], milestones=[2 * T]), True)
    got = ours(cfg)
    assert_close(got, expected)
    assert got[0] == pytest.approx(0.01) and got[1] == pytest.approx(0.01 + 0.09 / 10)
    assert got[2 * T] == pytest.approx(BASE_LR)


def test_warmup_per_epoch_then_multistep() -> None:
    cfg = ScheduleConfig(name="multistep", milestones=[4], warmup_epochs=3, warmup_start_factor=0.25)
    per_epoch = ours(cfg)[::SPE]
    expected_epoch = [0.025, 0.05, 0.075] + [0.1] * 4 + [0.01] * 5  # milestones count from the end of warmup
    assert_close(per_epoch, expected_epoch)
    assert ours(cfg)[:SPE] == [0.025] * SPE  # whole epochs: constant within the epoch


def test_fractional_warmup_needs_step_interval() -> None:
    with pytest.raises(ConfigError, match="schedule.warmup_epochs"):
        LRSchedule(_dummy_optimizer(), ScheduleConfig(name="cosine", warmup_epochs=0.5), epochs=5,
                   steps_per_epoch=4, base_lr=0.1)
    cfg = ScheduleConfig(name="cosine", interval="step", warmup_epochs=0.5)
    series = preview_schedule(cfg, base_lr=0.1, epochs=5, steps_per_epoch=4)
    assert [round(lr, 6) for _, lr in series[:3]] == [0.01, 0.055, 0.1]


@pytest.mark.parametrize("fields, key", [
    (dict(name="onecycle", warmup_epochs=1), "schedule.warmup_epochs"),
    (dict(name="cosine", warmup_epochs=12), "schedule.warmup_epochs"),
    (dict(name="multistep"), "schedule.milestones"),
    (dict(name="plateau", factor=1.5), "schedule.factor"),
    (dict(name="onecycle", pct_start=1.0), "schedule.pct_start"),
])
def test_bad_schedule_settings_name_the_key(fields: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        LRSchedule(_dummy_optimizer(), ScheduleConfig(**fields), epochs=12, steps_per_epoch=4, base_lr=0.1)


def test_plateau_missing_metric_is_a_config_error() -> None:
    sched = LRSchedule(_dummy_optimizer(), ScheduleConfig(name="plateau", metric="val_loss"), epochs=3,
                       steps_per_epoch=2, base_lr=0.1)
    with pytest.raises(ConfigError, match="schedule.metric.*val_acc"):
        sched.step_epoch({"val_acc": 0.5})


RESUME_CASES = {
    "cosine-warmup": dict(name="cosine", interval="step", warmup_epochs=2),
    "multistep": dict(name="multistep", milestones=[3, 8]),
    "onecycle": dict(name="onecycle"),
    "exponential": dict(name="exponential", gamma=0.8, interval="step"),
    "plateau": dict(name="plateau", patience=1, cooldown=1, factor=0.5),
}


@pytest.mark.parametrize("name", list(RESUME_CASES))
def test_state_dict_round_trip_continues_identically(name: str) -> None:
    cfg = ScheduleConfig(**RESUME_CASES[name])
    metrics = [1.0, 0.9, 0.95, 0.97, 0.9, 0.99, 0.98, 0.97, 0.96, 0.99, 0.99, 0.99]
    full = ours(cfg, metrics)

    opt = _dummy_optimizer()
    sched = LRSchedule(opt, cfg, epochs=EPOCHS, steps_per_epoch=SPE, base_lr=BASE_LR)
    for epoch in range(5):
        for _ in range(SPE):
            sched.step_batch()
        sched.step_epoch({"val_loss": metrics[epoch]})
    sched.step_batch()
    sched.step_batch()  # save mid-epoch
    buffer = io.BytesIO()
    torch.save(sched.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)

    opt2 = _dummy_optimizer(lr=123.0)
    resumed = LRSchedule(opt2, cfg, epochs=EPOCHS, steps_per_epoch=SPE, base_lr=BASE_LR)
    resumed.load_state_dict(state)
    rest = []
    for epoch in range(5, EPOCHS):
        for _ in range(SPE if epoch > 5 else SPE - 2):
            rest.append(resumed.lr())
            resumed.step_batch()
        resumed.step_epoch({"val_loss": metrics[epoch]})
    assert rest == full[5 * SPE + 2:]


def test_load_state_of_another_schedule_is_refused() -> None:
    state = LRSchedule(_dummy_optimizer(), ScheduleConfig(name="cosine"), epochs=3, steps_per_epoch=2,
                       base_lr=0.1).state_dict()
    other = LRSchedule(_dummy_optimizer(), ScheduleConfig(name="constant"), epochs=3, steps_per_epoch=2, base_lr=0.1)
    with pytest.raises(CheckpointError, match="cosine"):
        other.load_state_dict(state)


def test_lr_scale_per_group() -> None:
    a, b = nn.Parameter(torch.zeros(1)), nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{"params": [a]}, {"params": [b], "lr_scale": 0.1}], lr=1.0)
    sched = LRSchedule(opt, ScheduleConfig(name="exponential", gamma=0.5), epochs=3, steps_per_epoch=1, base_lr=1.0)
    sched.step_epoch({})
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.5, 0.05])
    assert sched.lr() == pytest.approx(0.5)


# ---------------------------------------------------------------- preview


def test_preview_length_epochs_and_drops() -> None:
    cfg = ScheduleConfig(name="multistep", milestones=[2, 4], interval="step")
    series = preview_schedule(cfg, base_lr=0.1, epochs=6, steps_per_epoch=7)
    assert len(series) == 6 * 7
    assert series[0] == (0.0, pytest.approx(0.1)) and series[8][0] == pytest.approx(1 + 1 / 7)
    assert lr_drops(series) == [2.0, 4.0]
    assert preview_note(cfg) is None


def test_preview_plateau_is_worst_case_and_labelled() -> None:
    cfg = ScheduleConfig(name="plateau", patience=2, factor=0.1)
    series = preview_schedule(cfg, base_lr=0.1, epochs=10, steps_per_epoch=3)
    # the first epoch sets the best; then three flat epochs exceed patience 2 → drop before epoch 4
    assert lr_drops(series) == [4.0, 7.0]
    assert "never improves" in (preview_note(cfg) or "")


def test_preview_smooth_decay_reports_no_drops() -> None:
    cfg = ScheduleConfig(name="cosine", interval="step", warmup_epochs=1)
    series = preview_schedule(cfg, base_lr=0.1, epochs=8, steps_per_epoch=50)
    assert lr_drops(series) == []
    assert max(lr for _, lr in series) == pytest.approx(0.1)
    assert preview_schedule(ScheduleConfig(name="onecycle"), base_lr=0.1, epochs=3, steps_per_epoch=4)[-1][1] < 1e-3


# ---------------------------------------------------------------- optimizers


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.ln = nn.LayerNorm([4, 2, 2])  # 3-D weight: a norm weight that ndim alone would miss
        self.head = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.ln(torch.relu(self.bn(self.conv(x)))).flatten(1))


def test_no_decay_norm_bias_groups() -> None:
    net = _Net()
    opt = build_optimizer(net, OptimConfig(name="adamw", lr=0.01, weight_decay=0.5, no_decay_norm_bias=True))
    groups = {g["name"]: g for g in opt.param_groups}
    assert {id(p) for p in groups["decay"]["params"]} == {id(net.conv.weight), id(net.head.weight)}
    assert len(groups["no_decay"]["params"]) == 6 and groups["no_decay"]["weight_decay"] == 0.0
    assert groups["decay"]["weight_decay"] == 0.5

    # real effect: with zero gradients AdamW only decays the decay group
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    for p in net.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    for name, p in net.named_parameters():
        changed = not torch.equal(before[name], p.detach())
        assert changed == (name in ("conv.weight", "head.weight")), name


def test_optimizer_kinds_and_settings() -> None:
    net = _Net()
    sgd = build_optimizer(net, OptimConfig(name="sgd", lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4))
    assert isinstance(sgd, torch.optim.SGD) and len(sgd.param_groups) == 1
    assert sgd.param_groups[0]["nesterov"] and sgd.param_groups[0]["weight_decay"] == 1e-4
    adam = build_optimizer(net, OptimConfig(name="adam", lr=1e-3, betas=[0.8, 0.99], eps=1e-6))
    assert type(adam) is torch.optim.Adam and adam.param_groups[0]["betas"] == (0.8, 0.99)
    assert type(build_optimizer(net, OptimConfig(name="adamw"))) is torch.optim.AdamW
    with pytest.raises(ConfigError, match="optim.nesterov"):
        build_optimizer(net, OptimConfig(name="sgd", momentum=0.0, nesterov=True))
    with pytest.raises(ConfigError, match="optim.betas"):
        build_optimizer(net, OptimConfig(name="adam", betas=[0.9]))


def test_frozen_params_are_included_and_train_after_unfreezing() -> None:
    net = _Net()
    net.conv.requires_grad_(False)
    assert len(build_optimizer(net, OptimConfig(), trainable_only=True).param_groups[0]["params"]) == 6
    opt = build_optimizer(net, OptimConfig(name="sgd", lr=0.1))
    assert len(opt.param_groups[0]["params"]) == 8
    x, y = torch.randn(4, 1, 4, 4), torch.tensor([0, 1, 2, 0])
    frozen_before = net.conv.weight.detach().clone()
    nn.functional.cross_entropy(net(x), y).backward()
    opt.step()
    opt.zero_grad()
    assert torch.equal(frozen_before, net.conv.weight)
    net.conv.requires_grad_(True)
    nn.functional.cross_entropy(net(x), y).backward()
    opt.step()
    assert not torch.equal(frozen_before, net.conv.weight)


def test_clip_gradients() -> None:
    net = nn.Linear(3, 2)
    assert float(clip_gradients(net, 1.0)) == 0.0  # no grads yet: nothing to clip, norm 0
    for p in net.parameters():
        p.grad = torch.full_like(p, 10.0)
    grads = [p.grad.clone() for p in net.parameters()]
    assert clip_gradients(net, None) is None
    assert all(torch.equal(g, p.grad) for g, p in zip(grads, net.parameters()))
    norm = clip_gradients(net, 1.0)
    assert float(norm) == pytest.approx(10.0 * math.sqrt(8))
    total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in net.parameters()]))
    assert float(total) == pytest.approx(1.0, rel=1e-4)
    with pytest.raises(ConfigError, match="optim.grad_clip"):
        clip_gradients(net, 0.0)


# ---------------------------------------------------------------- presets


def _preset_files(kind: str) -> list[Path]:
    return sorted((PRESETS / kind).glob("*.yaml"))


@pytest.mark.parametrize("path", _preset_files("optim"), ids=lambda p: p.stem)
def test_optim_presets_validate_and_build(path: Path) -> None:
    cfg = section_from_dict("optim", yaml.safe_load(path.read_text()), str(path))
    assert isinstance(build_optimizer(_Net(), cfg), torch.optim.Optimizer)


@pytest.mark.parametrize("path", _preset_files("schedule"), ids=lambda p: p.stem)
def test_schedule_presets_validate_and_preview(path: Path) -> None:
    cfg = section_from_dict("schedule", yaml.safe_load(path.read_text()), str(path))
    series = preview_schedule(cfg, base_lr=0.1, epochs=80, steps_per_epoch=3)
    assert len(series) == 240 and all(lr >= 0 for _, lr in series)


def test_presets_cover_the_users_recipes() -> None:
    names = {p.stem for p in _preset_files("schedule")} | {p.stem for p in _preset_files("optim")}
    assert {"sgd", "sgd-nesterov-wd", "adam", "adam-1e-4", "adamw", "constant", "cosine", "multistep-10",
            "multistep-10-11", "multistep-20-30", "multistep-30-45", "multistep-50-75", "exponential-0.7",
            "polynomial-2", "plateau", "plateau-cooldown", "onecycle", "cosine-warmup"} <= names


def test_milestones_past_the_end_are_named() -> None:
    from engine.optim import unused_milestones_note

    cfg = ScheduleConfig(name="multistep", milestones=[3, 5], warmup_epochs=2)
    note = unused_milestones_note(cfg, 6) or ""
    assert "[5] never apply" in note and "2 warmup epochs" in note
    assert unused_milestones_note(cfg, 8) is None


def test_the_lr_suggestion_is_where_the_loss_falls_not_early_noise() -> None:
    """Loss flat (noisy) at LRs too small to train, falling from 1e-3 to 1e-2, then diverging: the suggestion sits
    in the fall, not on a noise dip at 1e-6."""
    import math
    import random

    from engine.lr_find import suggest_lr

    rng = random.Random(0)
    series, smoothed = [], None
    for step in range(200):
        log_lr = -7 + 7 * step / 199  # 1e-7 .. 1
        fall = 1 / (1 + math.exp(-4 * (log_lr + 2.5)))  # centred at ~3e-3
        loss = 2.3 - 1.5 * fall + (0.0 if log_lr < -1.5 else 3 * (log_lr + 1.5) ** 2) + rng.gauss(0, 0.15)
        smoothed = loss if smoothed is None else 0.05 * loss + 0.95 * smoothed
        series.append({"lr": 10 ** log_lr, "loss": loss, "smoothed": smoothed})
    suggested = suggest_lr(series)
    assert suggested is not None and 3e-4 <= suggested <= 1e-2, suggested
