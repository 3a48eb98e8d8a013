"""Batches of raw records for the worker's two busy steps, with offsets committed after their effects.

A :class:`BatchReader` is one member of a consumer group of its own (``{app_id}.score`` reads the
source topics, ``{app_id}.project`` the points ledger). It asks aiokafka for whatever has been fetched
(``getmany``: up to ``max_records``, waiting at most ``within_s`` when nothing is there), hands the
whole batch to its handler, and commits each partition's next offset only when the handler has
returned, that is when the batch's effects are durable. A crash anywhere before the commit means the
batch is read again by whoever owns its partitions next; award ids and seen marks make its effects
happen once.

Why not a Faust agent here: measured on this project's bench (docs/benchmarks.md), Faust's stream
machinery costs tens of microseconds per record (an Event, channel queues, acks, per-item timeouts in
``take``) before any of our work: with two hops per event the worker spent 550-630 µs per event and
read 1,500-1,800 events/s; reading the same batches here, 350 µs and 2,400. The Faust app still runs
everything else: the producer, the timers (the leader's SLA tick and digests), the SLA alert agent,
the notification dispatcher, and the worker's lifecycle (a reader runs as a Faust agent on an
in-memory channel, :func:`agents.worker._reading`, so it starts with the app).

A rebalance waits (up to ``REVOKE_WAIT_S``) for the batch in hand to finish and be committed before
the partitions move, so the next owner rarely reads it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError, RebalanceInProgressError

from agents.metrics import WorkerMetrics

log = logging.getLogger("pitstop.consume")

# How long the broker may hold a fetch that finds nothing new. The embedded broker does not answer a
# waiting fetch as soon as records arrive (produce -> consumed at p50: 3 ms with 10 ms, 25 ms with 100 ms;
# docs/benchmarks.md), so this bounds each hop's latency; fetching this often costs it ~0.14 of a core
# per idle worker.
FETCH_WAIT_MS = 10
REVOKE_WAIT_S = 10.0  # a rebalance waits this long for the batch in hand before giving its partitions up


class BatchReader(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is not typed
    def __init__(
        self,
        name: str,
        topics: Sequence[str],
        handler: Callable[[list[Any]], Awaitable[None]],
        *,
        bootstrap: str,
        group: str,
        metrics: WorkerMetrics,
        max_records: int,
        within_s: float,
        session_timeout_s: float,
        heartbeat_interval_s: float,
        on_revoked: Callable[[Iterable[tuple[str, int]]], None] = lambda tps: None,
        on_assignment: Callable[[], None] = lambda: None,
        after_batch: Callable[[], None] = lambda: None,
    ) -> None:
        self.name = name
        self.topics = tuple(topics)
        self.handler = handler
        self.metrics = metrics
        self.max_records = max_records
        self.within_ms = max(1, int(within_s * 1000))
        self.on_revoked = on_revoked
        self.on_assignment = on_assignment
        self.after_batch = after_batch  # called once a batch is handled, committed and let go (agents.gcpolicy)
        self.assigned: set[TopicPartition] = set()
        self.busy = asyncio.Lock()  # held while a batch is handled and committed
        self.consumer: Any = None  # created in run(): aiokafka needs the running loop
        self.options: dict[str, Any] = dict(
            bootstrap_servers=bootstrap,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=int(session_timeout_s * 1000),
            heartbeat_interval_ms=int(heartbeat_interval_s * 1000),
            max_partition_fetch_bytes=4 * 1024 * 1024,
            fetch_max_bytes=16 * 1024 * 1024,
            fetch_max_wait_ms=min(self.within_ms, FETCH_WAIT_MS),
        )

    # --- rebalance listener (aiokafka calls these while the group rebalances) --------------------

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        revoked = list(revoked)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(REVOKE_WAIT_S):
                await self.busy.acquire()
                self.busy.release()
        self.assigned -= set(revoked)
        self._gauge()
        self.on_revoked([(tp.topic, tp.partition) for tp in revoked])

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        self.assigned = set(assigned)
        self._gauge()
        log.info("%s: assigned %d partitions", self.name, len(self.assigned))

    def _gauge(self) -> None:
        self.on_assignment()

    # --- the loop ---------------------------------------------------------------------------------

    async def run(self) -> None:
        """Read, handle and commit until cancelled. A handler error propagates (the worker crashes and
        the batch is read again by the next owner); broker errors around the read are retried."""
        self.consumer = AIOKafkaConsumer(**self.options)
        self.consumer.subscribe(list(self.topics), listener=self)
        await self.consumer.start()
        try:
            while True:
                try:
                    batches = await self.consumer.getmany(timeout_ms=self.within_ms, max_records=self.max_records)
                except KafkaError as exc:
                    log.warning("%s: fetch failed (%r); retrying", self.name, exc)
                    await asyncio.sleep(0.5)
                    continue
                if not batches:
                    continue
                await self._handle(batches)
                del batches  # the batch's records go now, before after_batch
                self.after_batch()
        finally:
            with contextlib.suppress(KafkaError, OSError):
                await self.consumer.stop()

    async def _handle(self, batches: dict[TopicPartition, list[Any]]) -> None:
        async with self.busy:
            await self.handler([m for messages in batches.values() for m in messages])
            await self._commit({tp: messages[-1].offset + 1 for tp, messages in batches.items() if messages})
        self._observe_lag(batches)

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        try:
            await self.consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError, RebalanceInProgressError) as exc:
            # The partitions moved while the batch was handled: its effects are durable, the next owner
            # reads it again from the last commit and finds them already made.
            log.warning("%s: commit refused after a rebalance (%r); the next owner re-reads", self.name, exc)
        except KafkaError as exc:
            log.warning("%s: commit failed (%r); a later commit covers it", self.name, exc)

    def _observe_lag(self, batches: dict[TopicPartition, list[Any]]) -> None:
        for tp, messages in batches.items():
            if not messages:
                continue
            highwater = self.consumer.highwater(tp)
            if highwater is not None:
                lag = max(0, int(highwater) - messages[-1].offset - 1)
                self.metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(lag)
