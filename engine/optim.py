"""Optimizers with parameter groups, learning-rate schedules with warmup, schedule preview, gradient clipping.

Every schedule except plateau is a closed-form function of training time, so a schedule resumes exactly from
two counters (finished epochs, optimizer steps into the current epoch). The shapes follow torch's scheduler
classes so recipes transfer: step = StepLR, multistep = MultiStepLR, exponential = ExponentialLR,
polynomial = PolynomialLR, cosine = CosineAnnealingLR, onecycle = OneCycleLR, plateau = ReduceLROnPlateau.

Time is counted in epochs. With `interval: epoch` it is the number of finished epochs (the LR changes once per
epoch); with `interval: step` it is fractional, epoch + step/steps_per_epoch, so multistep still drops exactly at
its milestone epochs while cosine, polynomial and exponential decay smoothly every step. onecycle always steps
per batch over epochs * steps_per_epoch steps.

Warmup ramps the LR linearly from lr * warmup_start_factor to lr over warmup_epochs (per step with
`interval: step`, per whole epoch with `interval: epoch`); the main schedule starts when warmup ends, so its
epoch counts (milestones, step_size, t_max) are measured from the end of warmup, as torch's SequentialLR does.
Past t_max, cosine keeps following the cosine curve (back up again), exactly as CosineAnnealingLR does. Past the
planned epochs (after the last step) every schedule holds the LR of its last step, as onecycle does.

A param group may carry an `lr_scale` entry (default 1.0): its LR is the schedule's LR times that scale.

Extending a run (`resume --set train.epochs=N` past its plan) never re-spreads the schedule: the schedule keeps
the length it was planned over (`schedule.plan_epochs`), and each extension is a segment appended after it
(`schedule.extend`) that starts from the LR of the last step before it, so finished epochs keep their LR and the
LR never jumps. A segment holds that LR (constant, the default), carries the formula before it on (continue),
or decays from it (cosine, polynomial, exponential, step, multistep).
"""

from __future__ import annotations

import bisect
import math
from typing import Any

import torch
from torch import nn

from engine.config import OptimConfig, ScheduleConfig
from engine.errors import CheckpointError, ConfigError, ModelError
from engine.schedule_extension import check_segment, planned_epochs, segment_lr, segment_starts

# Modules whose weights are scales/shifts, not filters: excluded from weight decay with no_decay_norm_bias.
_NORM_TYPES: tuple[type, ...] = tuple(
    t
    for t in (
        nn.modules.batchnorm._NormBase,
        nn.LayerNorm,
        nn.GroupNorm,
        getattr(nn, "RMSNorm", None),
    )
    if t is not None
)
_PLATEAU_EPS = 1e-8  # a plateau reduction smaller than this is ignored (ReduceLROnPlateau's eps)
ONECYCLE_DIV_FACTOR = 25.0  # onecycle starts at lr / this
ONECYCLE_FINAL_DIV_FACTOR = 1e4  # and ends at lr / 25 / this


# ---------------------------------------------------------------- optimizers


