"""Extending a run's LR schedule without changing its past (`resume --set train.epochs=N`): the schedule keeps
the epochs it was planned over (`schedule.plan_epochs`) and added epochs become segments (`schedule.extend`) that
start from the LR reached. The segments' own LR formulas are here too; engine.optim.LRSchedule follows them."""

from __future__ import annotations

import bisect
import dataclasses
import math

from engine.config import ExperimentConfig, ScheduleConfig, ScheduleSegment
from engine.errors import ConfigError


def _need(ok: bool, dotted: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{dotted}: {message}")


def planned_epochs(cfg: ScheduleConfig, epochs: int) -> int:
    """The epochs the schedule (before any extension segment) is spread over: plan_epochs, else the run's."""
    return int(cfg.plan_epochs) if cfg.plan_epochs is not None else int(epochs)


def check_segment(segment: ScheduleSegment, dotted: str) -> None:
    """Range checks of one extension segment; raise ConfigError naming its dotted key."""
    _need(segment.epochs >= 1, f"{dotted}.epochs", f"must be at least 1, got {segment.epochs}")
    _need(segment.step_size >= 1, f"{dotted}.step_size", f"must be at least 1, got {segment.step_size}")
    _need(segment.gamma > 0, f"{dotted}.gamma", f"must be positive, got {segment.gamma}")
    _need(segment.power >= 0, f"{dotted}.power", f"must be >= 0, got {segment.power}")
    _need(segment.min_lr >= 0, f"{dotted}.min_lr", f"must be >= 0, got {segment.min_lr}")
    _need(all(m >= 0 for m in segment.milestones), f"{dotted}.milestones", "epochs must be >= 0")
    _need(segment.name != "multistep" or bool(segment.milestones), f"{dotted}.milestones",
          "multistep needs a milestone (a schedule preset names them, e.g. --extend-schedule multistep-10)")


def segment_lr(segment: ScheduleSegment, start_lr: float, t: float) -> float:
    """The LR of an extension segment t epochs after its start, starting from start_lr (`continue` is resolved by
    LRSchedule, not here); cosine and polynomial reach their end value (min_lr, 0) at the segment's end."""
    c, fraction = segment, min(t / segment.epochs, 1.0)
    if c.name == "constant":
        return start_lr
    if c.name == "step":
        return start_lr * c.gamma ** math.floor(t / c.step_size)
    if c.name == "multistep":
        return start_lr * c.gamma ** bisect.bisect_right(sorted(c.milestones), t)
    if c.name == "exponential":
        return start_lr * c.gamma**t
    if c.name == "polynomial":
        return start_lr * (1.0 - fraction) ** c.power
    if c.name == "cosine":
        return c.min_lr + (start_lr - c.min_lr) * (1 + math.cos(math.pi * fraction)) / 2
    raise ConfigError(f"schedule.extend: unknown segment {c.name!r}")


EXTENSION_SHAPES = ("constant", "continue", "cosine", "polynomial", "exponential", "step", "multistep")
SEGMENT_FIELDS = ("step_size", "milestones", "gamma", "power", "min_lr")  # what a schedule preset gives a segment


def segment_starts(cfg: ScheduleConfig, epochs: int) -> list[tuple[float, ScheduleSegment]]:
    """(start epoch, segment) of each extension segment: the first starts where the plan ends."""
    start, starts = planned_epochs(cfg, epochs), []
    for segment in cfg.extend:
        starts.append((float(start), segment))
        start += segment.epochs
    return starts


def extension_segment(spec: str) -> ScheduleSegment:
    """The segment `--extend-schedule SPEC` names: a shape (constant, continue, cosine, ...) with its defaults, or
    a schedule preset (name or file) whose shape and fields it takes; refusals name what to use instead."""
    from engine.config import section_from_dict
    from engine.presets import load_section_preset

    source = f"--extend-schedule {spec}"
    if spec in EXTENSION_SHAPES:
        _need(spec != "multistep", source, "multistep needs milestones: name a schedule preset that sets them "
                                           "(e.g. multistep-10; they count from the extension's start)")
        return ScheduleSegment(name=spec)  # type: ignore[arg-type]
    try:
        preset = section_from_dict("schedule", load_section_preset("schedule", spec), spec)
    except ConfigError as exc:
        raise ConfigError(f"{source}: not a shape ({', '.join(EXTENSION_SHAPES)}) nor a usable schedule preset: "
                          f"{exc}") from None
    _need(preset.name in EXTENSION_SHAPES, source,
          f"a {preset.name} schedule cannot continue from the LR reached (it would jump); use one of "
          f"{', '.join(EXTENSION_SHAPES)}")
    _need(not preset.warmup_epochs, source, "the preset warms up, which would drop the LR and ramp it up again; "
          "use a preset without warmup_epochs")
    segment = ScheduleSegment(name=preset.name, **{k: getattr(preset, k) for k in SEGMENT_FIELDS})
    check_segment(segment, source)
    return segment


def extend_schedule(cfg: ScheduleConfig, *, old_epochs: int, new_epochs: int,
                    segment: ScheduleSegment | None = None) -> ScheduleConfig:
    """The schedule of a run whose train.epochs changes from old_epochs to new_epochs, such that no planned epoch's
    LR changes: the plan keeps its length (plan_epochs), and epochs past everything planned become a new
    segment (`segment`, default constant: the LR reached is held). A shorter run stops early in its plan."""
    planned = planned_epochs(cfg, old_epochs) + sum(s.epochs for s in cfg.extend)
    if new_epochs == old_epochs or new_epochs <= planned:
        if segment is not None:
            raise ConfigError(f"--extend-schedule: the schedule is planned over {planned} epochs and "
                              f"train.epochs={new_epochs} does not go past them; extend with "
                              f"--set train.epochs={planned + 10} (say) --extend-schedule {segment.name}")
        if new_epochs == old_epochs:
            return cfg
        return dataclasses.replace(cfg, plan_epochs=planned_epochs(cfg, old_epochs))
    added = dataclasses.replace(segment or ScheduleSegment(), epochs=new_epochs - planned)
    return dataclasses.replace(cfg, plan_epochs=planned_epochs(cfg, old_epochs), extend=[*cfg.extend, added])


def extend_run(before: ExperimentConfig, after: ExperimentConfig, spec: str | None = None) -> ExperimentConfig:
    """`after` (a run's config with its new train.epochs) with the schedule of `before` extended, never re-spread
    (`extend_schedule`; `spec` as `--extend-schedule` takes it): what a resume trains and a preview shows."""
    segment = extension_segment(spec) if spec else None
    schedule = extend_schedule(before.schedule, old_epochs=before.train.epochs, new_epochs=after.train.epochs,
                               segment=segment)
    return dataclasses.replace(after, schedule=schedule)


def with_epochs(config: ExperimentConfig, epochs: int, spec: str | None = None) -> ExperimentConfig:
    """`config` extended (or shortened) to `epochs` the way `resume --set train.epochs=N` does it."""
    longer = dataclasses.replace(config, train=dataclasses.replace(config.train, epochs=epochs))
    return extend_run(config, longer, spec)


def describe_extension(cfg: ScheduleConfig, epochs: int) -> str | None:
    """One line on a schedule's plan and extension segments (None without segments), for resume and previews."""
    if not cfg.extend:
        return None
    parts = [f"{cfg.name} over epochs 1-{min(planned_epochs(cfg, epochs), epochs)}"]
    for start, segment in segment_starts(cfg, epochs):
        if start >= epochs:  # a run shortened within its plan never reaches it
            break
        span = f"epochs {int(start) + 1}-{min(int(start) + segment.epochs, epochs)}"
        how = {"constant": "holding the LR reached", "continue": "continuing the schedule before"}.get(
            segment.name, f"{segment.name} from the LR reached")
        parts.append(f"{span} {how}")
    return "schedule: " + ", then ".join(parts)
