"""The garbage collector's settings for Pitstop's long-running processes (worker, gateway, replay).

CPython starts a young-generation collection every 700 container allocations, and every tenth of
those looks at the older generation too. A worker batch allocates hundreds of thousands of short-lived
dicts and lists (decoded events, awards, script arguments), nearly none of them in cycles, so with the
defaults the collector ran ~1,600 times per 20,000 events and took ~19 % of the score and project
steps' time (``benchmarks.worker_steps``: 1.0 s of ~5.4 s). With a young threshold of 20,000 it runs a
few dozen times (``benchmarks.worker_steps`` measured ~3 %; the live worker, below, more); cycles are
still collected, a little later. The gateway keeps that threshold.

What the process built before serving (configuration, rule pack, directory, the app itself) lives as
long as it does; :func:`gc.freeze` moves it out of the collector's sight, so the older generations'
collections do not walk it again and again.

A batch's objects are alive until the batch is done, so a young collection during a score batch walks
every one of them and frees none: with the 20,000 threshold ``pitstop worker`` still spent ~11 µs an
event (8 % of its CPU) in the collector (timed with ``gc.callbacks``): 76 young collections over
50,000 events, ~5.7 ms each. The worker and the replay therefore collect *between* batches
(:class:`BetweenBatches`), when the batch's objects are gone and a young collection finds few; the
automatic threshold stays only as a safety net (:data:`BATCH_THRESHOLD`), for work outside batches.
Measured on ``pitstop bench`` (one worker, 50,000 events): 540 ms in the collector before, ~100 ms
after.
"""

from __future__ import annotations

import gc

GC_THRESHOLD = (20_000, 10, 10)  # young generation, then how many young (middle) collections per older one
BATCH_THRESHOLD = (1_000_000, 10, 10)  # processes that collect between batches: automatic only past this


def tune_gc(threshold: tuple[int, int, int] = GC_THRESHOLD) -> None:
    """Collect once, freeze what exists now (it lives as long as the process), raise the thresholds."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*threshold)


class BetweenBatches:
    """Called after each batch, when its objects are gone: a young collection; every ``middle_every``-th
    time the middle generation too, every ``full_every``-th the whole heap (the counts CPython's own
    thresholds use: 10 young collections per middle one, 10 middle per full one)."""

    def __init__(self, middle_every: int = 10, full_every: int = 100) -> None:
        if not 0 < middle_every <= full_every:
            raise ValueError(f"middle_every ({middle_every}) must be between 1 and full_every ({full_every})")
        self.middle_every = middle_every
        self.full_every = full_every
        self.batches = 0

    def __call__(self) -> None:
        self.batches += 1
        if self.batches % self.full_every == 0:
            gc.collect(2)
        elif self.batches % self.middle_every == 0:
            gc.collect(1)
        else:
            gc.collect(0)
