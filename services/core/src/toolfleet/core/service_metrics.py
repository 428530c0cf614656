"""Gauges read at scrape time from what the services report (``Service.status``, the /readyz
``services`` section): the sandbox's kernel pools and warm containers, whether its isolation is
in force, and, in distributed mode, the calls each worker is running.

Embedded, the figures are this process's; distributed, the gateway sums them over each
service's live workers (from their heartbeats, at most ``heartbeat_s`` old), so one scrape of
the gateway shows the whole deployment.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from toolfleet.core.dispatch import Dispatcher

STATUS = "toolfleet_service_status"
SKIP = frozenset({"pid"})  # numbers that are not measures
RUNNING = "toolfleet_worker_running_calls"


class ServiceStatusCollector(Collector):
    """``toolfleet_service_status{service, field}`` and
    ``toolfleet_worker_running_calls{worker}``."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher

    def describe(self) -> Iterable[Metric]:
        # Without this the registry would collect (ask the services) when registering.
        return [self._status(), self._running()]

    def collect(self) -> Iterable[Metric]:
        per_worker = self._workers()
        status = self._status()
        sums: dict[tuple[str, str], float] = {}
        for info in per_worker.values():
            for service, fields in (info.get("status") or {}).items():
                for field, value in (fields or {}).items():
                    if isinstance(value, bool | int | float) and field not in SKIP:
                        key = (service, field)
                        sums[key] = sums.get(key, 0.0) + float(value)
        for (service, field), value in sorted(sums.items()):
            status.add_metric([service, field], value)
        yield status
        running = self._running()
        for worker_id, info in sorted(per_worker.items()):
            if "running" in info:
                running.add_metric([worker_id], float(info["running"]))
        yield running

    def _workers(self) -> dict[str, dict[str, Any]]:
        """Per worker, its heartbeat (``status`` per service, ``running``); embedded, this
        process as the one worker."""
        worker_status = getattr(self.dispatcher, "worker_status", None)
        if callable(worker_status):
            workers: dict[str, dict[str, Any]] = worker_status()
            return workers
        return {"embedded": {"status": self.dispatcher.status()}}

    @staticmethod
    def _status() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            STATUS,
            "Numeric fields of each service's status (as in /readyz), summed over its live "
            "workers: e.g. sandbox pool_ready, pool_size, warm_containers, jailed (1/0).",
            labels=["service", "field"],
        )

    @staticmethod
    def _running() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            RUNNING,
            "Calls each live worker is running (distributed mode, from its heartbeat).",
            labels=["worker"],
        )
