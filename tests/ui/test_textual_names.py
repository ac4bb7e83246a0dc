"""The console's screens and widgets never reuse an attribute name that Textual's own classes assign: Monitor once
kept its run scanner in `_running`, which Textual's message pump sets to a bool, and discovery failed silently."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re

from textual.message_pump import MessagePump

import console

ASSIGNED = re.compile(r"self\.(\w+)\s*(?::[^=\n]+)?=(?!=)")


def _assigned(cls: type) -> set[str]:
    try:
        return set(ASSIGNED.findall(inspect.getsource(cls)))
    except (OSError, TypeError):
        return set()


def test_no_console_class_overwrites_a_private_attribute_of_textual() -> None:
    """Private names only: public ones a subclass sets (`show_root`, `DEFAULT_MODE`) are Textual's settings."""
    classes = set()
    for info in pkgutil.walk_packages(console.__path__, "console."):
        if not info.name.startswith(("console.app", "console.screens", "console.widgets", "console.palette")):
            continue  # the CLI modules hold no Textual classes (and some import torch)
        module = importlib.import_module(info.name)
        classes.update(c for _, c in inspect.getmembers(module, inspect.isclass)
                       if issubclass(c, MessagePump) and c.__module__.startswith("console."))
    assert len(classes) >= 8  # the screens and widgets were found
    clashes = []
    for cls in classes:
        textual_names = set().union(*(_assigned(base) for base in cls.__mro__ if base.__module__.startswith("textual")))
        textual_names |= {name for base in cls.__mro__ if base.__module__.startswith("textual") for name in vars(base)}
        clashes += [f"{cls.__module__}.{cls.__name__}.{name}" for name in _assigned(cls) & textual_names
                    if name.startswith("_")]
    assert not clashes, clashes
