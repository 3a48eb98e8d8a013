"""Producing a batch's records in record batches: one future per full batch, not one per record.

A score batch writes thousands of ledger records. Sent one by one (``producer.send``), each paid for a
coroutine, the partitioner, a future and a place in ``asyncio.gather``: 40 µs of the worker's time per
event in ``benchmarks/worker_steps.py``. :class:`RecordSender` fills aiokafka ``BatchBuilder`` objects
per partition and hands each to ``send_batch`` when it is full, then waits for every batch's
acknowledgement (the producer's ``acks=all``). Keys are placed as Kafka's default partitioner places
them (murmur2 of the key), so a person's ledger records keep one partition.

A producer without record batches (the tests' recorder) gets one ``send`` per record instead.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2

OutRecord = tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]]]  # topic, key, value, headers


class RecordSender:
    def __init__(self, producer: Any) -> None:
        self.producer = producer  # Faust's producer (its aiokafka producer is used) or a stand-in
        self._placed: dict[tuple[str, bytes, int], int] = {}  # (topic, key, partition count) -> partition

    async def send_all(self, records: Sequence[OutRecord]) -> None:
        """Every record sent and acknowledged by the broker; raises what the producer raises."""
        if not records:
            return
        raw = getattr(self.producer, "_producer", None)
        if not isinstance(raw, AIOKafkaProducer):
            pending = [await self.producer.send(t, k, v, None, None, h) for t, k, v, h in records]
            await asyncio.gather(*pending)
            return
        partitions: dict[str, list[int]] = {}
        open_batches: dict[tuple[str, int], Any] = {}
        sent: list[asyncio.Future[Any]] = []
        for topic, key, value, headers in records:
            parts = partitions.get(topic)
            if parts is None:
                parts = partitions[topic] = sorted(await raw.partitions_for(topic))
            partition = self._partition(topic, key, parts)
            batch = open_batches.get((topic, partition))
            if batch is None:
                batch = open_batches[topic, partition] = raw.create_batch()
            if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:  # full
                sent.append(await raw.send_batch(batch, topic, partition=partition))
                batch = open_batches[topic, partition] = raw.create_batch()
                if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
                    raise ValueError(f"a record for {topic} is larger than the producer's batch size")
        for (topic, partition), batch in open_batches.items():
            sent.append(await raw.send_batch(batch, topic, partition=partition))
        await asyncio.gather(*sent)

    def _partition(self, topic: str, key: bytes | None, parts: list[int]) -> int:
        if key is None:
            return random.choice(parts)
        placed = self._placed.get((topic, key, len(parts)))
        if placed is None:
            if len(self._placed) > 100_000:  # bounded: keys are people and centres, but stay safe
                self._placed.clear()
            placed = self._placed[topic, key, len(parts)] = parts[(murmur2(key) & 0x7FFFFFFF) % len(parts)]
        return placed
