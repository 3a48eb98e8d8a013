"""Fixtures shared by the unit tests: the default rule pack and the demo directory, loaded once; and
loading a pack written out from a test's text, or the refusal it gets."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.rules import RulePack, load_rule_pack
from config.directory import Directory, load_directory
from config.loading import ConfigError
from config.settings import DEFAULT_DIRECTORY, DEFAULT_RULES


def pack_from_text(tmp_path: Path, text: str) -> RulePack:
    path = tmp_path / "pack.yaml"
    path.write_text(text, encoding="utf-8")
    return load_rule_pack(path)


def pack_refusal(tmp_path: Path, text: str) -> tuple[int | None, str]:
    """(line, reason) of the error loading ``text`` as a pack raises."""
    with pytest.raises(ConfigError) as info:
        pack_from_text(tmp_path, text)
    return info.value.line, info.value.reason


@pytest.fixture(scope="session")
def pack() -> RulePack:
    return load_rule_pack(DEFAULT_RULES)


@pytest.fixture(scope="session")
def directory() -> Directory:
    return load_directory(DEFAULT_DIRECTORY)
