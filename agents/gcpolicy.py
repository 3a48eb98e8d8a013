"""The garbage collector's settings for Pitstop's long-running processes (worker, gateway, replay).

CPython starts a young-generation collection every 700 container allocations, and every tenth of
those looks at the older generation too. A worker batch allocates hundreds of thousands of short-lived
dicts and lists (decoded events, awards, script arguments), nearly none of them in cycles, so with the
defaults the collector ran ~1,600 times per 20,000 events and took ~19 % of the score and project
steps' time (``benchmarks.worker_steps``: 1.0 s of ~5.4 s). With a young threshold of 20,000 it runs a
few dozen times and takes ~3 %; cycles are still collected, a little later.

What the process built before serving (configuration, rule pack, directory, the app itself) lives as
long as it does; :func:`gc.freeze` moves it out of the collector's sight, so the older generations'
collections do not walk it again and again.
"""

from __future__ import annotations

import gc

GC_THRESHOLD = (20_000, 10, 10)  # young generation, then how many young (middle) collections per older one


def tune_gc() -> None:
    """Collect once, freeze what exists now (it lives as long as the process), raise the thresholds."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)
