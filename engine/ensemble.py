"""Evaluating one checkpoint or an ensemble of any checkpoints (epochs, runs, k-fold members), with TTA.

A single evaluation is an ensemble of one: every member contributes the logits of each of its TTA views,
and all (member, view) predictions are combined at once (mean logits, mean probabilities or majority vote).
Results are saved as JSON records: `<run>/evals/<checkpoint>-<split>-<tta>.json` for one checkpoint,
`<runs>/ensembles/ensemble-<split>-<tta>-<combine>-<key>.json` for several (the record lists its members).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from engine.errors import CheckpointError, RunError
from engine.members import (
    CheckpointRef, EvalOptions, ViewLogits, check_same_classes, effective_ema, effective_tta, view_logits,
)
from engine.metrics import Combined, classification_metrics, combine
from engine.progress import Progress, or_default

log = logging.getLogger(__name__)

MISTAKES_KEPT = 24  # the most confidently wrong images a record lists (enough for a grid of pictures)
_WRITE_LOCK = threading.Lock()  # records are written whole, one thread at a time


def member_predictions(refs: list[CheckpointRef], options: EvalOptions,
                       progress: Progress | None = None) -> list[ViewLogits]:
    """Every member's view logits on the split (cached), checked to share classes and the same images; progress
    stages are prefixed `[m/M] ` when there are several members, and a cancel request stops between batches."""
    check_same_classes(refs)
    progress = or_default(progress)
    members = []
    for index, ref in enumerate(refs, 1):
        progress.check()
        members.append(view_logits(ref, options, progress.prefixed(f"[{index}/{len(refs)}] ") if len(refs) > 1
                                   else progress))
    check_finite(refs, members, progress)
    first = members[0]
    for ref, member in zip(refs[1:], members[1:]):
        if member.labels.shape != first.labels.shape or not torch.equal(member.labels, first.labels):
            raise CheckpointError(
                f"{refs[0].label} and {ref.label} were evaluated on different {options.split} sets "
                f"({len(first.labels)} vs {len(member.labels)} images, or other images): ensemble members must "
                "share the split's data (k-fold members share only the test split)")
    return members


def non_finite_images(logits: torch.Tensor) -> int:
    """How many images get a NaN or infinite output in any view of (V, N, C) logits."""
    return int((~torch.isfinite(logits)).any(dim=-1).any(dim=0).sum())


def check_finite(refs: list[CheckpointRef], members: list[ViewLogits], progress: Progress) -> None:
    """A member whose outputs are NaN/Inf (diverged or damaged weights): alone it is evaluated with a warning
    (its metrics mean nothing); among several it is refused, since it would drag the ensemble to chance."""
    for ref, member in zip(refs, members):
        bad = non_finite_images(member.logits)
        if not bad:
            continue
        what = (f"{ref.label} gives NaN/Inf outputs for {bad} of {member.logits.shape[1]} images (diverged or "
                "damaged weights)")
        if len(refs) > 1:
            raise CheckpointError(f"{what}; leave it out of the ensemble, its outputs would swamp the others")
        progress.warn(f"{what}; its metrics mean nothing", log)


def combine_members(members: list[ViewLogits], how: str) -> Combined:
    """Combine all (member, view) logits: (sum of V_m, N, C) -> one prediction per image."""
    return combine(torch.cat([m.logits for m in members]), how)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9+.=-]+", "", text.replace(":", "")) or "none"


def eval_record_path(ref: CheckpointRef, options: EvalOptions, combine_how: str) -> Path:
    """Where a checkpoint's evaluation record is written."""
    parts = [ref.name, options.split, _slug(effective_tta(ref, options))]
    if combine_how != "logits":
        parts.append(combine_how)
    if ref.has_ema and not effective_ema(ref, options):
        parts.append("raw")
    if options.overrides:
        parts.append("set" + hashlib.sha256("\n".join(options.overrides).encode()).hexdigest()[:6])
    return ref.run_dir / "evals" / ("-".join(parts) + ".json")


def _write_record(path: Path, record: dict[str, Any], plot: bool, run_dir: Path | None = None) -> dict[str, Any]:
    """Write a record (and its confusion-matrix PNG next to it) atomically; returns it with its paths. Inside
    `run_dir` only while that run folder exists (a deleted run is never re-created)."""
    from engine.members import ensure_inside
    from engine.runs import atomic_write_text

    ensure_inside(run_dir, path.parent)
    record = {**record, "path": str(path)}
    if plot and record.get("confusion"):
        from engine.plots import plot_confusion

        png = plot_confusion(record["confusion"], record["classes"], path.with_suffix(".png"), record["title"])
        record["confusion_png"] = str(png)
    with _WRITE_LOCK:
        atomic_write_text(path, json.dumps(_finite(record), indent=2) + "\n")
    return record


