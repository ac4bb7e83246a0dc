"""Reading a labels CSV (file column + label column) and finding each row's image file."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from engine.config import DataConfig
from engine.data.decode import is_image_file
from engine.errors import DataError, did_you_mean


@dataclass
class CsvLabels:
    """The rows of a labels CSV: image files, class indices and the class names (sorted)."""

    classes: list[str]
    files: list[Path]
    labels: list[int]
    numeric: bool


class _FolderIndex:
    """The files of one folder by name and by stem (listed once, so 100k rows resolve fast)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.names = {p.name for p in folder.iterdir() if p.is_file()}
        self.stems: dict[str, list[str]] = {}  # image files only: `a` finds a.png beside a.txt
        for name in sorted(self.names):
            if is_image_file(Path(name)):
                self.stems.setdefault(Path(name).stem, []).append(name)

    def find(self, value: str, suffix: str) -> Path | list[Path] | None:
        """The file a CSV value names (as given, with `suffix` appended, or by its stem); several files
        sharing that stem come back as a list, none as None."""
        candidates = [value + suffix] if suffix and not value.endswith(suffix) else []
        candidates.append(value)
        for candidate in candidates:
            if "/" in candidate or "\\" in candidate:
                path = self.folder / candidate
                if path.is_file():
                    return path
            elif candidate in self.names:
                return self.folder / candidate
        matches = self.stems.get(value, []) if not Path(value).suffix else []
        if len(matches) > 1:
            return [self.folder / name for name in matches]
        return self.folder / matches[0] if matches else None


def _parse_int(text: str) -> int | None:
    """The integer a label spells, or None."""
    try:
        return int(text)
    except ValueError:
        return None


MAX_FIELD = 4096  # characters in one CSV field: a file name or a class name is far shorter


def _csv_text(csv_path: Path) -> str:
    """The CSV's text: UTF-8 (a BOM allowed) without NUL bytes; anything else is a DataError with the line."""
    try:
        raw = csv_path.read_bytes()
    except OSError as exc:
        raise DataError(f"{csv_path}: cannot read ({exc.strerror or exc})") from None
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DataError(f"{csv_path}: UTF-16 text; save the CSV as UTF-8")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise DataError(f"{csv_path}: line {line}: not UTF-8 text (byte {raw[exc.start]:#04x}); save the CSV as "
                        "UTF-8 (a latin-1 or cp1252 export?)") from None
    nul = text.find("\x00")
    if nul >= 0:
        raise DataError(f"{csv_path}: line {text.count(chr(10), 0, nul) + 1}: a NUL byte; the file is damaged or "
                        "not a text CSV")
    return text


def _read_rows(csv_path: Path, cfg: DataConfig) -> list[tuple[int, str, str]]:
    """(line number, file value, label value) of every data row; missing columns, empty cells, fields that span
    lines (an unclosed quote) or run absurdly long are errors naming the line."""
    import io

    if not csv_path.is_file():
        raise DataError(f"data.csv_file: {csv_path} does not exist")
    reader = csv.DictReader(io.StringIO(_csv_text(csv_path), newline=""))
    last_end = 0
    try:
        columns = reader.fieldnames or []
        for key, column in (("data.file_column", cfg.file_column), ("data.label_column", cfg.label_column)):
            if column not in columns:
                raise DataError(f"{csv_path}: no column `{column}` ({key}); the columns are {', '.join(columns)}")
        rows = []
        last_end = reader.line_num  # the line where the previous row (or the header) ended
        for row in reader:
            spanned = sum(v.count("\n") for v in row.values() if isinstance(v, str))
            line = max(last_end + 1, reader.line_num - spanned)  # where the row starts (line_num: where it ends)
            last_end = reader.line_num
            file_value = (row.get(cfg.file_column) or "").strip()
            label_value = (row.get(cfg.label_column) or "").strip()
            for column, value in ((cfg.file_column, file_value), (cfg.label_column, label_value)):
                if "\n" in value or "\r" in value:
                    raise DataError(f"{csv_path}: line {line}: the `{column}` field runs on to line "
                                    f"{reader.line_num} (an unclosed quote?)")
                if len(value) > MAX_FIELD:
                    raise DataError(f"{csv_path}: line {line}: the `{column}` field is {len(value)} characters "
                                    f"long (at most {MAX_FIELD}); the file is damaged or not this kind of CSV")
            if not file_value or not label_value:
                column = cfg.file_column if not file_value else cfg.label_column
                raise DataError(f"{csv_path}: line {line}: empty `{column}`")
            rows.append((line, file_value, label_value))
    except csv.Error as exc:
        raise DataError(f"{csv_path}: line {last_end + 1}: not a readable CSV row ({exc})") from None
    if not rows:
        raise DataError(f"{csv_path}: the CSV has no data rows")
    return rows


