"""What one configuration builds (client, poller, collector), and its swap on reload.

A reload (SIGHUP, or POST /-/reload with --web.enable-lifecycle) reads the file again; a bad file
leaves the running configuration in place, says why in one log line and sets
``seekrflow_exporter_config_last_reload_successful`` to 0, as Prometheus itself does. When the new
file talks to the same workspace (base URL, endpoint, team), the new poller takes over what the old
one knew: cached jobs, stale data, back-off and discovered jobs survive the reload.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable

from .client import SeekrFlowClient
from .collector import ScrapeCollector
from .config import Config, ConfigError
from .exposition import Renderer
from .pool import FetchPool
from .scrape import JobPoller
from .selfmetrics import SelfMetrics
from .sharding import Shard

log = logging.getLogger("seekrflow_exporter.runtime")


@dataclass(frozen=True)
class _Built:
    config: Config
    poller: JobPoller
    collector: ScrapeCollector


class Runtime:
    def __init__(self, config: Config, self_metrics: SelfMetrics, load: Callable[[], Config] | None,
                 shard: Shard = Shard()):
        """``load`` re-reads the configuration; None when there is nothing to re-read (--demo).
        ``shard``: the share of the jobs this exporter serves (--shard, --total-shards)."""
        self._self_metrics = self_metrics
        self._shard = shard
        self._load = load
        self._lock = threading.Lock()
        # One set of workers for every poller, so a reload never adds requests in flight.
        self._pool = FetchPool(config.api.max_concurrency)
        self._current = self._build(config)
        self._self_metrics.config_loaded(time.time())

    @property
    def collector(self) -> ScrapeCollector:
        return self._current.collector

    def reload(self) -> str | None:
        """Load the file again and swap it in; the one-line reason if it could not be."""
        if self._load is None:
            return "nothing to reload: the demo's configuration is built in"
        with self._lock:
            try:
                config = self._load()
            except Exception as err:  # noqa: BLE001 - whatever is wrong with the file, keep running
                self._self_metrics.config_refused()
                if isinstance(err, ConfigError):
                    reason = str(err)
                    log.error("reload failed, keeping the running configuration", extra={"fields": {"err": reason}})
                else:  # a bug, not a mistake in the file: where it happened is worth the lines
                    # Its message could hold anything read (the key too): POST /-/reload shows
                    # only the type, the log (scrubbed) the rest.
                    reason = f"unexpected {type(err).__name__} (see the log)"
                    log.error("reload failed, keeping the running configuration", exc_info=True)
                return reason
            retired_pool = None
            if config.api.max_concurrency != self._current.config.api.max_concurrency:
                # New size, new workers; the old ones finish what they hold, then end.
                retired_pool, self._pool = self._pool, FetchPool(config.api.max_concurrency)
            new: _Built | None = None
            try:
                new = self._build(config)
                if _same_workspace(self._current.config, config):
                    new.poller.take_over(self._current.poller)
            except BaseException:
                # A bug, not the file: the running poller stays, with its workers, and the reload
                # counts as refused; the caller logs the traceback.
                if new is not None:
                    new.poller.close()
                if retired_pool is not None:
                    self._pool, unused = retired_pool, self._pool
                    unused.shutdown()
                self._self_metrics.config_refused()
                raise
            old, self._current = self._current, new
            self._self_metrics.config_loaded(time.time())
        old.poller.close()
        if retired_pool is not None:
            retired_pool.shutdown()
        log.info("configuration reloaded", extra={"fields": {"jobs": len(config.jobs)}})
        return None

    def close(self) -> None:
        self._current.poller.close()
        self._pool.shutdown()

    def _build(self, config: Config) -> _Built:
        client = SeekrFlowClient(config.api, self._self_metrics.api_requests)
        renderer = Renderer(config.metrics)
        poller = JobPoller(config.jobs, client, config.scrape, config.api, config.discovery, data_jobs=config.data_jobs,
                           pool=self._pool, keeper=renderer, shard=self._shard)
        collector = ScrapeCollector(poller, renderer, config.scrape.timeout, self._self_metrics)
        return _Built(config, poller, collector)


def _same_workspace(old: Config, new: Config) -> bool:
    """Whether what the old configuration fetched still describes the new one's jobs."""
    return (old.api.base_url, old.api.endpoint, old.api.team_id) == (new.api.base_url, new.api.endpoint, new.api.team_id)
