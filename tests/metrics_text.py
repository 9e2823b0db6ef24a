"""Reading a Prometheus text exposition in tests: the series of a `/metrics` answer, by name and labels."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def series(text: str) -> Series:
    """(series name, sorted labels) -> value."""
    out: Series = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(found: Series, name: str, **labels: str) -> float:
    """One series' value (0 when absent)."""
    return found.get((name, tuple(sorted(labels.items()))), 0.0)
