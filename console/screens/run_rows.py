"""The rows of the Runs screen: every run and k-fold group of a runs folder, read without ever raising.

Pure data (no widgets, no torch), so a thread worker builds the rows and the screen only shows them; the compared
runs' chart is drawn from a `Comparison` here too (on a plotext figure, in a chart's worker). A folder
deleted or half-written while it is read becomes a row in state `unknown` with the reason, never a traceback.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.annotations import read_annotations
from engine.compare import MISSING, NO_VALUE, compact_value, differing_keys, run_config
from engine.errors import EngineError
from engine.kfold import list_groups, read_record
from engine.runs import epoch_rows, list_runs, read_status
from console.fmt import fmt_pct, fmt_seconds
from console.run_charts import whole_epoch_ticks

RUN = "run"
KFOLD = "k-fold"

# (column key, header label): the table's columns, in order.
# (key, header), most wanted first: at 80 columns the table shows through the time (the rest scrolls sideways)
COLUMNS = [("state", "state"), ("name", "run"), ("best_val_acc", "best val"), ("test_acc", "test"),
           ("epochs", "epochs"), ("wall_s", "time"), ("model", "model"), ("data", "data"), ("started", "date"),
           ("tags", "tags")]


@dataclass(frozen=True)
class RunRow:
    """One line of the Runs table: a run folder or a k-fold group folder."""

    name: str  # relative to the runs folder: `run`, or `group/run` for a fold
    path: Path
    kind: str = RUN
    state: str = "unknown"
    experiment: str = ""
    model: str = ""
    data: str = ""
    best_val_acc: float | None = None
    test_acc: float | None = None
    epoch: int | None = None
    epochs: int | None = None
    wall_s: float | None = None
    started: float | None = None
    tags: tuple[str, ...] = ()
    note: str = ""
    problem: str = ""  # why a folder reads as unknown (half-written, deleted, damaged status)
    members: tuple[str, ...] = field(default=(), compare=False)  # a group's fold folder names

    @property
    def group(self) -> str:
        """The k-fold group a fold belongs to (`group` of `group/run`); empty for any other row."""
        return self.name.rpartition("/")[0] if self.kind != KFOLD else ""

    @property
    def key(self) -> str:
        """The row key in the table: the folder path."""
        return str(self.path)

    def haystack(self) -> str:
        """The text the filter matches: name, experiment, model, data, state and tags (lower case)."""
        return " ".join((self.name, self.experiment, self.model, self.data, self.state, self.kind,
                         *self.tags)).casefold()

    def sort_value(self, column: str) -> tuple[int, Any]:
        """A key ordering rows by `column`: values first (numbers numerically), missing ones last."""
        value: Any = " ".join(self.tags) if column == "tags" else getattr(self, column, None)
        if column == "epochs":
            value = self.epoch if self.epoch is not None else self.epochs
        if value is None or value == "":
            return (1, 0)
        return (0, value.casefold() if isinstance(value, str) else value)


def _number(value: Any) -> float | None:
    """A JSON number as a float; anything else (missing, bool, text) as None."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _integer(value: Any) -> int | None:
    """A JSON integer; anything else as None."""
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None


def run_row(name: str, path: Path, status: dict[str, Any] | None = None, problem: str = "") -> RunRow:
    """A run's row from its status (read here when not given); a damaged status gives an `unknown` row."""
    if status is None:
        try:
            status = read_status(path)
        except (EngineError, OSError, ValueError) as exc:
            status, problem = {"state": "unknown"}, str(exc)
    if not isinstance(status, dict):
        status, problem = {"state": "unknown"}, f"{path.name}: status.json is not a JSON object"
    notes = read_annotations(path)
    state = str(status.get("state") or "unknown")
    if state == "unknown" and not problem:
        problem = str(status.get("reason") or "no status yet (starting, or half-written)")
    return RunRow(name=name, path=path, state=state, experiment=str(status.get("experiment") or ""),
                  model=str(status.get("model_preset") or status.get("model") or ""), data=str(status.get("data") or ""),
                  best_val_acc=_number(status.get("best_val_acc")), test_acc=_number(status.get("test_acc")),
                  epoch=_integer(status.get("epoch")), epochs=_integer(status.get("epochs")),
                  wall_s=_number(status.get("wall_s")), started=_number(status.get("started")),
                  tags=tuple(notes.tags), note=notes.note, problem=problem)


