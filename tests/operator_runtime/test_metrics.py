"""Runtime metrics (`_metrics`) on prometheus_client: families, scrape-time gauges, format."""

from __future__ import annotations

import re
import threading
import time

import pytest
from prometheus_client import Counter, Gauge, Histogram

from agentic_operator._metrics import CallbackGauges, QueueMetrics, family, new_registry, render

pytestmark = pytest.mark.unit

# One sample line of text format 0.0.4: name{labels} value
_SAMPLE = re.compile(
    r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\\\|\\"|\\n)*",?)*\})? '
    r"(NaN|[+-]Inf|-?[0-9.]+(e[+-]?[0-9]+)?)$"
)


def _check_format(text: str) -> None:
    assert text.endswith("\n")
    typed: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in {"counter", "gauge", "histogram", "summary", "untyped"}
            assert name not in typed, f"duplicate TYPE for {name}"
            typed.add(name)
            continue
        assert _SAMPLE.match(line), f"bad sample line: {line!r}"


def test_process_metrics_and_types() -> None:
    text = render(new_registry()).decode()
    _check_format(text)
    rss = float(re.search(r"^process_resident_memory_bytes (\S+)$", text, re.M).group(1))  # type: ignore[union-attr]
    assert 1 << 20 < rss < 4 << 30
    start = float(re.search(r"^process_start_time_seconds (\S+)$", text, re.M).group(1))  # type: ignore[union-attr]
    assert time.time() - 3600 < start <= time.time() + 1
    # A counter is typed a counter (the hand-written registry rendered this one a gauge).
    assert "# TYPE process_cpu_seconds_total counter" in text
    assert "# TYPE process_max_resident_memory_bytes gauge" in text
    assert "_created" not in text


def test_family_is_created_once_per_registry() -> None:
    reg = new_registry()
    a = family(reg, Counter, "x_total", "X.", ("a",))
    assert family(reg, Counter, "x_total", "X.", ("a",)) is a
    with pytest.raises(ValueError, match="already registered"):
        family(reg, Gauge, "x_total", "X.")
    other = new_registry()
    assert family(other, Counter, "x_total", "X.", ("a",)) is not a
    a.labels("1").inc()
    assert reg.get_sample_value("x_total", {"a": "1"}) == 1
    assert other.get_sample_value("x_total", {"a": "1"}) is None


def test_callback_gauges_are_read_at_scrape() -> None:
    reg = new_registry()
    size = {"n": 1}
    reg.register(
        CallbackGauges(
            [
                ("cache_objects", "Objects.", lambda: size["n"]),
                (
                    "cache_objects_by_kind",
                    "Objects by kind.",
                    lambda: [(("sessions",), 10), (("pods",), 2)],
                    ("kind",),
                ),
            ]
        )
    )
    assert "cache_objects 1.0" in render(reg).decode()
    size["n"] = 42
    text = render(reg).decode()
    _check_format(text)
    assert "cache_objects 42.0" in text
    assert 'cache_objects_by_kind{kind="pods"} 2.0' in text
    assert 'cache_objects_by_kind{kind="sessions"} 10.0' in text


def test_queue_metrics_under_client_go_names() -> None:
    reg = new_registry()
    q = QueueMetrics(reg, "sessions")
    QueueMetrics(reg, "other")  # a second queue shares the families
    q.add()
    q.depth(3)
    q.latency(0.2)
    q.work_duration(0.01)
    q.retry()
    labels = {"name": "sessions"}
    assert reg.get_sample_value("workqueue_adds_total", labels) == 1
    assert reg.get_sample_value("workqueue_depth", labels) == 3
    assert reg.get_sample_value("workqueue_retries_total", labels) == 1
    assert reg.get_sample_value("workqueue_queue_duration_seconds_count", labels) == 1
    assert reg.get_sample_value("workqueue_work_duration_seconds_count", labels) == 1
    _check_format(render(reg).decode())


def test_concurrent_increments_are_not_lost() -> None:
    reg = new_registry()
    c = family(reg, Counter, "n_total", "N.", ("w",)).labels("x")
    h = family(reg, Histogram, "h_seconds", "H.", buckets=(0.1, 1.0))

    def work() -> None:
        for _ in range(10_000):
            c.inc()
            h.observe(0.5)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert reg.get_sample_value("n_total", {"w": "x"}) == 40_000
    assert reg.get_sample_value("h_seconds_bucket", {"le": "1.0"}) == 40_000
