"""A Markdown report of runs for a write-up: comparison table, training curves, confusion matrices (PNG), and
what made the runs (their recorded environment).

k-fold groups are drawn fold by fold (one figure, one colour per fold) with their per-fold table and the
fold ensemble's result and confusion matrix. Figures go to `<out>/figures/`, linked relatively from
`<out>/report.md`.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from engine.compare import MISSING, NO_VALUE, compare_runs, config_columns, plural, run_config
from engine.errors import EngineError
from engine.events import read_events
from engine.runs import RunFolder, atomic_write_text, epoch_rows, safe_name

PER_KEY_COLUMNS = 8  # more differing keys than this: one column per config section


def lr_drop_epochs(run_dir: Path) -> list[float]:
    """Where the LR dropped, between the last epoch at the old LR and the first at the new one."""
    drops = read_events(RunFolder(run_dir).events, {"lr_drop"})
    return sorted({float(e["epoch"]) + 0.5 for e in drops if isinstance(e.get("epoch"), (int, float))})


def _cell(value: Any) -> str:
    """A Markdown table cell: config values written as YAML writes them (true, null), nothing read as HTML."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.4g}"
    if value is None or (isinstance(value, str) and value == MISSING):
        return NO_VALUE
    return str(value).replace("|", "\\|").replace("<", "&lt;").replace("\n", " ")


def _pct(value: Any) -> str:
    return f"{100 * value:.2f}%" if isinstance(value, (int, float)) else NO_VALUE


def table(header: list[str], rows: list[list[Any]]) -> list[str]:
    """Markdown table lines."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return lines + [""]


def group_of(run_dir: Path) -> Path | None:
    """The k-fold group folder a run belongs to, if any."""
    from engine.kfold import RECORD

    return run_dir.parent if (run_dir.parent / RECORD).is_file() else None


def _fold_label(run_dir: Path) -> str:
    from engine.runs import read_config

    try:
        return f"fold {read_config(run_dir).data.fold}"
    except EngineError:
        return run_dir.name


def comparison_section(run_dirs: list[Path], figures: Path) -> list[str]:
    """The comparison table (metrics + differing config keys) and a bar chart of accuracies."""
    from engine.plots import plot_bars

    compared = compare_runs(run_dirs)
    rows = compared["rows"]
    keys = compared["keys"]
    grouping = "key" if len(keys) <= PER_KEY_COLUMNS else "section"
    columns = config_columns([run_config(Path(r["path"])) for r in rows], keys, grouping)
    lines = ["## Comparison", ""]
    header = ["run", "state", "params", "epochs", "best val acc", "test acc", "time (s)", *[h for h, _ in columns]]
    lines += table(header, [[r["name"], r["metrics"]["state"], r["metrics"]["params"], r["metrics"]["epoch"],
                             _pct(r["metrics"]["best_val_acc"]), _pct(r["metrics"]["test_acc"]),
                             r["metrics"]["wall_s"], *[cells[i] for _, cells in columns]] for i, r in enumerate(rows)])
    if grouping == "section":
        lines += [f"{plural(len(keys), 'config key')} differ; those of one section share its column.", ""]
    bars = plot_bars([r["name"] for r in rows], {
        "best val acc": [r["metrics"]["best_val_acc"] for r in rows],
        "test acc": [r["metrics"]["test_acc"] for r in rows]}, figures / "comparison.png", "accuracy per run")
    return lines + [f"![accuracy per run]({bars.parent.name}/{bars.name})", ""]


def notes_section(run_dirs: list[Path]) -> list[str]:
    """Each annotated run's tags and note (see `runs note` / `runs tag`); nothing when no run has any."""
    from engine.annotations import read_annotations

    folders: list[Path] = []  # k-fold groups carry notes too: each group once, before its first fold
    for run_dir in run_dirs:
        group = group_of(run_dir)
        folders += [f for f in (group, run_dir) if f is not None and f not in folders]
    lines: list[str] = []
    for folder in folders:
        notes = read_annotations(folder)
        if notes.is_empty():
            continue
        tags = f" [{', '.join(_cell(t) for t in notes.tags)}]" if notes.tags else ""
        note = f": {_cell(notes.note)}" if notes.note else ""
        lines.append(f"- **{_cell(folder.name)}**{tags}{note}")
    return ["## Notes", "", *lines, ""] if lines else []


