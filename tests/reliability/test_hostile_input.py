"""Presets and label files are data, bounded (issue 10, items 12-15): files that are not UTF-8, nested absurdly,
alias bombs, huge files, absurd values, preset names that are paths, CSVs that are damaged. Each is one line
naming the file (and the key or line), before any run folder exists."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from PIL import Image
from tests.reliability.cli import error_line, invoke


def runs_left(root: Path) -> list[Path]:
    folder = root / "runs"
    return sorted(folder.iterdir()) if folder.is_dir() else []


# ---------------------------------------------------------------- item 12: encodings, depth, odd keys


HOSTILE_PRESETS = {
    "latin-1": ("description: caf\xe9 au lait\noptim: {lr: 0.1}\n".encode("latin-1"), "not UTF-8"),
    "utf-16": ("description: tea\noptim: {lr: 0.1}\n".encode("utf-16"), "UTF-16"),
    "deep": (b"model: {options: {layers: " + b"[" * 20000 + b"]" * 20000 + b"}}\n", "nested more than"),
    "list-key": (b"optim:\n  ? [lr, momentum]\n  : 0.1\n", "mapping key must be a plain name"),
    "mapping-key": (b"{optim: 1}: 2\n", "mapping key must be a plain name"),
}


@pytest.mark.parametrize("kind", list(HOSTILE_PRESETS))
def test_a_hostile_preset_is_one_line_naming_it(isolated_dirs: Path, kind: str) -> None:
    content, expected = HOSTILE_PRESETS[kind]
    path = isolated_dirs / "hostile.yaml"
    path.write_bytes(content)
    commands = [["presets", "validate", str(path)], ["presets", "import", str(path), "--kind", "experiment"],
                ["train", str(path), "--quiet"]]
    if kind in ("latin-1", "utf-16"):  # `show` prints a preset as written: only its text must be readable
        commands.append(["presets", "show", str(path)])
    for args in commands:
        line = error_line(invoke(*args))
        assert str(path) in line and expected in line, (args, line)
    assert runs_left(isolated_dirs) == [] and not (isolated_dirs / "user-presets").exists()


# ---------------------------------------------------------------- item 13: bounded before composing


def alias_bomb(levels: int) -> str:
    """A few hundred bytes that expand to 10**levels values."""
    lines = ["name: bomb", "model:", "  preset: small-cnn", "  options:",
             "    l0: &l0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    for level in range(1, levels):
        refs = ", ".join([f"*l{level - 1}"] * 10)
        lines.append(f"    l{level}: &l{level} [{refs}]")
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_at_once(isolated_dirs: Path) -> None:
    path = isolated_dirs / "bomb.yaml"
    path.write_text(alias_bomb(9))  # 10**9 values once expanded, from about 600 bytes
    assert path.stat().st_size < 1000
    started = time.perf_counter()
    for args in (["presets", "validate", str(path)], ["presets", "import", str(path)], ["train", str(path)]):
        line = error_line(invoke(*args))
        assert str(path) in line and "expands to more than" in line, (args, line)
    assert time.perf_counter() - started < 10
    assert runs_left(isolated_dirs) == [] and not (isolated_dirs / "user-presets").exists()


def test_a_huge_preset_is_refused_unread(isolated_dirs: Path) -> None:
    path = isolated_dirs / "huge.yaml"
    path.write_text("description: '" + "x" * (2 << 20) + "'\noptim: {lr: 0.1}\n")
    for args in (["presets", "validate", str(path)], ["presets", "import", str(path)]):
        line = error_line(invoke(*args))
        assert str(path) in line and "larger than 1024 KiB" in line


@pytest.mark.parametrize(("text", "key", "expected"), [
    ("optim: {lr: 1e999}\n", "optim.lr", "not a finite number"),
    ("optim: {lr: .inf}\n", "optim.lr", "not a finite number"),
    ("optim: {weight_decay: .nan}\n", "optim.weight_decay", "not a finite number"),
    ("data: {image_size: 100000}\n", "data.image_size", "between 4 and 4096"),
    ("train: {seed: 100000000000000000000000000000}\n", "train.seed", "out of range"),
])
def test_absurd_values_are_refused_naming_the_key(isolated_dirs: Path, text: str, key: str, expected: str) -> None:
    path = isolated_dirs / "absurd.yaml"
    path.write_text("base: quickstart\n" + text)
    line = error_line(invoke("presets", "validate", str(path)))
    assert str(path) in line and key in line and expected in line, line
    override = text.split("{")[0].strip(": \n") + "." + text.split("{")[1].split("}")[0].replace(": ", "=")
    line = error_line(invoke("schedule", "preview", "quickstart", "--set", override))
    assert key in line and expected in line, line


# ---------------------------------------------------------------- item 14: names are plain names


@pytest.mark.parametrize("args", [["--name", "../../escaped"], ["--name", "{tmp}/outside/escaped"],
                                  ["--name", ".hidden"], ["--kind", "../../x"], ["--kind", "train"]])
def test_import_refuses_names_and_kinds_that_are_not_plain(isolated_dirs: Path, args: list[str]) -> None:
    args = [arg.replace("{tmp}", str(isolated_dirs)) for arg in args]
    source = isolated_dirs / "mine.yaml"
    # `train` is a config section but not a preset kind: a valid train section must still be refused
    source.write_text("epochs: 3\n" if args[1] == "train" else "base: quickstart\noptim: {lr: 0.2}\n")
    line = error_line(invoke("presets", "import", str(source), *args))
    assert args[1] in line
    assert [p for p in isolated_dirs.rglob("*") if p.is_file() and p != source] == []


def test_a_plain_name_is_imported(isolated_dirs: Path) -> None:
    source = isolated_dirs / "mine.yaml"
    source.write_text("base: quickstart\noptim: {lr: 0.2}\n")
    assert invoke("presets", "import", str(source), "--name", "my-lr_0.2").exit_code == 0
    assert (isolated_dirs / "user-presets" / "experiment" / "my-lr_0.2.yaml").is_file()


# ---------------------------------------------------------------- item 15: CSV labels


def csv_dataset(root: Path, rows: bytes) -> list[str]:
    """20 small images and a labels CSV (header + `rows`); returns the train overrides."""
    root.mkdir(parents=True, exist_ok=True)
    for index in range(20):
        Image.new("L", (8, 8), 10 * index).save(root / f"i{index}.png")
    good = "".join(f"i{index}.png,{'cat' if index % 2 else 'dog'}\n" for index in range(4, 20)).encode()
    (root / "labels.csv").write_bytes(b"Id,Category\n" + rows + good)
    return ["--set", "data.source=csv", "--set", f"data.root={root}", "--set", "data.csv_file=labels.csv",
            "--set", "data.image_size=8", "--set", "train.epochs=1", "--quiet"]


HOSTILE_CSVS = {
    "latin-1": ("i0.png,dog\ni1.png,caf\xe9\ni2.png,cat\ni3.png,dog\n".encode("latin-1"), "line 3: not UTF-8"),
    "long-field": (b"i0.png,dog\ni1.png,cat\ni2.png," + b"x" * 200_000 + b"\ni3.png,dog\n", "line 4"),
    "unclosed-quote": (b'i0.png,dog\ni1.png,"cat\ni2.png,cat\ni3.png,dog\n', "line 3: the `Category` field runs on"),
    "nul-byte": (b"i0.png,dog\ni1.png,cat\ni2.png,ca\x00t\ni3.png,dog\n", "line 4: a NUL byte"),
}


@pytest.mark.parametrize("kind", list(HOSTILE_CSVS))
def test_a_damaged_csv_is_one_line_with_its_line_number(isolated_dirs: Path, kind: str) -> None:
    rows, expected = HOSTILE_CSVS[kind]
    overrides = csv_dataset(isolated_dirs / "images", rows)
    line = error_line(invoke("train", "quickstart", *overrides))
    assert "labels.csv" in line and expected in line, line
    assert runs_left(isolated_dirs) == []
