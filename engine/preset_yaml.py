"""Reading preset YAML safely: bounded size, depth and alias expansion, UTF-8 only, plain keys given once, no tags.

A shared preset is untrusted input: nothing in it is executed, and a hostile file is refused in one line naming it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from engine.errors import ConfigError

MAX_PRESET_BYTES = 1 << 20   # a preset is a few hundred bytes; a shared file larger than this is refused unread
MAX_DEPTH = 40               # nesting levels of a preset (a config is 4 deep; augmentation choices a few more)
MAX_NODES = 100_000          # values in a preset once YAML aliases are expanded (an alias bomb is millions)


class _Refused(yaml.YAMLError):
    """A document outside the bounds of a preset (too deep, too large once aliases expand, odd keys)."""


class _StrictSafeLoader(yaml.SafeLoader):
    """The safe loader, bounded: nesting depth and alias expansion are limited before anything is constructed;
    a key given twice in one mapping (YAML would silently keep the last) and a key that is not a plain value
    are refused."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise _Refused(f"line {mark.line + 1}: nested more than {MAX_DEPTH} levels deep; a preset is "
                               "a few levels of plain values")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def get_single_data(self) -> Any:
        node = self.get_single_node()
        if node is None:
            return None
        _check_expansion(node)
        return self.construct_document(node)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _value in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise _Refused(f"line {key_node.start_mark.line + 1}: a mapping key must be a plain name, not a "
                               f"{'list' if isinstance(key_node, yaml.SequenceNode) else 'mapping'}")
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice (lines {seen[key]} and {key_node.start_mark.line + 1})",
                    key_node.start_mark)
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def _check_expansion(root: yaml.Node) -> None:
    """Refuse a document whose aliases expand past MAX_NODES values or MAX_DEPTH levels (an alias bomb: a few
    hundred bytes naming a list of lists of ... billions of values), or that refers to itself. Each distinct
    node is visited once, without recursion."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    open_nodes: set[int] = set()
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            children = _children(node)
            size[key] = 1 + sum(size[id(c)] for c in children)
            depth[key] = 1 + max((depth[id(c)] for c in children), default=0)
            open_nodes.discard(key)
            if size[key] > MAX_NODES:
                raise _Refused(f"line {node.start_mark.line + 1}: expands to more than {MAX_NODES} values (YAML "
                               "aliases repeating aliases?); a preset is refused past that")
            if depth[key] > MAX_DEPTH:
                raise _Refused(f"line {node.start_mark.line + 1}: nested more than {MAX_DEPTH} levels deep once its "
                               "aliases are expanded")
            continue
        if key in size:
            continue
        if key in open_nodes:
            raise _Refused(f"line {node.start_mark.line + 1}: an alias refers to the value that contains it")
        open_nodes.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node))


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def preset_text(path: Path) -> str:
    """The text of a preset file: at most MAX_PRESET_BYTES of UTF-8 (a BOM allowed); anything else is a
    ConfigError naming the file."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_PRESET_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if len(raw) > MAX_PRESET_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_PRESET_BYTES // 1024} KiB; a preset is a short YAML file, so "
                          "this one is refused unread")
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ConfigError(f"{path}: UTF-16 text; save the preset as UTF-8")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}: line {line}: not UTF-8 text (byte {raw[exc.start]:#04x}); save the preset as "
                          "UTF-8") from None


def parse_yaml(text: str) -> Any:
    """Parse YAML text with the bounded safe loader (errors are yaml.YAMLError or RecursionError)."""
    return yaml.load(text, Loader=_StrictSafeLoader)  # noqa: S506 - a bounded SafeLoader subclass


def load_yaml(path: Path) -> Any:
    """Parse a YAML file with the bounded safe loader; any error names the file. Nothing in it is executed."""
    text = preset_text(Path(path))
    try:
        return parse_yaml(text)
    except _Refused as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to be a preset") from None
    except yaml.constructor.ConstructorError as exc:
        if exc.problem and "appears twice" in exc.problem:
            raise ConfigError(f"{path}: {exc.problem}") from exc
        raise ConfigError(
            f"{path}: refused YAML tag ({exc.problem}); presets are plain data, tags such as !!python/... are not allowed"
        ) from exc
    except yaml.YAMLError as exc:
        where = f"{path}:{exc.problem_mark.line + 1}:{exc.problem_mark.column + 1}" if isinstance(
            exc, yaml.MarkedYAMLError) and exc.problem_mark is not None else str(path)
        raise ConfigError(f"{where}: not valid YAML: {yaml_problem(exc)}") from exc


def yaml_problem(exc: yaml.YAMLError) -> str:
    """What PyYAML found wrong, on one line and without its copy of the text: `expected ',' or '}', but got ':'
    (in a flow mapping from line 1)`; an unmarked error as its own message."""
    if not isinstance(exc, yaml.MarkedYAMLError) or not exc.problem:
        return one_line(exc)
    context = (exc.context or "").removeprefix("while parsing ").removeprefix("while scanning ")
    started = f" from line {exc.context_mark.line + 1}" if exc.context_mark is not None else ""
    return f"{exc.problem}" + (f" (in {context}{started})" if context.startswith(("a ", "an ")) else "")


def one_line(exc: Exception) -> str:
    """An exception's message on one line (YAML errors span several)."""
    return " ".join(str(exc).split())


def load_mapping(path: Path) -> dict[str, Any]:
    """Load a YAML file that must hold a mapping (an empty file is an empty mapping)."""
    raw = load_yaml(path)
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values, got {type(raw).__name__}")
    return raw