def curves_section(run_dirs: list[Path], figures: Path) -> list[str]:
    """Training curves: one figure per standalone run, one per k-fold group (all folds together)."""
    from engine.plots import plot_curves

    lines = ["## Training curves", "", "Dashed: train; solid: validation; dotted vertical lines: LR drops.", ""]
    done_groups: set[Path] = set()
    for run_dir in run_dirs:
        group = group_of(run_dir)
        if group is not None and group in done_groups:
            continue
        members = [d for d in run_dirs if group_of(d) == group] if group is not None else [run_dir]
        name = group.name if group is not None else run_dir.name
        series = [(_fold_label(d) if group is not None else d.name, epoch_rows(d), lr_drop_epochs(d))
                  for d in members]
        title = f"{name} ({plural(len(members), 'fold')})" if group is not None else name
        path = plot_curves(series, figures / f"{safe_name(name)}-curves.png", title)
        lines += [f"### {title}", "", f"![training curves of {name}]({path.parent.name}/{path.name})", ""]
        drops = {label: d for label, _rows, d in series if d}
        if drops:
            lines += ["LR drops after epoch: " + "; ".join(
                f"{label}: {', '.join(str(int(e - 0.5)) for e in d)}" for label, d in drops.items()), ""]
        if group is not None:
            done_groups.add(group)
            lines += kfold_lines(group)
    return lines


def kfold_lines(group: Path) -> list[str]:
    """A k-fold group's per-fold table and its ensemble's test result."""
    from engine.kfold import read_record

    record = read_record(group)
    lines = table(["fold", "run", "best epoch", "best val acc", "test acc"],
                  [[f["fold"], f["run"], f.get("best_epoch"), _pct(f.get("best_val_acc")), _pct(f.get("test_acc"))]
                   for f in record.get("per_fold", [])])
    cv = record.get("cv") or {}
    if cv.get("best_val_acc_mean") is not None:
        std = cv.get("best_val_acc_std")
        spread = _pct(cv["best_val_acc_mean"]) + (f" ± {_pct(std)}" if std is not None else " (one fold)")
        lines += [f"Cross-validation val acc {spread}.", ""]
    ensemble = record.get("ensemble") or {}
    if ensemble.get("accuracy") is not None:
        lines += [f"Fold ensemble ({ensemble.get('combine')}, TTA {ensemble.get('tta')}) on the test split: "
                  f"accuracy {_pct(ensemble['accuracy'])}, top-5 {_pct(ensemble.get('top5'))}, "
                  f"loss {_cell(ensemble.get('loss'))}.", ""]
    return lines


def confusion_section(run_dirs: list[Path], figures: Path, split: str) -> list[str]:
    """Each run's best checkpoint evaluated on `split` (cached): confusion matrix and most confused pairs; then
    each k-fold group's fold ensemble (as `kfold` evaluated it)."""
    from engine.ensemble import evaluate_checkpoint
    from engine.members import EvalOptions, checkpoint_ref

    lines = [f"## Confusion matrices ({split} split, best checkpoint)", ""]
    groups: list[Path] = []
    for run_dir in run_dirs:
        group = group_of(run_dir)
        if group is not None and group not in groups:
            groups.append(group)
        try:
            ref = checkpoint_ref(run_dir)
            result = evaluate_checkpoint(ref, EvalOptions(split=split), plot=False)
        except EngineError as exc:
            lines += [f"### {run_dir.name}", "", f"not evaluated: {exc}", ""]
            continue
        title = f"{ref.label}, {split} accuracy {_pct(result['accuracy'])}"
        lines += confusion_lines(run_dir.name, result, title, figures / f"{safe_name(run_dir.name)}-confusion.png")
    for group in groups:
        lines += ensemble_confusion_lines(group, figures)
    return lines


