"""Error types the engine raises for bad input; the console prints their message and exits non-zero."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class EngineError(Exception):
    """Base class: a problem the user can fix, explained in the message."""


class ConfigError(EngineError):
    """A preset or override is invalid (unknown key, wrong type, missing preset)."""


class DataError(EngineError):
    """A dataset cannot be read: missing files, corrupt image, bad CSV row."""


class ModelError(EngineError):
    """A model cannot be built or its weights cannot be loaded."""


class CheckpointError(EngineError):
    """A checkpoint is missing, corrupt or incompatible with the config."""


class RunError(EngineError):
    """A run folder is missing or cannot be used for the request."""


class Cancelled(EngineError):
    """A long engine call (evaluation, ensemble) stopped because its caller asked it to."""


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """Return ' (did you mean `x`?)' for the closest candidate, or '' when none is close."""
    matches = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean `{matches[0]}`?)" if matches else ""


LISTED_AT_MOST = 12  # names an error lists in full; past that it says where to find them


def unknown_name(what: str, name: str, names: list[str], listing: str) -> str:
    """`no optim preset named 'x' (did you mean `sgd`?); available: adam, sgd`: a few names are listed; of many, the
    close one is named, or else the command that lists them (`listing`)."""
    close = did_you_mean(name, names)
    if len(names) <= LISTED_AT_MOST:
        return f"no {what} named {name!r}{close}; available: {', '.join(names) or '(none)'}"
    if close:
        return f"no {what} named {name!r}{close}"
    return f"no {what} named {name!r}; {len(names)} to choose from: `{listing}` lists them"


def classes_mismatch(expected: list[str], expected_from: str, actual: list[str], actual_from: str) -> str:
    """A message naming how two class lists differ (count, names or order)."""
    if len(expected) != len(actual):
        what = f"{len(actual)} classes, not {len(expected)}"
    elif sorted(expected) != sorted(actual):
        extra = sorted(set(actual) - set(expected))[:5]
        what = f"different class names ({', '.join(extra)} not in {expected_from})"
    else:
        what = "the same class names in another order"
    return (f"{actual_from} does not match {expected_from}: {what}. {expected_from} classes: "
            f"{_short(expected)}; {actual_from} classes: {_short(actual)}")


def _short(names: list[str]) -> str:
    return ", ".join(names[:8]) + (f", ... ({len(names)} in all)" if len(names) > 8 else "")