def _finite(value: Any) -> Any:
    """JSON has no NaN/Inf: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def confident_mistakes(combined: Combined, labels: torch.Tensor, classes: list[str],
                       top: int = MISTAKES_KEPT) -> list[dict[str, Any]]:
    """The wrong predictions made with the highest probability, most confident first: position in the split,
    true and predicted class, and the combined probability of the predicted class."""
    labels = labels.to(combined.scores.device).long()
    predictions = combined.predictions
    confidence = combined.log_probs.gather(1, predictions[:, None]).squeeze(1).exp()
    wrong = (predictions != labels).nonzero().flatten()
    order = wrong[confidence[wrong].argsort(descending=True, stable=True)][:top].tolist()
    return [{"position": i, "true": classes[int(labels[i])], "predicted": classes[int(predictions[i])],
             "confidence": float(confidence[i])} for i in order]


def _scored(members: list[ViewLogits], how: str, classes: list[str]) -> dict[str, Any]:
    """Classification metrics of the combined members, with the most confident mistakes."""
    combined = combine_members(members, how)
    labels = members[0].labels
    return {**classification_metrics(combined, labels, classes),
            "confident_mistakes": confident_mistakes(combined, labels, classes)}


def evaluate_checkpoint(ref: CheckpointRef, options: EvalOptions, combine_how: str | None = None, *,
                        plot: bool = True, progress: Progress | None = None) -> dict[str, Any]:
    """Metrics of one checkpoint on a split with TTA; saved under the run's `evals/` and returned. `progress`
    gets per-batch progress and may cancel (`Cancelled`); its `warnings` collect the TTA warnings."""
    how = combine_how or ref.config.eval.combine
    started = time.perf_counter()
    progress = or_default(progress)
    (member,) = member_predictions([ref], options, progress)
    metrics = _scored([member], how, ref.classes)
    tta = effective_tta(ref, options)
    record = {
        "kind": "eval", "title": f"{ref.label} on {options.split} (tta {tta}, {how})",
        "run": ref.run_dir.name, "run_dir": str(ref.run_dir), "checkpoint": ref.name,
        "epoch": ref.meta.get("epoch"), "split": options.split, "tta": tta, "views": len(member.views),
        "combine": how, "use_ema": effective_ema(ref, options), "overrides": list(options.overrides),
        "cached": member.cached, "cache_key": member.key, "classes": ref.classes, "created": time.time(),
        "warnings": list(progress.warnings),
        "seconds": round(time.perf_counter() - started, 3), **metrics,
    }
    return _write_record(eval_record_path(ref, options, how), record, plot, ref.run_dir)


def _quick_score(members: list[ViewLogits], how: str) -> tuple[float, float]:
    """(accuracy, loss) of a combination, for selection."""
    combined = combine_members(members, how)
    labels = members[0].labels.long()
    acc = (combined.predictions == labels).double().mean()
    loss = torch.nn.functional.nll_loss(combined.log_probs, labels).double()
    values = torch.stack([acc, loss]).tolist()
    return float(values[0]), float(values[1])


def greedy_select(refs: list[CheckpointRef], options: EvalOptions, how: str, *,
                  progress: Progress | None = None) -> tuple[list[int], list[dict[str, Any]], dict[str, Any]]:
    """Forward selection on `options.split`: add the member that most improves (accuracy, then lower loss)
    until none does. Returns the chosen indices (in order added), each step (the member added, the scores,
    how many candidates were tried) and why the selection stopped (`greedy_stop`)."""
    progress = or_default(progress)
    try:
        members = member_predictions(refs, options, progress)
    except CheckpointError as exc:
        if "were evaluated on different" not in str(exc):
            raise
        raise CheckpointError(f"greedy selection scores the members on the {options.split} split, and {exc}; "
                              "turn greedy off to ensemble them on the test split") from None
    chosen: list[int] = []
    best = (-math.inf, -math.inf)
    trace: list[dict[str, Any]] = []
    while len(chosen) < len(members):
        step_best = _greedy_step(members, chosen, how, progress.prefixed(f"step {len(trace) + 1}: "))
        if step_best[0] <= best:
            return chosen, trace, greedy_stop(options.split, best, step_best[0], refs[step_best[1]].label)
        best = step_best[0]
        chosen.append(step_best[1])
        trace.append({"added": refs[step_best[1]].label, "accuracy": best[0], "loss": -best[1],
                      "tried": len(members) - len(chosen) + 1})
    return chosen, trace, greedy_stop(options.split, best, None, None, total=len(members))


def _greedy_step(members: list[ViewLogits], chosen: list[int], how: str,
                 progress: Progress) -> tuple[tuple[float, float], int]:
    """The best (accuracy, -loss) reachable by adding one more member to `chosen`, and that member's index."""
    remaining = [i for i in range(len(members)) if i not in chosen]
    step_best: tuple[tuple[float, float], int] | None = None
    for tried, index in enumerate(remaining):
        progress.report("scoring candidates", tried, len(remaining))
        acc, loss = _quick_score([members[i] for i in chosen + [index]], how)
        if step_best is None or (acc, -loss) > step_best[0]:
            step_best = ((acc, -loss), index)
    assert step_best is not None
    return step_best