def group_row(root: Path, group: Path, folds: list[RunRow]) -> RunRow:
    """A k-fold group's row: cross-validation mean as best val, the fold ensemble's test accuracy."""
    try:
        record = read_record(group)
        problem = ""
    except (EngineError, OSError) as exc:
        record, problem = {}, str(exc)
    record = record if isinstance(record, dict) else {}
    cv = record.get("cv") if isinstance(record.get("cv"), dict) else {}
    ensemble = record.get("ensemble") if isinstance(record.get("ensemble"), dict) else {}
    times = [f.wall_s for f in folds if f.wall_s is not None]
    notes = read_annotations(group)
    return RunRow(name=group.name, path=group, kind=KFOLD, state=str(record.get("state") or "unknown"),
                  experiment=str(record.get("experiment") or ""),
                  model=folds[0].model if folds else "", data=folds[0].data if folds else "",
                  best_val_acc=_number(cv.get("best_val_acc_mean")), test_acc=_number(ensemble.get("accuracy")),
                  epoch=len(folds), epochs=_integer(record.get("folds")), wall_s=sum(times) if times else None,
                  started=_number(record.get("created")), tags=tuple(notes.tags), note=notes.note, problem=problem,
                  members=tuple(f.path.name for f in folds))


def load_rows(root: Path) -> list[RunRow]:
    """Every run and k-fold group of the runs folder, oldest first; one bad folder never stops the listing."""
    runs = [run_row(r.name, r.path, r.status) for r in list_runs(root)]  # a damaged status reads as unknown
    groups = []
    for group in list_groups(root):
        folds = [r for r in runs if r.name.startswith(group.name + "/")]
        groups.append(group_row(root, group, folds))
    rows = runs + groups
    rows.sort(key=lambda r: (r.started or 0.0, r.name))
    return rows


def filter_rows(rows: list[RunRow], text: str) -> list[RunRow]:
    """Rows matching every word of the filter text (name, experiment, model, data, state, tags)."""
    words = text.casefold().split()
    return [r for r in rows if all(word in r.haystack() for word in words)]


def sort_rows(rows: list[RunRow], column: str, descending: bool) -> list[RunRow]:
    """Rows ordered by a column; rows without a value stay last in both directions."""
    present = [r for r in rows if r.sort_value(column)[0] == 0]
    absent = [r for r in rows if r.sort_value(column)[0] == 1]
    present.sort(key=lambda r: r.sort_value(column)[1], reverse=descending)
    return present + absent


def nest_folds(rows: list[RunRow]) -> list[RunRow]:
    """Rows in their order, but each fold right under its k-fold group when the group is among them, in fold
    order (fold0, fold1, … whatever the sort: a group reads as its folds); a fold whose group is not there stays
    where it is."""
    groups = {row.name for row in rows if row.kind == KFOLD}
    folds: dict[str, list[RunRow]] = {}
    for row in rows:
        if row.kind != KFOLD and row.group in groups:
            folds.setdefault(row.group, []).append(row)
    nested: list[RunRow] = []
    for row in rows:
        if row.kind == KFOLD:
            nested += [row, *sorted(folds.get(row.name, []), key=lambda fold: fold.name)]
        elif row.group not in groups:
            nested.append(row)
    return nested


def cell_texts(row: RunRow, nested: bool = False) -> dict[str, str]:
    """The table's text for each column of a row; a fold `nested` under its group's row is named without the
    group (`└ fold-run`), else as `group/fold-run`."""
    epochs = (f"{row.epoch}/{row.epochs} folds" if row.kind == KFOLD
              else f"{row.epoch if row.epoch is not None else '-'}/{row.epochs if row.epochs is not None else '-'}")
    name = row.name + "/" if row.kind == KFOLD else row.name
    if nested and row.group:
        name = "└ " + row.name.removeprefix(row.group + "/")
    return {"state": row.state, "name": name, "model": row.model or NO_VALUE,
            "data": row.data or NO_VALUE, "best_val_acc": fmt_pct(row.best_val_acc), "test_acc": fmt_pct(row.test_acc),
            "epochs": epochs, "wall_s": fmt_seconds(row.wall_s),
            "started": _date(row.started),
            "tags": " ".join(row.tags)}


def _date(started: float | None) -> str:
    """`12-02 13:32` this year, `2024-12-02` before."""
    if not started:
        return NO_VALUE
    when = time.localtime(started)
    return time.strftime("%m-%d %H:%M" if when.tm_year == time.localtime().tm_year else "%Y-%m-%d", when)


