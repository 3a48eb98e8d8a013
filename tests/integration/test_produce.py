"""Where the broker stored each record, as `RecordSender.send_all` says: the score step applies its own
ledger records at those places, so they must be where a consumer finds them (both brokers)."""

from __future__ import annotations

import uuid
from types import SimpleNamespace

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from agents.produce import OutRecord, RecordSender
from streams.topics import read_topic
from tests.integration.conftest import Broker

pytestmark = pytest.mark.integration


async def test_each_record_is_where_send_all_says(broker: Broker) -> None:
    topic = f"placed-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 3, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks=-1, max_batch_size=4096)
    await producer.start()
    try:
        sender = RecordSender(SimpleNamespace(_producer=producer))
        said: dict[tuple[int, int], bytes] = {}
        for round_ in range(3):  # batches of several sizes, some past the batch size (several per partition)
            records: list[OutRecord] = [
                (topic, f"S{n % 7:04d}".encode(), f"{round_}-{n}-{'x' * (n % 50)}".encode(), [("h", b"1")])
                for n in range(40 + 90 * round_)
            ]
            for (_, _, value, _), place in zip(records, await sender.send_all(records), strict=True):
                assert place is not None and value is not None
                said[place] = value
    finally:
        await producer.stop()
    found = {(m.partition, m.offset): m.value async for batch in read_topic(broker.bootstrap, topic) for m in batch}
    assert len(said) == 40 + 130 + 220
    assert found == said
