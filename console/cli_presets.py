"""`presets`: list, show, validate, export and import YAML presets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from console.common import (
    OverrideOption, RunsDirOption, err_console, escape, fmt_count, out_console, reports_errors,
)

app = typer.Typer(help="List, show, validate, export and import presets.", no_args_is_help=True)

KindOption = Annotated[str | None, typer.Option("--kind", "-k", help="Preset kind: data, model, augment, optim, schedule, experiment, sweep.")]


def _find_any(name: str, kind: str | None) -> tuple[str, Path]:
    """A preset by name across kinds (experiment first) unless `kind` is given; a file's kind is read from it."""
    from engine.errors import ConfigError
    from engine.presets import ALL_KINDS, check_kind, detect_kind, find_preset, is_sweep, load_mapping

    kinds = [check_kind(kind)] if kind else ["experiment", *[k for k in ALL_KINDS if k != "experiment"]]
    path = Path(name).expanduser()
    if kind is None and name.endswith((".yaml", ".yml")) and path.is_file():
        raw = load_mapping(path)
        return ("sweep" if is_sweep(path, raw, None) else detect_kind(path, raw)), path
    for candidate in kinds:
        try:
            return candidate, find_preset(candidate, name)
        except ConfigError:
            if kind:
                raise
    from engine.errors import did_you_mean
    from engine.presets import list_presets

    names = sorted({info.name for info in list_presets()})
    raise ConfigError(f"no preset named {name!r} of any kind{did_you_mean(name, names)}; see "
                      "`imgcls-console presets list`")


@app.command("list")
@reports_errors
def list_cmd(kind: Annotated[str | None, typer.Argument(metavar="[KIND]", help="Only this kind.")] = None) -> None:
    """List presets (user presets first); `presets list model` adds each one's parameter count, at the input its
    `sized_for` names."""
    from rich.table import Table

    from engine.errors import ConfigError
    from engine.presets import ALL_KINDS, DEFAULT_SIZED_FOR, list_presets

    if kind is not None and kind not in ALL_KINDS:
        raise ConfigError(f"unknown preset kind {kind!r}; kinds are {', '.join(ALL_KINDS)}")
    table = Table("kind", "name", "origin", "description")
    show_params = kind == "model"
    if show_params:
        table.add_column("params", justify="right")
    presets = sorted(list_presets(kind), key=lambda info: not info.origin.startswith("user"))  # stable: kind, name
    unsized = False
    for index, info in enumerate(presets):
        row = [info.kind, escape(info.name), info.origin, escape(info.description)]
        if show_params:
            params, said = _preset_size(info.path)
            row.append(params)
            unsized = unsized or not said
        last_user = info.origin.startswith("user") and (index + 1 == len(presets)
                                                        or not presets[index + 1].origin.startswith("user"))
        table.add_row(*row, end_section=last_user)  # a rule between the user's presets and the built-in ones
    out_console.print(table)
    classes, channels, size = DEFAULT_SIZED_FOR
    if show_params:
        out_console.print("params: at the input each preset's `sized_for` names" + (
            f"; * at {size} × {size} px, {channels} channels, {classes} classes (it names none)" if unsized else ""),
                          highlight=False)
    elif kind is None:
        out_console.print("model sizes: `imgcls-console presets list model`", highlight=False)


def _preset_size(path: Path) -> tuple[str, bool]:
    """(params, whether its `sized_for` says the input) of a model preset; a broken one warns, listed as `-`."""
    from engine.preview import model_preset_size

    try:
        cost, said = model_preset_size(path)
    except Exception as exc:  # one broken preset must not hide the list
        err_console.print(f"[yellow]warning:[/] {escape(f'{path}: {exc}')}", highlight=False, soft_wrap=True)
        return fmt_count(None), True
    return fmt_count(cost.params) + ("" if said else "*"), said


@app.command()
@reports_errors
def show(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Preset name or file.")],
    kind: KindOption = None,
    resolved: Annotated[bool, typer.Option("--resolved", help="Show the fully resolved config with every default.")] = False,
) -> None:
    """Show a preset's YAML (as written, or --resolved with every field; a sweep with its defaults)."""
    import yaml

    from engine.config import to_dict
    from engine.presets import dump_yaml, preset_text, resolve_experiment, resolved_yaml, validate_file

    kind, path = _find_any(name, kind)
    if not resolved:
        text = preset_text(path)  # bounded, UTF-8 only: an error names the file
        err_console.print(f"# {kind} preset {path}", highlight=False)
        out_console.print(text, highlight=False, markup=False)
        return
    if kind == "experiment":
        out_console.print(resolved_yaml(resolve_experiment(str(path))), highlight=False, markup=False)
        return
    if kind == "sweep":
        from engine.sweep_bundle import spec_document

        out_console.print(dump_yaml(spec_document(validate_file(path, kind)[1])), highlight=False, markup=False)
        return
    section = to_dict(validate_file(path, kind)[1])
    out_console.print(yaml.safe_dump(section, sort_keys=False), highlight=False, markup=False)


