"""The published contract files match the code, and are valid JSON Schema by an independent validator."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import fastjsonschema
import pytest

from streams import docs
from streams.contract import EVENT_TYPES, SCHEMA_BASE_URI, all_schemas
from streams.examples import EXAMPLES

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_DIR = ROOT / "streams" / "schemas"


@pytest.fixture(scope="module")
def jsonschema() -> Any:
    """The jsonschema package: a validator independent of the fastjsonschema used in production."""
    return pytest.importorskip("jsonschema")


def test_published_schema_files_equal_the_contract() -> None:
    """streams/schemas/ holds one file per event type, each equal to streams.contract.all_schemas()."""
    published = {path.name.removesuffix(".json"): json.loads(path.read_text()) for path in SCHEMA_DIR.glob("*.json")}
    assert sorted(published) == sorted(EVENT_TYPES)
    assert published == all_schemas()


def test_published_docs_equal_the_rendered_reference() -> None:
    """docs/events.md is exactly what streams.docs.render() produces."""
    assert (ROOT / "docs" / "events.md").read_text(encoding="utf-8") == docs.render()


def test_docs_list_every_type_and_error_kind() -> None:
    """The rendered reference has a section per event type and a row per dead-letter error kind."""
    text = docs.render()
    for event_type in EVENT_TYPES:
        assert f"### `{event_type}`" in text
    for kind, _meaning in docs.ERROR_KINDS:
        assert f"| `{kind}` |" in text


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_schema_is_valid_draft_2020_12(jsonschema: Any, event_type: str) -> None:
    """Each schema passes the draft 2020-12 metaschema and has its stable $id."""
    schema = all_schemas()[event_type]
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"{SCHEMA_BASE_URI}/{event_type}.json"


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_example_validates_with_jsonschema(jsonschema: Any, event_type: str) -> None:
    """Each published example is valid for its own schema according to the jsonschema package."""
    validator = jsonschema.Draft202012Validator(all_schemas()[event_type])
    assert [error.message for error in validator.iter_errors(EXAMPLES[event_type])] == []


@pytest.mark.parametrize(
    ("event_type", "changes"),
    [
        ("survey.csat", {"rating": 7}),
        ("survey.csat", {"rating": "5"}),
        ("survey.nps", {"score": 11}),
        ("sale.upsell", {"amount": 0}),
        ("ticket.escalated", {"level": 9}),
        ("survey.csat", {"ratting": 5}),
        ("survey.csat", {"occurred_at": "2026-11-23T18:10:00"}),
        ("survey.csat", {"people": []}),
        ("survey.csat", {"customer_ref": "9876543210"}),
        ("survey.csat", {"type": "survey.nps"}),
    ],
)
def test_both_validators_refuse_the_same_bad_events(jsonschema: Any, event_type: str, changes: dict[str, Any]) -> None:
    """jsonschema and fastjsonschema agree that each broken example is invalid."""
    schema = all_schemas()[event_type]
    bad = {**copy.deepcopy(EXAMPLES[event_type]), **changes}
    assert not jsonschema.Draft202012Validator(schema).is_valid(bad)
    with pytest.raises(fastjsonschema.JsonSchemaValueException):
        fastjsonschema.compile(schema)(bad)
