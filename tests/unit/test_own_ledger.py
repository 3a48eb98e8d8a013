"""The project step takes back the JSON objects of ledger records this worker made, by their exact bytes."""

from __future__ import annotations

from types import SimpleNamespace

from agents.scoring import ledger_value
from agents.worker import OwnLedger, _ledger_entry
from state.league import ledger_fields
from tests.functional.conftest import award


def _message(value: bytes | None) -> SimpleNamespace:
    return SimpleNamespace(topic="points-ledger", partition=1, offset=0, value=value, headers=[("source.ts", b"7")])


def test_a_record_made_here_is_read_back_without_decoding_and_reads_as_decoded() -> None:
    own = OwnLedger()
    fields = award(1).ledger_fields()
    value = ledger_value(fields)
    own.keep(value, fields)
    entry = _ledger_entry(_message(bytes(value)), own)  # bytes equal, another object: as Kafka hands them
    assert entry is not None and entry.fields is fields and entry.raw == value
    assert entry.fields == ledger_fields(value) and entry.source_ts == 7
    assert len(own) == 0  # taken once: a copy of it further on the ledger is decoded


def test_other_bytes_are_decoded_and_bad_ones_skipped() -> None:
    own = OwnLedger()
    fields = award(1).ledger_fields()
    own.keep(ledger_value(fields), fields)
    other = award(2).to_ledger()
    entry = _ledger_entry(_message(other), own)
    assert entry is not None and entry.fields == ledger_fields(other) and len(own) == 1
    assert _ledger_entry(_message(b"not json"), own) is None
    assert _ledger_entry(_message(None), own) is None


def test_past_its_limit_the_oldest_records_go_first() -> None:
    own = OwnLedger(limit=2)
    made = [award(n).ledger_fields() for n in range(3)]
    for fields in made:
        own.keep(ledger_value(fields), fields)
    own.keep(ledger_value(made[2]), made[2])  # the same record again: nothing else goes
    assert len(own) == 2
    assert own.take(ledger_value(made[0])) is None
    assert own.take(ledger_value(made[1])) is made[1] and own.take(ledger_value(made[2])) is made[2]


def test_with_no_limit_nothing_is_kept() -> None:
    own = OwnLedger(limit=0)
    fields = award(1).ledger_fields()
    own.keep(ledger_value(fields), fields)
    assert len(own) == 0 and own.take(ledger_value(fields)) is None