@app.command()
@reports_errors
def validate(file: Annotated[Path, typer.Argument(metavar="FILE-OR-NAME", help="Preset YAML file, or a preset's name.")],
             kind: KindOption = None) -> None:
    """Validate a preset file (or a preset by name): unknown keys, wrong types, unsafe YAML; exit 2 with the reason
    when invalid."""
    from engine.errors import ConfigError
    from engine.presets import validate_file

    if not file.is_file():
        if file.suffix in (".yaml", ".yml") or len(file.parts) > 1:
            raise ConfigError(f"{file}: no such file")
        try:
            file = _find_any(str(file), kind)[1]
        except ConfigError as exc:
            raise ConfigError(f"{file}: no such file, and {exc}") from None
    from engine.config import to_dict
    from engine.presets import content_hash, load_mapping

    found_kind, validated = validate_file(file, kind)
    recorded = load_mapping(file).get("content_hash")
    if found_kind == "experiment" and recorded and recorded != content_hash(to_dict(validated)):
        err_console.print(f"[yellow]warning:[/] {file}: content_hash does not match its content (edited after "
                          "export?); the values in the file are what a run uses", highlight=False)
    err_console.print(f"[green]ok[/]: {file} is a valid {found_kind} preset", highlight=False)


@app.command()
@reports_errors
def export(
    source: Annotated[str, typer.Argument(metavar="NAME-OR-RUN", help="Experiment or sweep preset name/file, or a run name/folder.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="File to write ('-' for stdout).")],
    overrides: OverrideOption = None,
    runs_dir: RunsDirOption = None,
    kind: Annotated[str | None, typer.Option("--kind", "-k", help="experiment or sweep (default: an experiment preset of that name, else a run, else a sweep).")] = None,
) -> None:
    """Write a preset to share: an experiment (or a run's config) as one self-contained, fully resolved YAML (schema
    version + content hash); a sweep with the presets it names bundled (its base experiment fully resolved, --set
    applied to it), which `presets import` unpacks."""
    import sys

    from engine.errors import ConfigError

    if kind not in (None, "experiment", "sweep"):
        raise ConfigError(f"--kind {kind}: export writes an experiment or a sweep; other presets are shared as "
                          "their files are (`presets show NAME`)")
    text = _export_text(source, kind, overrides or [], runs_dir, None if str(out) == "-" else out.name)
    if str(out) == "-":
        sys.stdout.write(text)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    err_console.print(f"wrote {out}", highlight=False)


def _export_text(source: str, kind: str | None, overrides: list[str], runs_dir: Path | None,
                 file_name: str | None) -> str:
    """What `export` writes for `source`: a sweep bundle, or a run's or an experiment's resolved config."""
    from engine.config import from_dict, to_dict
    from engine.errors import ConfigError, EngineError
    from engine.presets import apply_overrides, resolve_experiment, resolved_yaml, validate_deep
    from engine.runs import read_config, resolve_run
    from engine.runs import runs_dir as pick_runs_dir
    from engine.sweep_bundle import export_sweep

    if kind == "sweep":
        return export_sweep(source, overrides, file_name)
    if kind == "experiment" or _is_preset("experiment", source):  # a preset of the name wins, as in previews
        if kind is None and _names_a_run(source, runs_dir):
            err_console.print(f"note: {source} is an experiment preset and a run's name: the preset is exported "
                              "(give the run's full folder name for the run)", highlight=False)
        return resolved_yaml(resolve_experiment(source, overrides))
    try:
        run_dir = resolve_run(pick_runs_dir(runs_dir), source)
    except EngineError as not_a_run:
        if _is_preset("sweep", source):
            return export_sweep(source, overrides, file_name)
        raise ConfigError(f"{source!r} is neither a run ({not_a_run}) nor an experiment or sweep preset") from None
    config = read_config(run_dir)
    if overrides:
        config = from_dict(apply_overrides(to_dict(config), overrides), "--set")
        validate_deep(config, None)  # what the file would be refused for, refused before it is written
    return resolved_yaml(config)


def _names_a_run(source: str, runs_dir: Path | None) -> bool:
    """Whether `source` names a run too (its folder's name, or the name its runs share)."""
    from engine.runs import list_runs, short_name
    from engine.runs import runs_dir as pick_runs_dir

    return any(source in (run.name, short_name(run.name)) for run in list_runs(pick_runs_dir(runs_dir)))


def _is_preset(kind: str, name: str) -> bool:
    """Whether a preset of `kind` is named `name`."""
    from engine.errors import ConfigError
    from engine.presets import find_preset

    try:
        find_preset(kind, name)
    except ConfigError:
        return False
    return True


@app.command("import")
@reports_errors
def import_cmd(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="Preset YAML file to import.")],
    kind: KindOption = None,
    name: Annotated[str | None, typer.Option("--name", help="Name in the user folder (default: file name).")] = None,
    shadow_builtin: Annotated[bool, typer.Option("--shadow-builtin", help="Allow hiding a built-in preset of that name.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing user preset.")] = False,
) -> None:
    """Validate a preset and copy it into the user preset folder (a shared sweep with the presets it bundles)."""
    from engine.errors import ConfigError
    from engine.presets import import_preset

    if not file.is_file():
        raise ConfigError(f"{file}: no such file")
    from engine.presets import load_mapping

    notes: list[str] = []
    target = import_preset(file, kind=kind, name=name, shadow_builtin=shadow_builtin, overwrite=overwrite,
                           notes=notes)
    for note in notes:
        err_console.print(f"note: {escape(note)}", highlight=False, soft_wrap=True)
    err_console.print(f"imported as {target}", highlight=False, soft_wrap=True)
    if target.parent.name == "sweep":
        err_console.print(f"run it: imgcls-console sweep run {target.stem}", highlight=False)
    inner = load_mapping(target).get("name")
    if target.parent.name == "experiment" and isinstance(inner, str) and inner != target.stem:
        err_console.print(f"note: the file sets `name: {inner}`, so its runs are named {inner}-...; "
                          f"remove that line to name them {target.stem}-...", highlight=False)