def confusion_lines(heading: str, result: dict[str, Any], title: str, png: Path) -> list[str]:
    """One evaluation's subsection: metrics, the confusion-matrix figure and the most confused pairs."""
    from engine.plots import plot_confusion

    path = plot_confusion(result["confusion"], result["classes"], png, title)
    pairs = ", ".join(f"{p['true']} → {p['predicted']} ({p['count']})" for p in result.get("most_confused", [])[:5])
    count = result.get("count")
    return [f"### {heading}", "",
            f"Accuracy {_pct(result.get('accuracy'))}, top-5 {_pct(result.get('top5'))}, loss "
            f"{_cell(result.get('loss'))}, macro F1 {_cell(result.get('macro_f1'))} on "
            f"{plural(count, 'image') if isinstance(count, int) else NO_VALUE + ' images'}.", "",
            f"![confusion matrix of {heading}]({path.parent.name}/{path.name})", "",
            f"Most confused: {pairs or 'none'}.", ""]


def ensemble_confusion_lines(group: Path, figures: Path) -> list[str]:
    """The k-fold group's fold ensemble on the test split (the result `kfold` saved in the group folder)."""
    import json

    from engine.kfold import read_record

    heading = f"{group.name}: fold ensemble"
    try:
        saved = (read_record(group).get("ensemble") or {}).get("path")
        if not saved:
            raise EngineError("the group has no fold-ensemble result (a fold did not finish?)")
        # the group folder may have moved since: its own copy of the file first
        path = next((p for p in (group / Path(saved).name, Path(saved)) if p.is_file()), group / Path(saved).name)
        result = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(result, dict) or not isinstance(result.get("confusion"), list):
            raise EngineError(f"{path}: no confusion matrix in it")
    except (EngineError, OSError, ValueError) as exc:
        return [f"### {heading}", "", f"not shown: {exc}", ""]
    split = result.get("split", "test")
    title = f"{group.name} fold ensemble ({result.get('combine')}), {split} accuracy {_pct(result.get('accuracy'))}"
    return confusion_lines(f"{heading} ({split} split)", result, title,
                           figures / f"{safe_name(group.name)}-ensemble-confusion.png")


def environment_section(run_dirs: list[Path]) -> list[str]:
    """What made the runs (engine.provenance): one list per distinct environment, naming its runs."""
    from engine.provenance import describe_environment, read_environment

    made: dict[tuple[tuple[str, str], ...], list[str]] = {}
    for run_dir in run_dirs:
        rows = tuple(describe_environment(read_environment(RunFolder(run_dir).environment)))
        made.setdefault(rows, []).append(run_dir.name)
    lines = ["## Made with", ""]
    for rows, names in made.items():
        which = "all runs" if len(made) == 1 else ", ".join(_cell(n) for n in names)
        if not rows:
            lines += [f"Not recorded for {which} (made before runs recorded their environment).", ""]
            continue
        lines += [f"{which[0].upper()}{which[1:]}:", "", *[f"- {label}: {_cell(value)}" for label, value in rows], ""]
    return lines


def linked_figures(markdown: Path) -> list[Path]:
    """The image files a report links to (not whatever else its figures folder holds from earlier reports)."""
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown.read_text(encoding="utf-8"))
    return [markdown.parent / link for link in links]


def write_report(run_dirs: list[Path], out_dir: Path, *, title: str = "Experiment report",
                 split: str = "test", confusion: bool = True) -> Path:
    """Write `<out_dir>/report.md` and its figures for `run_dirs`; returns the Markdown file's path."""
    if not run_dirs:
        raise EngineError("report: no runs to report on")
    out_dir = Path(out_dir)
    figures = out_dir / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    lines = [f"# {title}", "", f"{plural(len(run_dirs), 'run')}; generated {time.strftime('%Y-%m-%d %H:%M')}.", ""]
    lines += comparison_section(run_dirs, figures)
    lines += notes_section(run_dirs)
    lines += curves_section(run_dirs, figures)
    if confusion:
        lines += confusion_section(run_dirs, figures, split)
    lines += environment_section(run_dirs)
    path = out_dir / "report.md"
    atomic_write_text(path, "\n".join(lines).rstrip() + "\n")
    return path
