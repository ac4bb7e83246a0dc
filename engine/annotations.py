"""A run's note and tags: what a person remembers about a run, kept in its folder (`notes.json`).

The file belongs to the person, not to the training process: it is written only here (atomically), any
run or k-fold group folder may carry one, and a missing or damaged file reads as "no note, no tags".
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import RunError
from engine.runs import RunFolder, atomic_write_text

MAX_TAG_LENGTH = 40
# A tag is one plain word: letters or digits first, then letters, digits, `-`, `_` or `.` (lr0.1, ema, baseline).
TAG_PATTERN = re.compile(r"[^\W_][\w.-]*")


@dataclass
class Annotations:
    """A run's free-text note and its tags (ordered, no repeats)."""

    note: str = ""
    tags: list[str] = field(default_factory=list)

    def is_empty(self) -> bool:
        """True when there is neither a note nor a tag."""
        return not self.note and not self.tags


def notes_path(run_dir: Path) -> Path:
    """Where a run folder keeps its note and tags."""
    return RunFolder(Path(run_dir)).notes


def check_tag(tag: str) -> str:
    """A valid tag (surrounding spaces dropped); a RunError that says what a tag may be otherwise."""
    word = tag.strip()
    if not word or len(word) > MAX_TAG_LENGTH or not TAG_PATTERN.fullmatch(word):
        raise RunError(f"tag {tag!r}: a tag is one plain word of at most {MAX_TAG_LENGTH} characters "
                       "(letters, digits, '-', '_', '.'; starting with a letter or digit), e.g. baseline or lr0.1")
    return word


def parse_tags(text: str) -> list[str]:
    """Tags typed as one line ("baseline, ema  cifar") -> checked words in order, no repeats."""
    return unique_tags(check_tag(word) for word in re.split(r"[\s,]+", text) if word)


def unique_tags(tags: Iterable[str]) -> list[str]:
    """Tags in their first order with repeats dropped."""
    return list(dict.fromkeys(tags))


def read_annotations(run_dir: Path) -> Annotations:
    """A run's note and tags; a missing, unreadable or damaged notes.json reads as empty (never raises)."""
    try:
        raw = json.loads(notes_path(run_dir).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return Annotations()
    if not isinstance(raw, dict):
        return Annotations()
    note = raw.get("note")
    tags = raw.get("tags")
    valid_tags = [t for t in tags if isinstance(t, str) and TAG_PATTERN.fullmatch(t)] if isinstance(tags, list) else []
    return Annotations(note if isinstance(note, str) else "", unique_tags(valid_tags))


def write_annotations(run_dir: Path, *, note: str | None = None, tags: list[str] | None = None) -> Annotations:
    """Set a run's note and/or tags (None keeps the current value; an empty note clears it); returns the result."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunError(f"{run_dir}: no such run folder (deleted?)")
    current = read_annotations(run_dir)
    result = Annotations(current.note if note is None else note.strip(),
                         current.tags if tags is None else unique_tags(check_tag(t) for t in tags))
    path = notes_path(run_dir)
    if result.is_empty():
        path.unlink(missing_ok=True)  # nothing to remember: no file, as for a run never annotated
        return result
    try:
        atomic_write_text(path, json.dumps({"note": result.note, "tags": result.tags}, indent=2,
                                           ensure_ascii=False) + "\n")
    except OSError as exc:
        raise RunError(f"{path}: cannot write ({exc.strerror or exc})") from None
    return result


def add_tags(run_dir: Path, tags: list[str]) -> Annotations:
    """Add tags to a run (kept in order, no repeats)."""
    current = read_annotations(run_dir)
    return write_annotations(run_dir, tags=[*current.tags, *(check_tag(t) for t in tags)])


def remove_tags(run_dir: Path, tags: list[str]) -> Annotations:
    """Remove tags from a run; removing a tag it does not carry is a RunError naming the tags it has."""
    current = read_annotations(run_dir)
    missing = [t for t in tags if t not in current.tags]
    if missing:
        has = ", ".join(current.tags) or "none"
        raise RunError(f"{Path(run_dir).name} has no tag {', '.join(missing)} (its tags: {has})")
    return write_annotations(run_dir, tags=[t for t in current.tags if t not in tags])


def matches_tag(annotations: Annotations, tag: str) -> bool:
    """Whether a run carries this tag (case-insensitive)."""
    return tag.casefold() in {t.casefold() for t in annotations.tags}
