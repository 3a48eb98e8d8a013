"""YAML and CSV loading that remembers where every item came from, for errors naming file and line."""

from __future__ import annotations

import csv
import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A configuration file is invalid. The message names the file and line; fix the file and reload."""

    def __init__(self, path: Path | str, line: int | None, reason: str) -> None:
        where = f"{path}:{line}" if line else str(path)
        super().__init__(f"{where}: {reason}")
        self.path = str(path)
        self.line = line
        self.reason = reason


@dataclass(frozen=True)
class Located:
    """A mapping read from a file, with the file and the 1-based line where it starts."""

    value: dict[str, Any]
    path: Path
    line: int

    def error(self, reason: str) -> ConfigError:
        return ConfigError(self.path, self.line, reason)

    def only(self, allowed: Collection[str]) -> None:
        """Refuse keys outside ``allowed`` (a typo such as ``evnt:`` is an error, not an ignored line)."""
        unknown = sorted(set(map(str, self.value)) - set(allowed))
        if unknown:
            raise self.error(f"unknown key(s): {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})")

    def moment(self, key: str, label: str = "") -> datetime | None:
        """An optional date-time field with its UTC offset (YAML may have parsed it already); a bare date
        or a time without an offset is refused: it would mean a different moment in every time zone."""
        value = self.value.get(key)
        if value is None or value == "":
            return None
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value.replace("z", "Z"))
            except ValueError:
                value = None
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise self.error(
                f"{label}'{key}' must be a date-time with its UTC offset, e.g. 2026-12-01T00:00:00+05:30 "
                "(a bare date would mean a different moment in every time zone)"
            )
        return value


def load_yaml(path: Path) -> tuple[Any, dict[int, int]]:
    """Load a YAML document; also return ``id(node value) -> line`` for every mapping in it."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(path, None, f"cannot read: {exc}") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise ConfigError(path, line, f"not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if node is None:
        raise ConfigError(path, None, "the file is empty")
    lines: dict[int, int] = {}
    loader = yaml.SafeLoader("")
    try:
        value = _construct(loader, node, lines)
    except ConfigError as exc:  # raised by _construct without the path
        raise ConfigError(path, exc.line, exc.reason) from None
    except yaml.YAMLError as exc:
        raise ConfigError(path, None, f"not valid YAML: {exc}") from None
    finally:
        loader.dispose()
    return value, lines


def _construct(loader: yaml.SafeLoader, node: yaml.Node, lines: dict[int, int]) -> Any:
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _construct(loader, key_node, lines)
            if key in result:
                raise ConfigError("", key_node.start_mark.line + 1, f"duplicate key {key!r}")
            result[key] = _construct(loader, value_node, lines)
        lines[id(result)] = node.start_mark.line + 1
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_construct(loader, item, lines) for item in node.value]
    return loader.construct_object(node, deep=True)


def yaml_items(path: Path, section: str, *, required: bool = True) -> Iterator[Located]:
    """The mappings listed under a top-level ``section`` key of a YAML file, each with its line."""
    document, lines = load_yaml(path)
    if not isinstance(document, dict):
        raise ConfigError(path, 1, "expected a mapping at the top level")
    items = document.get(section)
    if items is None:
        if required:
            raise ConfigError(path, 1, f"missing top-level key '{section}'")
        return
    if not isinstance(items, list):
        raise ConfigError(path, lines.get(id(document)), f"'{section}' must be a list")
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise ConfigError(path, None, f"{section}[{index}] must be a mapping")
        yield Located(item, path, lines.get(id(item), 0))


def csv_items(path: Path, columns: tuple[str, ...], optional: tuple[str, ...] = ()) -> Iterator[Located]:
    """Rows of a CSV file with a header line, each with its line number."""
    try:
        handle = path.open(newline="", encoding="utf-8-sig")  # spreadsheets add a byte-order mark
    except OSError as exc:
        raise ConfigError(path, None, f"cannot read: {exc}") from None
    with handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        missing = [c for c in columns if c not in header]
        if missing:
            raise ConfigError(path, 1, f"missing column(s): {', '.join(missing)}")
        unknown = [c for c in header if c not in columns + optional]
        if unknown:
            raise ConfigError(path, 1, f"unknown column(s): {', '.join(unknown)}")
        try:
            for row in reader:
                if None in row:
                    raise ConfigError(path, reader.line_num, "more fields than columns")
                yield Located({k: v for k, v in row.items() if v not in ("", None)}, path, reader.line_num)
        except (csv.Error, UnicodeDecodeError) as exc:
            raise ConfigError(path, reader.line_num, f"not valid CSV: {exc}") from None


CONFIG_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")  # a configuration file, calendar or channel name


@dataclass(frozen=True)
class Document:
    """A named, versioned configuration file (``<name_key>: NAME`` and ``version: N`` at the top)."""

    top: Located
    lines: dict[int, int]
    name: str
    version: int

    def section(self, value: Any, where: str) -> Located:
        """A mapping inside the document, with its line; anything else is refused naming ``where``."""
        if not isinstance(value, dict):
            raise ConfigError(self.top.path, self.lines.get(id(self.top.value)), f"'{where}' must be a mapping")
        return Located(value, self.top.path, self.lines.get(id(value), 0))


def load_document(path: Path, name_key: str, allowed: Collection[str], what: str) -> Document:
    """Load a YAML mapping holding only ``allowed`` keys, named by ``name_key`` (``what`` it names, for
    the error) and with a ``version`` from 1."""
    document, lines = load_yaml(path)
    if not isinstance(document, dict):
        raise ConfigError(path, 1, "expected a mapping at the top level")
    top = Located(document, path, 1)
    top.only(allowed)
    name, version = document.get(name_key), document.get("version")
    if not isinstance(name, str) or not CONFIG_NAME.match(name):
        raise top.error(f"'{name_key}' must name {what} (lower case letters, digits, '-' or '_')")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise top.error("'version' must be a whole number from 1")
    return Document(top, lines, name, version)
