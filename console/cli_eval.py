"""`eval`, `ensemble`, `predict`, `kfold` and `report`: evaluation commands (logic in engine, output here)."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from console.common import (
    RUN_RULE, JsonOption, OverrideOption, RunsDirOption, err_console, escape, fmt_pct, out_console, print_json,
    reports_errors,
)
from console.fmt import plural


class Split(str, Enum):
    """Which split to evaluate."""

    val = "val"
    test = "test"
    train = "train"


class Combine(str, Enum):
    """How TTA views and ensemble members are combined."""

    logits = "logits"
    probs = "probs"
    vote = "vote"


class Ids(str, Enum):
    """How `predict` writes image ids (engine.predict.id_style)."""

    auto = "auto"
    name = "name"
    stem = "stem"


TtaOption = Annotated[str | None, typer.Option(
    "--tta", help="Test-time augmentation: none, flip, flip+shift (4 shifts of 2 px), shift:3 (of 3 px), "
                  "random:8 (8 passes of the training augmentations), flip+random:4 (default: the run's eval.tta).",
    show_default=False)]
CombineOption = Annotated[Combine | None, typer.Option(
    "--combine", help="Combine views/members by mean logits, mean probabilities or majority vote "
                      "(default: the run's eval.combine).", show_default=False)]
NoEmaOption = Annotated[bool, typer.Option("--no-ema", help="Evaluate the raw weights even when EMA weights exist.")]
DeviceOption = Annotated[str | None, typer.Option(
    "--device", help="auto, cpu, cuda or cuda:N (default: the run's train.device).", show_default=False)]
PerClassOption = Annotated[bool | None, typer.Option("--per-class/--no-per-class",
                                                    help="Show the per-class table (default: up to 30 classes).",
                                                    show_default=False)]
RefsArgument = Annotated[list[str], typer.Argument(metavar="RUN[:CHECKPOINT]",
    help="Checkpoints as RUN[:CHECKPOINT]: run name, unique prefix, folder or k-fold group; checkpoint best "
         "(default), last, epoch-012 or all. " + RUN_RULE)]


def _options(split: str, tta: str | None, no_ema: bool, device: str | None, overrides: list[str] | None) -> Any:
    from engine.members import EvalOptions

    return EvalOptions(split=split, tta=tta, use_ema=False if no_ema else None, device=device,
                       overrides=list(overrides or []))


def _refs(runs_dir: Path | None, texts: list[str]) -> list[Any]:
    """Checkpoint references (`engine.members.resolve_refs`); a note on stderr for each repeat of the same weights."""
    from engine.members import resolve_refs
    from engine.runs import runs_dir as pick_runs_dir

    refs, notes = resolve_refs(pick_runs_dir(runs_dir), texts)
    for note in notes:
        err_console.print(f"note: {note}", highlight=False, soft_wrap=True)
    return refs


def _names_several(runs_dir: Path | None, text: str) -> bool:
    """Whether `text` stands for several checkpoints by its form (RUN:all or a k-fold group)."""
    from engine.members import names_several
    from engine.runs import runs_dir as pick_runs_dir

    return names_several(pick_runs_dir(runs_dir), text)


def _f(value: Any, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "-"


def show_metrics(result: dict[str, Any], *, per_class: bool | None = None) -> None:
    """Accuracy line, per-class table (small class counts or when asked), most confused pairs, saved paths."""
    from rich.table import Table

    cached = " (cached predictions)" if result.get("cached") else ""
    out_console.print(f"[bold]{result['title']}[/]: {result['count']} images{cached}", highlight=False)
    out_console.print(f"accuracy [bold]{fmt_pct(result['accuracy'])}[/]  top-{result.get('top_k', 5)} "
                      f"{fmt_pct(result['top5'])}  loss {_f(result['loss'])}  macro F1 {_f(result.get('macro_f1'))}",
                      highlight=False)
    rows = result.get("per_class") or []
    if per_class or (per_class is None and len(rows) <= 30):
        table = Table("class", "precision", "recall", "F1", "support", title="per class")
        for row in rows:
            table.add_row(row["class"], _f(row["precision"], 3), _f(row["recall"], 3), _f(row["f1"], 3),
                          str(row["support"]))
        out_console.print(table)
    pairs = result.get("most_confused") or []
    if pairs:
        table = Table("true", "predicted as", "count", title="most confused")
        for pair in pairs:
            table.add_row(pair["true"], pair["predicted"], str(pair["count"]))
        out_console.print(table)
    saved = [result.get("path"), result.get("confusion_png")]
    if any(saved):
        err_console.print("saved: " + ", ".join(p for p in saved if p), highlight=False, soft_wrap=True)


@reports_errors
def eval_cmd(
    ref: Annotated[str, typer.Argument(metavar="RUN[:CHECKPOINT]",
                                       help="RUN[:CHECKPOINT], e.g. my-run, my-run:last, my-run:epoch-046, my-run:all "
                                            "(every checkpoint), or a k-fold group. " + RUN_RULE)],
    split: Annotated[Split, typer.Option("--split", help="Split to evaluate.")] = Split.test,
    tta: TtaOption = None,
    combine: CombineOption = None,
    no_ema: NoEmaOption = False,
    device: DeviceOption = None,
    overrides: OverrideOption = None,
    per_class: PerClassOption = None,
    runs_dir: RunsDirOption = None,
    json_out: JsonOption = False,
) -> None:
    """Evaluate a checkpoint: accuracy, top-5, loss, per-class P/R/F1, confusion matrix (saved in the run's evals/).

    RUN:all evaluates every saved checkpoint of the run (which epoch is best on this split?), and a k-fold group's
    name evaluates each of its fold runs; both print one row per checkpoint.
    """
    from engine.ensemble import evaluate_checkpoint

    checkpoints = _refs(runs_dir, [ref])
    options = _options(split.value, tta, no_ema, device, overrides)
    how = combine.value if combine else None
    if not _names_several(runs_dir, ref):
        result = evaluate_checkpoint(checkpoints[0], options, how)
        if json_out:
            print_json(result)
        else:
            show_metrics(result, per_class=per_class)
        return
    results = []
    with err_console.status("") as status:
        for index, checkpoint in enumerate(checkpoints, 1):
            status.update(f"evaluating {checkpoint.label} ({index}/{len(checkpoints)})")
            results.append(evaluate_checkpoint(checkpoint, options, how, plot=False))
    if json_out:
        print_json({"evaluations": results})
    else:
        show_checkpoint_table(results, split.value)


def show_checkpoint_table(results: list[dict[str, Any]], split: str) -> None:
    """One row per evaluated checkpoint, the most accurate marked."""
    from rich.table import Table

    best = max(range(len(results)), key=lambda i: (results[i]["accuracy"], -results[i]["loss"]))
    table = Table("checkpoint", "epoch", f"{split} acc", "top-5", f"{split} loss", "macro F1", "",
                  title=f"{len(results)} checkpoints on {split} (tta {results[0]['tta']})")
    for index, result in enumerate(results):
        table.add_row(f"{result['run']}:{result['checkpoint']}", str(result.get("epoch", "-")),
                      fmt_pct(result["accuracy"]), fmt_pct(result["top5"]), _f(result["loss"]),
                      _f(result.get("macro_f1")), "[bold]best[/]" if index == best else "",
                      style="bold" if index == best else None)
    out_console.print(table)


def show_members(result: dict[str, Any]) -> None:
    """The ensemble's members with their own scores, and the greedy selection trace."""
    from rich.table import Table

    greedy = result.get("greedy")
    if greedy:
        table = Table("step", "added", f"{greedy['split']} acc", f"{greedy['split']} loss",
                      title=f"greedy selection on {greedy['split']} "
                      f"({plural(len(greedy['candidates']), 'candidate')})")
        for index, step in enumerate(greedy["trace"], 1):
            table.add_row(str(index), step["added"], fmt_pct(step["accuracy"]), _f(step["loss"]))
        out_console.print(table)
        if greedy.get("stopped"):
            out_console.print(greedy["stopped"], highlight=False, soft_wrap=True)
    table = Table("member", "epoch", f"{result['split']} acc", f"{result['split']} loss", title="members")
    for row in result.get("member_metrics", []):
        table.add_row(row["member"], str(row.get("epoch", "-")), fmt_pct(row["accuracy"]), _f(row["loss"]))
    out_console.print(table)


@reports_errors
def ensemble(
    refs: RefsArgument,
    split: Annotated[Split, typer.Option("--split", help="Split the ensemble is evaluated on.")] = Split.test,
    combine: CombineOption = None,
    tta: TtaOption = None,
    greedy: Annotated[bool, typer.Option("--greedy", help="Forward-select members on the validation split "
                                                          "first (add while accuracy improves).")] = False,
    no_ema: NoEmaOption = False,
    device: DeviceOption = None,
    overrides: OverrideOption = None,
    per_class: PerClassOption = None,
    runs_dir: RunsDirOption = None,
    json_out: JsonOption = False,
) -> None:
    """Ensemble any checkpoints (epochs of a run, several runs, k-fold members); saved in <runs>/ensembles/."""
    from engine.ensemble import evaluate_ensemble
    from engine.runs import runs_dir as pick_runs_dir

    members = _refs(runs_dir, refs)
    result = evaluate_ensemble(members, _options(split.value, tta, no_ema, device, overrides),
                               combine.value if combine else None, out_dir=pick_runs_dir(runs_dir) / "ensembles",
                               greedy_split="val" if greedy else None)
    if json_out:
        print_json(result)
        return
    show_members(result)
    show_metrics(result, per_class=per_class)


@reports_errors
def predict(
    refs: RefsArgument,
    images: Annotated[Path, typer.Option("--images", help="Folder of unlabeled images, or one image file (one row "
                                                          "per image, its id taken from the file name: see --ids).")],
    out: Annotated[Path, typer.Option("--out", help="CSV to write: one row per image (id, predicted class); "
                                                    "- writes it to stdout.")],
    combine: CombineOption = None,
    tta: TtaOption = None,
    no_ema: NoEmaOption = False,
    device: DeviceOption = None,
    overrides: OverrideOption = None,
    runs_dir: RunsDirOption = None,
    json_out: JsonOption = False,
    skip_bad_images: Annotated[bool, typer.Option("--skip-bad-images", help="Leave unreadable images out of the "
                                                  "CSV (listed on stderr) instead of stopping.")] = False,
    ids: Annotated[Ids, typer.Option("--ids", help="Image ids in the CSV: name keeps the extension (10000.jpg), "
                                     "stem drops it (10000), auto follows the run's training CSV (name when its "
                                     "file names have extensions; stem for runs not trained on a CSV).")] = Ids.auto,
) -> None:
    """Predict a folder of images with one checkpoint or an ensemble; writes the submission CSV."""
    from engine.errors import ConfigError
    from engine.predict import predict_folder

    to_stdout = str(out) == "-"
    if to_stdout and json_out:
        raise ConfigError("--out - writes the CSV to stdout, where --json would write too: give one of them")
    members = _refs(runs_dir, refs)
    summary = predict_folder(members, images, None if to_stdout else out,
                             _options("test", tta, no_ema, device, overrides),
                             combine.value if combine else None, skip_bad_images=skip_bad_images, ids=ids.value)
    where = "stdout" if to_stdout else summary["out"]
    if summary["skipped"]:
        err_console.print(f"[yellow]warning:[/] {plural(len(summary['skipped']), 'unreadable image')} "
                          f"{'has' if len(summary['skipped']) == 1 else 'have'} no row in {where}: "
                          f"{', '.join(summary['skipped'][:10])}", highlight=False)
    csv_text = summary.pop("csv")
    if to_stdout:  # the CSV is the output; what is said about it goes to stderr
        sys.stdout.write(csv_text)
        sys.stdout.flush()
    if json_out and not to_stdout:
        print_json(summary)
        return
    (err_console if to_stdout else out_console).print(
        f"{plural(summary['images'], 'prediction')} by {plural(len(summary['members']), 'checkpoint')} "
        f"(tta {summary['tta']}, {summary['combine']}) written to {where}", highlight=False)
    kept, other = ("with", "stem") if summary["ids"] == "name" else ("without", "name")
    err_console.print(f"note: ids {kept} extension (e.g. {summary['first_id']}), {summary['ids_why']}"
                      + ("" if ids != Ids.auto else f"; --ids {other} for the other form"), highlight=False,
                      soft_wrap=True)


@reports_errors
def kfold(
    experiment: Annotated[str, typer.Argument(metavar="EXPERIMENT", help="Experiment preset name or YAML file.")],
    folds: Annotated[int, typer.Option("--folds", "-k", min=2, help="Number of stratified folds (K runs).")] = 5,
    overrides: OverrideOption = None,
    tta: TtaOption = None,
    combine: CombineOption = None,
    runs_dir: RunsDirOption = None,
    json_out: JsonOption = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output on stderr (warnings still show).")] = False,
    name: Annotated[str | None, typer.Option("--name", metavar="NAME", help="Name of the group: its folder is "
                                             "NAME-kfold-<date>-<time> (default: the experiment's name).",
                                             show_default=False)] = None,
) -> None:
    """Train K fold runs grouped under one folder; per-fold table and the fold ensemble on the test split. An
    interrupted group goes on with `resume GROUP`."""
    import dataclasses

    from engine.kfold import run_kfold
    from engine.presets import resolve_experiment
    from engine.runs import runs_dir as pick_runs_dir

    config = resolve_experiment(experiment, overrides or [])
    if name:
        config = dataclasses.replace(config, name=name)
    drive_kfold(lambda listeners, stop: run_kfold(config, folds, pick_runs_dir(runs_dir), listeners=listeners,
                                                  stop=stop, tta=tta, combine=combine.value if combine else None),
                json_out=json_out, quiet=quiet)


def drive_kfold(work: Any, *, json_out: bool, quiet: bool) -> None:
    """Run `work(listeners, stop)` (a k-fold started or resumed) with progress and graceful stops; print its
    record; an unfinished group says how to go on."""
    from console.progress import ProgressListener
    from engine.runtime import StopRequest, install_stop_handlers, restore_stop_handlers

    stop = StopRequest()
    install_stop_handlers(stop)
    try:
        with ProgressListener(err_console, quiet=quiet) as listener:
            record = work([listener], stop)
    except KeyboardInterrupt:
        err_console.print("stopped at once (second signal); finished folds are kept; `imgcls-console resume "
                          "GROUP` goes on")
        raise typer.Exit(stop.exit_code) from None
    finally:
        restore_stop_handlers(stop)
    if json_out:
        print_json(record)
    else:
        show_kfold(record)
    if record["state"] != "finished":
        reason = record["per_fold"][-1].get("reason") if record["per_fold"] else None
        group = Path(record["group_dir"]).name
        err_console.print(f"[red]{record['state']}[/]: k-fold stopped after fold {len(record['per_fold']) - 1}"
                          + (f": {escape(str(reason))}" if reason else "")
                          + f"; `imgcls-console resume {group}` goes on from there", highlight=False, soft_wrap=True)
        raise typer.Exit(stop.exit_code if record["state"] == "interrupted" else 1)


def show_kfold(record: dict[str, Any]) -> None:
    """Per-fold table, cross-validation mean ± std and the fold ensemble's test result."""
    from rich.table import Table

    table = Table("fold", "run", "state", "best epoch", "best val acc", "test acc", title=f"{record['folds']}-fold")
    for fold in record["per_fold"]:
        table.add_row(str(fold["fold"]), fold["run"], str(fold.get("state")), str(fold.get("best_epoch")),
                      fmt_pct(fold.get("best_val_acc")), fmt_pct(fold.get("test_acc")))
    out_console.print(table)
    cv = record.get("cv") or {}

    def spread(key: str) -> str:  # `98.64% ± 0.15%`; one value has no spread
        std = cv.get(f"{key}_std")
        return fmt_pct(cv.get(f"{key}_mean")) + (f" ± {fmt_pct(std)}" if std is not None else "")

    test = (f"test acc {spread('test_acc')}" if cv.get("test_acc_mean") is not None
            else "no fold tested yet" if record.get("state") != "finished" else "no test split")
    finished = cv.get("folds_finished")
    over = f" (over the {plural(finished, 'finished fold')})" if finished is not None and finished < record["folds"] else ""
    if cv.get("best_val_acc_mean") is None:
        out_console.print("no fold finished yet", highlight=False)
    else:
        out_console.print(f"val acc {spread('best_val_acc')}; {test}{over}", highlight=False)
    ensemble_result = record.get("ensemble") or {}
    if ensemble_result.get("error"):
        out_console.print(f"fold ensemble not evaluated: {ensemble_result['error']}", highlight=False)
    elif ensemble_result:
        out_console.print(f"fold ensemble ({ensemble_result['combine']}, tta {ensemble_result['tta']}) on test: "
                          f"accuracy [bold]{fmt_pct(ensemble_result['accuracy'])}[/], top-5 "
                          f"{fmt_pct(ensemble_result['top5'])}, loss {_f(ensemble_result['loss'])}", highlight=False)
    err_console.print(f"group folder: {record['group_dir']}", highlight=False)


@reports_errors
def report(
    runs: Annotated[list[str], typer.Argument(metavar="RUN", help="Runs or k-fold groups. " + RUN_RULE)],
    out: Annotated[Path, typer.Option("--out", help="Folder for report.md and figures/.")],
    title: Annotated[str, typer.Option("--title", help="Report title.")] = "Experiment report",
    split: Annotated[Split, typer.Option("--split", help="Split of the confusion matrices.")] = Split.test,
    no_confusion: Annotated[bool, typer.Option("--no-confusion", help="Skip evaluating confusion matrices.")] = False,
    runs_dir: RunsDirOption = None,
    json_out: JsonOption = False,
) -> None:
    """Write a Markdown report: comparison table, training curves (LR drops marked), confusion matrices (PNG)."""
    from engine.compare import expand_targets
    from engine.report import linked_figures, write_report
    from engine.runs import runs_dir as pick_runs_dir

    run_dirs = expand_targets(pick_runs_dir(runs_dir), runs)
    path = write_report(run_dirs, out, title=title, split=split.value, confusion=not no_confusion)
    figures = [str(p) for p in linked_figures(path)]
    if json_out:
        print_json({"report": str(path), "runs": [str(d) for d in run_dirs], "figures": figures})
        return
    out_console.print(f"report of {plural(len(run_dirs), 'run')}: {path} ({plural(len(figures), 'figure')})", highlight=False)
