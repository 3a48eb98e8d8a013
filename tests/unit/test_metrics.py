"""observe_all counts a batch's values into a histogram as one observe per value would."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram

from agents.metrics import LATENCY_BUCKETS, observe_all


def _samples(histogram: Histogram) -> dict[tuple[str, str], float]:
    return {
        (s.name, s.labels.get("le", "")): s.value
        for metric in histogram.collect()
        for s in metric.samples
        if not s.name.endswith("_created")
    }


def _pair() -> tuple[Histogram, Histogram]:
    registry = CollectorRegistry()
    one = Histogram("one_by_one", "each observed", buckets=LATENCY_BUCKETS, registry=registry)
    batch = Histogram("one_by_one", "each observed", buckets=LATENCY_BUCKETS, registry=CollectorRegistry())
    return one, batch


@given(st.lists(st.one_of(st.sampled_from(LATENCY_BUCKETS), st.floats(0, 100, allow_nan=False)), max_size=50))
def test_a_batch_counts_as_its_values_observed_one_by_one(values: list[float]) -> None:
    one, batch = _pair()
    for value in values:
        one.observe(value)
    observe_all(batch, values)
    mine, theirs = _samples(batch), _samples(one)
    assert mine.keys() == theirs.keys()
    for key, value in theirs.items():
        assert abs(mine[key] - value) <= 1e-9 * max(1.0, abs(value)), key


def test_a_value_on_a_bound_counts_in_that_bound_and_nothing_counts_for_no_values() -> None:
    _, batch = _pair()
    observe_all(batch, [])
    assert _samples(batch)[("one_by_one_count", "")] == 0
    observe_all(batch, [0.005, 0.0051, 31.0])
    samples = _samples(batch)
    assert samples[("one_by_one_bucket", "0.005")] == 1
    assert samples[("one_by_one_bucket", "0.01")] == 2
    assert samples[("one_by_one_bucket", "30.0")] == 2
    assert samples[("one_by_one_bucket", "+Inf")] == 3
    assert samples[("one_by_one_sum", "")] == 0.005 + 0.0051 + 31.0
