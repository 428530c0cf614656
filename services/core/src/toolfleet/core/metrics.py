"""Prometheus metrics of one toolfleet process (each process has its own registry)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from toolfleet.core.protocol import Observation

CONTENT_TYPE = CONTENT_TYPE_LATEST

# Tool calls span sub-millisecond no-ops to minutes-long sandboxes.
DURATION_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    300,
)


class Metrics:
    """The gateway's metrics: call duration and count per tool and outcome, in-flight calls,
    live sessions. The outcome label is ``ok`` or the diagnostic's kind."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.call_duration = Histogram(
            "toolfleet_call_duration_seconds",
            "Tool call duration (queue + run) in seconds, by tool and outcome.",
            ["tool", "outcome"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.calls = Counter(
            "toolfleet_calls",
            "Tool calls finished, by tool and outcome.",
            ["tool", "outcome"],
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "toolfleet_calls_in_flight", "Tool calls running now.", registry=self.registry
        )
        self.sessions = Gauge("toolfleet_sessions", "Live sessions.", registry=self.registry)
        self.rejected = Counter(
            "toolfleet_calls_rejected",
            "Calls refused before running, by reason (overload, ...).",
            ["reason"],
            registry=self.registry,
        )
        # distributed mode (Redis Streams); read from Redis by the gateway
        self.queue_depth = Gauge(
            "toolfleet_queue_depth",
            "Calls queued or running in a tool's stream.",
            ["tool"],
            registry=self.registry,
        )
        self.queue_age = Gauge(
            "toolfleet_queue_age_seconds",
            "Age of the oldest call in a tool's stream.",
            ["tool"],
            registry=self.registry,
        )
        self.workers = Gauge(
            "toolfleet_workers", "Live workers, by service.", ["service"], registry=self.registry
        )
        self.redeliveries = Gauge(
            "toolfleet_redeliveries",
            "Calls delivered again after their worker died (count kept in Redis).",
            registry=self.registry,
        )
        self.dead_letters = Gauge(
            "toolfleet_dead_letters",
            "Calls given up after too many deliveries (count kept in Redis).",
            registry=self.registry,
        )
        self.reply_duration = Histogram(
            "toolfleet_reply_duration_seconds",
            "From queueing a call on Redis to its reply reaching the gateway.",
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self._children: dict[tuple[str, str], tuple[Histogram, Counter]] = {}

    def observe(self, obs: Observation, seconds: float) -> None:
        """Count one finished call."""
        outcome = "ok" if obs.ok or obs.error is None else obs.error.kind.value
        children = self._children.get((obs.tool, outcome))
        if children is None:
            children = self._children[(obs.tool, outcome)] = (
                self.call_duration.labels(obs.tool, outcome),
                self.calls.labels(obs.tool, outcome),
            )
        children[0].observe(seconds)
        children[1].inc()

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