def _class_names(rows: list[tuple[int, str, str]], csv_path: Path, cfg: DataConfig) -> tuple[list[str], bool]:
    """The class names: `data.classes` when given, else the sorted labels (integers sorted numerically, so
    0..K-1 map to themselves). Integer labels with a few words among them are taken for a typo."""
    if cfg.classes is not None:  # declared names are matched exactly ("01" is not "1")
        return [str(c) for c in cfg.classes], False
    values = {label for _, _, label in rows}
    numbers = {v: _parse_int(v) for v in values}
    words = [(line, label) for line, _, label in rows if numbers[label] is None]
    if not words:
        return [str(v) for v in sorted(set(numbers.values()))], True  # type: ignore[type-var]
    if len(words) < 0.01 * len(rows):
        line, label = words[0]
        raise DataError(f"{csv_path}: line {line}: label `{label}` in column `{cfg.label_column}` is not an integer, "
                        f"while {len(rows) - len(words)} of the {len(rows)} labels are (a typo?); fix the row, or "
                        "list the class names in data.classes")
    return sorted(values), False


def read_csv_labels(csv_path: Path, image_dir: Path, cfg: DataConfig, classes: CsvLabels | None = None) -> CsvLabels:
    """Rows of `csv_path` with images under `image_dir`; with `classes` (a test CSV) labels must be known ones."""
    rows = _read_rows(csv_path, cfg)
    if classes is None:
        names, numeric = _class_names(rows, csv_path, cfg)
    else:
        names, numeric = classes.classes, classes.numeric
    index = {name: i for i, name in enumerate(names)}
    folder = _FolderIndex(image_dir)
    files: list[Path] = []
    labels: list[int] = []
    first_line: dict[Path, int] = {}
    for line, file_value, label_value in rows:
        key = str(_parse_int(label_value)) if numeric and _parse_int(label_value) is not None else label_value
        if key not in index:
            known = "data.classes" if classes is None else "training classes"
            raise DataError(f"{csv_path}: line {line}: unknown label `{label_value}` in column "
                            f"`{cfg.label_column}`: not one of the {len(names)} {known}"
                            f"{did_you_mean(label_value, names)}")
        path = folder.find(file_value, cfg.file_suffix)
        if isinstance(path, list):
            raise DataError(f"{csv_path}: line {line}: `{file_value}` matches several files "
                            f"({', '.join(p.name for p in path[:3])}); set data.file_suffix or name the file fully")
        if path is None:
            suffix_hint = not (Path(file_value).suffix or cfg.file_suffix or files)  # no row found a file yet
            hint = " (set data.file_suffix, e.g. '.jpg')" if suffix_hint else ""
            raise DataError(f"{csv_path}: line {line}: image file {image_dir / (file_value + cfg.file_suffix)} "
                            f"does not exist{hint}")
        if path in first_line:  # one image in two rows could land in train and val at once
            raise DataError(f"{csv_path}: line {line}: image {path.name} is already listed on line {first_line[path]}")
        first_line[path] = line
        files.append(path)
        labels.append(index[key])
    return CsvLabels(names, files, labels, numeric)