@dataclass(frozen=True)
class Curve:
    """One run's per-epoch series for the overlay charts."""

    label: str
    epochs: list[int]
    val_acc: list[float | None]
    train_loss: list[float | None]
    val_loss: list[float | None]


@dataclass(frozen=True)
class Comparison:
    """Selected runs side by side: their curves and the config keys whose values differ."""

    labels: list[str]
    curves: list[Curve]
    diff_keys: list[str]
    diff_values: list[list[str]]  # per key, one text per label
    skipped: list[str]  # rows left out (k-fold groups, unreadable configs), with the reason


def short_labels(names: list[str]) -> list[str]:
    """Chart labels: run names without their timestamp suffix, numbered when two would read the same."""
    stems = [re.sub(r"-\d{8}-\d{6}(-\d+)?$", "", name.rsplit("/", 1)[-1]) or name for name in names]
    return [stem if stems.count(stem) == 1 else f"{stem}#{stems[:i + 1].count(stem)}"
            for i, stem in enumerate(stems)]


def _value_text(value: Any, key: str) -> str:
    """A config value as the diff shows it: compact words (`hflip 0.5, translate 1/8`), as `runs compare` does."""
    return compact_value(value, key)


def _series(rows: list[dict[str, Any]], key: str) -> list[float | None]:
    """One metric per epoch (None where an epoch lacks it)."""
    return [_number(r.get(key)) for r in rows]


def build_comparison(rows: list[RunRow]) -> Comparison:
    """Curves and config differences of the given runs (read from their folders; never raises)."""
    runs, skipped, configs = [], [], []
    for row in rows:
        if row.kind == KFOLD:
            skipped.append(f"{row.name}: a k-fold group (select its folds to compare them)")
            continue
        try:
            configs.append(run_config(row.path))
        except (EngineError, OSError, ValueError) as exc:
            skipped.append(f"{row.name}: {exc}")
            continue
        runs.append(row)
    keys = differing_keys(configs) if len(configs) > 1 else []
    values = [[_value_text(config.get(key, MISSING), key) for config in configs] for key in keys]
    labels = labels_by_difference(short_labels([r.name for r in runs]), keys, values)
    curves = []
    for label, row in zip(labels, runs):
        epochs = epoch_rows(row.path)
        curves.append(Curve(label, [int(e["epoch"]) for e in epochs], _series(epochs, "val_acc"),
                            _series(epochs, "train_loss"), _series(epochs, "val_loss")))
    return Comparison(labels, curves, keys, values, skipped)


def labels_by_difference(labels: list[str], keys: list[str], values: list[list[str]]) -> list[str]:
    """Runs that would read the same (`quickstart#1`, `quickstart#2`) named by what differs in their configs
    (`quickstart lr=0.05`), from the first two differing keys, when that tells them apart; else `labels`."""
    if not keys or not any("#" in label for label in labels):
        return labels
    named = [label.split("#")[0] + " " + ", ".join(f"{key.rsplit('.', 1)[-1]}={values[k][i]}"
                                                   for k, key in enumerate(keys[:2]))
             for i, label in enumerate(labels)]
    return named if len(set(named)) == len(named) else labels


CHART_COLORS = ["cyan", "orange", "green", "magenta", "blue", "red", "yellow", "gray"]  # plotext's names
LEGEND_COLORS = {"orange": "dark_orange", "gray": "grey50"}  # Rich's names where they differ


def draw_overlay(plt: Any, comparison: Comparison, loss: bool) -> None:
    """The compared runs' val accuracy (`loss` False), or their train (dots) and val (line) loss, one colour each."""
    plt.clear_figure()
    plt.title("loss (train: dots, val: line)" if loss else "val accuracy %")  # percent, as Monitor shows it
    plt.xlabel("epoch")
    for index, curve in enumerate(comparison.curves):
        color = CHART_COLORS[index % len(CHART_COLORS)]
        series = ([(curve.val_loss, "braille"), (curve.train_loss, "dot")]
                  if loss else [([None if y is None else 100 * y for y in curve.val_acc], "braille")])
        for ys, marker in series:
            points = [(x, y) for x, y in zip(curve.epochs, ys) if y is not None]
            if points:  # no plotext legend: drawn in the plot's corner it covered the curves near 100%
                plt.plot([p[0] for p in points], [p[1] for p in points], color=color, marker=marker)
    last = max((e for curve in comparison.curves for e in curve.epochs), default=0)
    if last > 1:
        plt.xticks(whole_epoch_ticks(last))
