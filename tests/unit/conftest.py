"""Fixtures shared by the unit tests: the default rule pack and the demo directory, loaded once."""

from __future__ import annotations

import pytest

from agents.rules import RulePack, load_rule_pack
from config.directory import Directory, load_directory
from config.settings import DEFAULT_DIRECTORY, DEFAULT_RULES


@pytest.fixture(scope="session")
def pack() -> RulePack:
    return load_rule_pack(DEFAULT_RULES)


@pytest.fixture(scope="session")
def directory() -> Directory:
    return load_directory(DEFAULT_DIRECTORY)