def greedy_stop(split: str, best: tuple[float, float], tried: tuple[float, float] | None, label: str | None, *,
                total: int = 0) -> dict[str, Any]:
    """Why greedy selection stopped, as data and as a sentence (`message`): `no_gain` when the best remaining
    candidate (`label`, scoring `tried`) would not beat the ensemble so far (`best`), `all_added` when none is
    left. Scores are (accuracy, -loss)."""
    accuracy, loss = best[0], -best[1]
    if tried is None:
        return {"reason": "all_added", "accuracy": accuracy, "loss": loss,
                "message": f"every candidate was added ({total}); each one improved the {split} score "
                           f"(accuracy {100 * accuracy:.2f}%, loss {loss:.4f} with all of them)"}
    with_accuracy, with_loss = tried[0], -tried[1]
    if with_accuracy < accuracy:
        why = f"would lower {split} accuracy from {100 * accuracy:.2f}% to {100 * with_accuracy:.2f}%"
    elif with_loss > loss:
        why = (f"would keep {split} accuracy at {100 * accuracy:.2f}% but raise {split} loss from {loss:.4f} to "
               f"{with_loss:.4f}")
    else:
        why = f"would change neither {split} accuracy ({100 * accuracy:.2f}%) nor loss ({loss:.4f})"
    return {"reason": "no_gain", "candidate": label, "accuracy": accuracy, "loss": loss,
            "candidate_accuracy": with_accuracy, "candidate_loss": with_loss,
            "message": f"stopped: the best remaining candidate, {label}, {why}"}


def ensemble_key(refs: list[CheckpointRef], options: EvalOptions, how: str) -> str:
    """A stable short key of an ensemble's members (order-free) and settings."""
    body = {"members": sorted(f"{r.run_dir.resolve()}:{r.name}" for r in refs), "split": options.split,
            "tta": [effective_tta(r, options) for r in refs], "combine": how, "overrides": options.overrides,
            "ema": [effective_ema(r, options) for r in refs]}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:12]


def _member_rows(refs: list[CheckpointRef], members: list[ViewLogits], how: str) -> list[dict[str, Any]]:
    rows = []
    for ref, member in zip(refs, members):
        acc, loss = _quick_score([member], how)
        rows.append({"member": ref.label, "run_dir": str(ref.run_dir), "checkpoint": ref.name,
                     "epoch": ref.meta.get("epoch"), "accuracy": acc, "loss": loss, "cached": member.cached})
    return rows


def evaluate_ensemble(refs: list[CheckpointRef], options: EvalOptions, combine_how: str | None = None, *,
                      out_dir: Path | None = None, greedy_split: str | None = None,
                      plot: bool = True, progress: Progress | None = None) -> dict[str, Any]:
    """Metrics of the ensemble of `refs` on a split; with `greedy_split`, members are first chosen by forward
    selection on that split (each step and the reason it stopped are in the record's `greedy`). The record
    (members, per-member and ensemble metrics) is saved in `out_dir`. `progress` gets per-batch progress and
    may cancel (`Cancelled`); its `warnings` collect the TTA warnings."""
    if not refs:
        raise RunError("an ensemble needs at least one checkpoint")
    how = combine_how or refs[0].config.eval.combine
    started = time.perf_counter()
    progress = or_default(progress)
    selection = None
    candidates = refs
    if greedy_split is not None:
        chosen, trace, stopped = greedy_select(refs, replace(options, split=greedy_split), how,
                                               progress=progress.prefixed(f"greedy on {greedy_split}: "))
        refs = [refs[i] for i in chosen]
        selection = {"split": greedy_split, "candidates": [r.label for r in candidates], "trace": trace,
                     "stopped": stopped["message"], "stop": stopped}
    members = member_predictions(refs, options, progress)
    metrics = _scored(members, how, refs[0].classes)
    key = ensemble_key(refs, options, how)
    tta = effective_tta(refs[0], options)
    record = {
        "kind": "ensemble", "title": f"ensemble of {len(refs)} on {options.split} (tta {tta}, {how})",
        "members": [r.label for r in refs], "member_metrics": _member_rows(refs, members, how),
        "split": options.split, "tta": tta, "combine": how, "overrides": list(options.overrides),
        "greedy": selection, "cached": all(m.cached for m in members), "key": key,
        "classes": refs[0].classes, "created": time.time(), "seconds": round(time.perf_counter() - started, 3),
        **metrics,
    }
    if out_dir is None:
        return record
    name = f"ensemble-{options.split}-{_slug(tta)}-{how}-{key}.json"
    return _write_record(out_dir / name, record, plot)


def list_evals(run_dir: Path) -> list[dict[str, Any]]:
    """The evaluation records saved for a run (newest last), without their bulky matrices."""
    folder = run_dir / "evals"
    if not folder.is_dir():
        return []
    records = []
    for path in sorted(folder.glob("*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        records.append({k: v for k, v in record.items() if k not in ("confusion", "per_class", "classes")})
    return sorted(records, key=lambda r: r.get("created", 0))