def _need(ok: bool, dotted: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{dotted}: {message}")


def check_optim_config(cfg: OptimConfig) -> None:
    """Range checks of the optimizer section; raise ConfigError naming the key."""
    _need(cfg.lr > 0, "optim.lr", f"must be positive, got {cfg.lr}")
    _need(cfg.weight_decay >= 0, "optim.weight_decay", f"must be >= 0, got {cfg.weight_decay}")
    _need(0 <= cfg.momentum < 1, "optim.momentum", f"must be in [0, 1), got {cfg.momentum}")
    _need(not (cfg.nesterov and cfg.momentum <= 0), "optim.nesterov", "Nesterov needs optim.momentum > 0")
    _need(len(cfg.betas) == 2, "optim.betas", f"needs two values (beta1, beta2), got {cfg.betas}")
    _need(all(0 <= b < 1 for b in cfg.betas), "optim.betas", f"each beta must be in [0, 1), got {cfg.betas}")
    _need(cfg.eps > 0, "optim.eps", f"must be positive, got {cfg.eps}")
    _need(cfg.grad_clip is None or cfg.grad_clip > 0, "optim.grad_clip", "must be positive or null (off)")
    _need(cfg.accumulate >= 1, "optim.accumulate", f"must be at least 1, got {cfg.accumulate}")


def _no_decay_ids(model: nn.Module) -> set[int]:
    """Ids of parameters exempt from weight decay: weights of norm layers and every parameter with ndim <= 1."""
    ids = {id(p) for p in model.parameters() if p.ndim <= 1}
    for module in model.modules():
        if isinstance(module, _NORM_TYPES):
            ids.update(id(p) for p in module.parameters(recurse=False))
    return ids


def param_groups(model: nn.Module, cfg: OptimConfig, *, trainable_only: bool = False) -> list[dict[str, Any]]:
    """The optimizer's param groups: one `all` group, or `decay` + `no_decay` (weight_decay 0) groups."""
    params = [p for p in model.parameters() if p.requires_grad or not trainable_only]
    if not cfg.no_decay_norm_bias:
        return [{"name": "all", "params": params, "weight_decay": cfg.weight_decay}]
    exempt = _no_decay_ids(model)
    groups = [
        {"name": "decay", "params": [p for p in params if id(p) not in exempt], "weight_decay": cfg.weight_decay},
        {"name": "no_decay", "params": [p for p in params if id(p) in exempt], "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


def _fused_ok(params: list[torch.Tensor]) -> bool:
    """Fused Adam/AdamW kernels (few launches per step) when every parameter is a floating CUDA tensor.

    Not for SGD: fused SGD fails when a parameter first gets a gradient after other parameters already have
    momentum buffers, which is exactly what unfreezing a backbone mid-run does.
    """
    return bool(params) and all(p.is_cuda and p.is_floating_point() for p in params)


def build_optimizer(model: nn.Module, cfg: OptimConfig, *, trainable_only: bool = False) -> torch.optim.Optimizer:
    """Build sgd/adam/adamw over the model's parameters.

    By default frozen parameters (requires_grad False) are included: they get no gradient, so the optimizer
    skips them, and unfreezing the backbone mid-run needs no new optimizer. Zero grads with set_to_none=True
    (torch's default) so a re-frozen parameter is skipped again. trainable_only=True leaves them out.
    """
    check_optim_config(cfg)
    groups = param_groups(model, cfg, trainable_only=trainable_only)
    all_params = [p for g in groups for p in g["params"]]
    if not all_params:
        raise ModelError("the model has no parameters to optimize (all frozen, or none at all)")
    fused = _fused_ok(all_params) or None
    if cfg.name == "sgd":
        return torch.optim.SGD(
            groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=cfg.weight_decay
        )
    betas = (float(cfg.betas[0]), float(cfg.betas[1]))
    adam_kwargs = dict(lr=cfg.lr, betas=betas, eps=cfg.eps, weight_decay=cfg.weight_decay, fused=fused)
    if cfg.name == "adam":
        return torch.optim.Adam(groups, **adam_kwargs)
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, **adam_kwargs)
    raise ConfigError(f"optim.name: unknown optimizer {cfg.name!r}; expected sgd, adam or adamw")


def clip_gradients(model: nn.Module, max_norm: float | None) -> torch.Tensor | None:
    """Clip the global gradient norm to max_norm and return the norm before clipping; None when off.

    With AMP's GradScaler, call scaler.unscale_(optimizer) first so the norm is measured on true gradients.
    """
    if max_norm is None:
        return None
    _need(max_norm > 0, "optim.grad_clip", f"must be positive or null (off), got {max_norm}")
    params = [p for p in model.parameters() if p.grad is not None]
    return torch.nn.utils.clip_grad_norm_(params, max_norm)


# ---------------------------------------------------------------- schedules


def check_schedule_config(cfg: ScheduleConfig, *, epochs: int, steps_per_epoch: int, base_lr: float) -> None:
    """Range and cross-field checks of the schedule section for a run of `epochs`; raise ConfigError."""
    _need(epochs >= 1, "train.epochs", f"must be at least 1, got {epochs}")
    _need(steps_per_epoch >= 1, "steps_per_epoch", f"must be at least 1, got {steps_per_epoch}")
    _need(base_lr > 0, "optim.lr", f"must be positive, got {base_lr}")
    _need(cfg.plan_epochs is None or cfg.plan_epochs >= 1, "schedule.plan_epochs",
          f"must be at least 1 or null (train.epochs), got {cfg.plan_epochs}")
    _need(cfg.plan_epochs is not None or not cfg.extend, "schedule.plan_epochs",
          "schedule.extend appends segments after plan_epochs, so it needs plan_epochs")
    for index, segment in enumerate(cfg.extend):
        check_segment(segment, f"schedule.extend[{index}]")
    epochs = planned_epochs(cfg, epochs)
    warmup = cfg.warmup_epochs
    _need(warmup >= 0, "schedule.warmup_epochs", f"must be >= 0, got {warmup}")
    _need(0 <= cfg.warmup_start_factor <= 1, "schedule.warmup_start_factor", "must be in [0, 1]")
    _need(cfg.interval == "step" or float(warmup).is_integer(), "schedule.warmup_epochs",
          f"{warmup} is fractional; fractional warmup needs schedule.interval: step")
    _need(cfg.name != "onecycle" or warmup == 0, "schedule.warmup_epochs",
          "onecycle warms up by itself (schedule.pct_start); set warmup_epochs: 0")
    _need(warmup < epochs, "schedule.warmup_epochs",
          f"warmup ({warmup} epochs) leaves no epochs of the {cfg.name} schedule out of {epochs}")
    _need(cfg.step_size >= 1, "schedule.step_size", f"must be at least 1, got {cfg.step_size}")
    _need(cfg.gamma > 0, "schedule.gamma", f"must be positive, got {cfg.gamma}")
    _need(all(m >= 0 for m in cfg.milestones), "schedule.milestones", "epochs must be >= 0")
    _need(cfg.name != "multistep" or bool(cfg.milestones), "schedule.milestones", "multistep needs a milestone")
    _need(cfg.power >= 0, "schedule.power", f"must be >= 0, got {cfg.power}")
    _need(cfg.t_max is None or cfg.t_max >= 1, "schedule.t_max", f"must be at least 1 or null, got {cfg.t_max}")
    _need(cfg.min_lr >= 0, "schedule.min_lr", f"must be >= 0, got {cfg.min_lr}")
    _need(0 < cfg.pct_start < 1, "schedule.pct_start", f"must be in (0, 1), got {cfg.pct_start}")
    _need(0 < cfg.factor < 1, "schedule.factor", f"must be in (0, 1), got {cfg.factor}")
    _need(cfg.patience >= 0, "schedule.patience", f"must be >= 0, got {cfg.patience}")
    _need(cfg.cooldown >= 0, "schedule.cooldown", f"must be >= 0, got {cfg.cooldown}")
    _need(cfg.threshold >= 0, "schedule.threshold", f"must be >= 0, got {cfg.threshold}")
    _need(bool(cfg.metric), "schedule.metric", "must name a validation metric, e.g. val_loss")


def _cosine_anneal(start: float, end: float, fraction: float) -> float:
    """Half-cosine from start (fraction 0) to end (fraction 1), OneCycleLR's annealing."""
    return end + (start - end) / 2.0 * (math.cos(math.pi * fraction) + 1)


class LRSchedule:
    """Owns the LR of every param group; the trainer calls step_batch after each optimizer step and
    step_epoch after each epoch's validation."""

    def __init__(
        self, optimizer: torch.optim.Optimizer, cfg: ScheduleConfig, *, epochs: int, steps_per_epoch: int,
        base_lr: float,
    ) -> None:
        check_schedule_config(cfg, epochs=epochs, steps_per_epoch=steps_per_epoch, base_lr=base_lr)
        self.optimizer = optimizer
        self.cfg = cfg
        self.epochs = int(epochs)
        self.steps_per_epoch = int(steps_per_epoch)
        self.base_lr = float(base_lr)
        self._plan = planned_epochs(cfg, epochs)
        self._segments = segment_starts(cfg, epochs)
        self._warmup = float(cfg.warmup_epochs)
        self._main_epochs = self._plan - self._warmup
        self._t_max = float(cfg.t_max) if cfg.t_max is not None else self._main_epochs
        self._milestones = sorted(cfg.milestones)
        self._per_step = cfg.interval == "step" or cfg.name == "onecycle"
        self._epoch = 0
        self._step_in_epoch = 0
        self._plateau_best = math.inf if cfg.mode == "min" else -math.inf
        self._plateau_num_bad = 0
        self._plateau_cooldown = 0
        self._plateau_lr = self.base_lr
        self._apply()

    # -- the trainer's hooks

    def step_batch(self) -> None:
        """Advance by one optimizer step (LR changes per step with interval: step and onecycle)."""
        self._step_in_epoch += 1
        if self._per_step:
            self._apply()

    def step_epoch(self, metrics: dict[str, float]) -> None:
        """Advance to the next epoch; plateau watches metrics[cfg.metric] (ignored while warming up)."""
        self._epoch += 1
        self._step_in_epoch = 0
        if self.cfg.name == "plateau" and self._epoch > self._warmup and self._planned_at(float(self._epoch)):
            if self.cfg.metric not in metrics:
                raise ConfigError(
                    f"schedule.metric: plateau watches {self.cfg.metric!r} but the epoch reported only "
                    f"{sorted(metrics)}; set schedule.metric to one of them"
                )
            self._observe(float(metrics[self.cfg.metric]))
        self._apply()

    def lr(self) -> float:
        """Current LR of the first param group."""
        return float(self.optimizer.param_groups[0]["lr"])

    def state_dict(self) -> dict[str, Any]:
        """Counters and plateau state as plain Python values (loadable with torch.load(weights_only=True))."""
        return {
            "name": self.cfg.name,
            "epoch": self._epoch,
            "step_in_epoch": self._step_in_epoch,
            "plateau_best": self._plateau_best,
            "plateau_num_bad": self._plateau_num_bad,
            "plateau_cooldown": self._plateau_cooldown,
            "plateau_lr": self._plateau_lr,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state_dict so the schedule continues exactly where it was saved."""
        if state.get("name") != self.cfg.name:
            raise CheckpointError(
                f"the checkpoint's LR schedule is {state.get('name')!r} but the config says {self.cfg.name!r}; "
                "resume with the original schedule, or fine-tune to start a new one"
            )
        self._epoch = int(state["epoch"])
        self._step_in_epoch = int(state["step_in_epoch"])
        self._plateau_best = float(state["plateau_best"])
        self._plateau_num_bad = int(state["plateau_num_bad"])
        self._plateau_cooldown = int(state["plateau_cooldown"])
        self._plateau_lr = float(state["plateau_lr"])
        self._apply()

    # -- the formulas

    def epoch_position(self) -> float:
        """Training time in epochs as the schedule sees it (whole epochs with interval: epoch)."""
        if not self._per_step:
            return float(self._epoch)
        return self._epoch + min(self._step_in_epoch, self.steps_per_epoch) / self.steps_per_epoch

    def _apply(self) -> None:
        lr = self._current_lr()
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)

    def _current_lr(self) -> float:
        t = self.epoch_position()
        step = 1.0 / self.steps_per_epoch if self._per_step else 1.0
        end = self._plan + sum(segment.epochs for _, segment in self._segments)
        t = min(t, end - step)  # past everything planned (after the last step), its last step's LR is held
        return self._piece_lr(self._piece_at(t), t)

    def _piece_at(self, t: float) -> int:
        """Which piece holds time t: -1 for the planned schedule, else the index of its extension segment."""
        return bisect.bisect_right([start for start, _ in self._segments], t) - 1

    def _planned_at(self, t: float) -> bool:
        """Whether time t follows the planned schedule's formula (in its plan, or in `continue` segments of it)."""
        index = self._piece_at(t)
        while index >= 0 and self._segments[index][1].name == "continue":
            index -= 1
        return index < 0

    def _piece_lr(self, index: int, t: float) -> float:
        """The LR at time t by piece `index`'s formula; a segment starts from the LR of the last step before it."""
        if index < 0:
            return self._planned_lr(t)
        start, segment = self._segments[index]
        if segment.name == "continue":
            return self._piece_lr(index - 1, t)
        last_step = start - (1.0 / self.steps_per_epoch if self._per_step else 1.0)
        return segment_lr(segment, self._piece_lr(index - 1, last_step), t - start)

    def _planned_lr(self, t: float) -> float:
        """The planned schedule's LR at time t (warmup, then the main schedule)."""
        if self.cfg.name == "onecycle":
            return self._onecycle_lr(t)
        if t < self._warmup:
            start = self.cfg.warmup_start_factor
            return self.base_lr * (start + (1.0 - start) * t / self._warmup)
        return self._main_lr(t - self._warmup)

    def _main_lr(self, t: float) -> float:
        """The main schedule's LR at t epochs after warmup."""
        c, base = self.cfg, self.base_lr
        if c.name == "constant":
            return base
        if c.name == "step":
            return base * c.gamma ** math.floor(t / c.step_size)
        if c.name == "multistep":
            return base * c.gamma ** bisect.bisect_right(self._milestones, t)
        if c.name == "exponential":
            return base * c.gamma**t
        if c.name == "polynomial":
            return base * (1.0 - min(t, self._main_epochs) / self._main_epochs) ** c.power
        if c.name == "cosine":
            return c.min_lr + (base - c.min_lr) * (1 + math.cos(math.pi * t / self._t_max)) / 2
        if c.name == "plateau":
            return self._plateau_lr
        raise ConfigError(f"schedule.name: unknown schedule {c.name!r}")

    def _onecycle_lr(self, t: float) -> float:
        """OneCycleLR (cosine annealing, two phases) at the optimizer step of time t, held at its end value."""
        total = self._plan * self.steps_per_epoch
        step = min(round(t * self.steps_per_epoch), total - 1)
        peak = self.base_lr
        start = peak / ONECYCLE_DIV_FACTOR
        end = start / ONECYCLE_FINAL_DIV_FACTOR
        rise_end = self.cfg.pct_start * total - 1
        if step <= rise_end:
            return _cosine_anneal(start, peak, step / rise_end if rise_end > 0 else 1.0)
        return _cosine_anneal(peak, end, (step - rise_end) / (total - 1 - rise_end))

    def _observe(self, current: float) -> None:
        """One ReduceLROnPlateau step with relative threshold."""
        c = self.cfg
        if c.mode == "min":
            better = current < self._plateau_best * (1.0 - c.threshold)
        else:
            better = current > self._plateau_best * (1.0 + c.threshold)
        if better:
            self._plateau_best = current
            self._plateau_num_bad = 0
        else:
            self._plateau_num_bad += 1
        if self._plateau_cooldown > 0:
            self._plateau_cooldown -= 1
            self._plateau_num_bad = 0
        if self._plateau_num_bad > c.patience:
            reduced = max(self._plateau_lr * c.factor, c.min_lr)
            if self._plateau_lr - reduced > _PLATEAU_EPS:
                self._plateau_lr = reduced
            self._plateau_cooldown = c.cooldown
            self._plateau_num_bad = 0


# ---------------------------------------------------------------- extension


# ---------------------------------------------------------------- preview


def preview_schedule(
    cfg: ScheduleConfig, *, base_lr: float, epochs: int, steps_per_epoch: int
) -> list[tuple[float, float]]:
    """(epoch as float, LR) for every optimizer step of a run, from the real LRSchedule on a dummy parameter.

    plateau cannot know the future metric: the preview assumes it never improves after the first epoch, the
    worst case (see preview_note).
    """
    param = nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=base_lr)
    schedule = LRSchedule(optimizer, cfg, epochs=epochs, steps_per_epoch=steps_per_epoch, base_lr=base_lr)
    group = optimizer.param_groups[0]
    never_improves = {cfg.metric: 1.0}
    series: list[tuple[float, float]] = []
    for epoch in range(epochs):
        for step in range(steps_per_epoch):
            series.append((epoch + step / steps_per_epoch, float(group["lr"])))
            schedule.step_batch()
        schedule.step_epoch(never_improves)
    return series


def preview_note(cfg: ScheduleConfig) -> str | None:
    """A caveat to show next to a schedule preview, or None when the preview is exact."""
    if cfg.name == "plateau":
        return (
            f"plateau: preview assumes {cfg.metric} never improves after the first epoch (worst case); "
            "real drops happen only when it stalls"
        )
    return None


def unused_milestones_note(cfg: ScheduleConfig, epochs: int) -> str | None:
    """A warning when multistep milestones lie past the end of the run (they count from the end of warmup)."""
    main = min(planned_epochs(cfg, epochs), epochs) - cfg.warmup_epochs
    late = [m for m in cfg.milestones if m >= main]
    if cfg.name != "multistep" or not late:
        return None
    counted = f", counted after its {cfg.warmup_epochs:g} warmup epochs" if cfg.warmup_epochs else ""
    return (f"schedule.milestones {late} never apply: the run has {main:g} epochs of multistep{counted} "
            f"(extend train.epochs or lower the milestones)")


def lr_drops(series: list[tuple[float, float]], *, min_drop: float = 0.05) -> list[float]:
    """Epochs (as floats) where the LR fell by more than min_drop (relative) in one step after holding steady.

    "Holding steady" (the LR unchanged over the step before) keeps smooth per-step decay such as a cosine's
    tail from being reported as a series of drops; multistep, step and plateau drops are all found.
    """
    drops: list[float] = []
    for i in range(1, len(series)):
        previous = series[i - 1][1]
        steady = i < 2 or math.isclose(series[i - 2][1], previous, rel_tol=1e-9, abs_tol=0.0)
        if steady and series[i][1] < previous * (1.0 - min_drop):
            drops.append(series[i][0])
    return drops
