"""The exporter's in-process steps alone, on already fetched bodies: no network, no threads.

- parse: ``json.loads`` + ``exporter.model.parse_job`` (what each fetch costs after the bytes arrive);
- build: ``exporter.metrics.build_job_families`` over the parsed snapshots;
- encode: the text format of those families, as /metrics writes it;
- as Prometheus asks: the OpenMetrics format gzipped at level 1, which is what /metrics does when
  the request says ``Accept: application/openmetrics-text`` and ``Accept-Encoding: gzip``.
"""

from __future__ import annotations

import gzip
import json
import time
from dataclasses import dataclass
from statistics import median

from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from exporter.config import MetricsConfig
from exporter.metrics import FamiliesCollector, build_job_families
from exporter.model import JobSnapshot, parse_job
from floors import count_samples


@dataclass(frozen=True)
class PureStep:
    records: int
    samples: int
    parse: float  # median seconds for all jobs
    build: float
    encode: float
    openmetrics_gzip: float

    def per_100k_samples(self, seconds: float) -> float:
        return seconds * 100_000 / self.samples

    def per_1k_records(self, seconds: float) -> float:
        return seconds * 1000 / self.records


def measure_pure_step(bodies: dict[str, bytes], now: float, repetitions: int,
                      settings: MetricsConfig = MetricsConfig()) -> PureStep:
    raw = list(bodies.values())
    parse_s, build_s, encode_s, prometheus_s = [], [], [], []
    for _ in range(repetitions):
        started = time.perf_counter()
        jobs = [parse_job(json.loads(body)) for body in raw]
        parsed = time.perf_counter()
        snapshots = [JobSnapshot(job.id, job, fresh=True, last_success=now) for job in jobs]
        families = build_job_families(snapshots, now, settings)
        built = time.perf_counter()
        text = generate_latest(FamiliesCollector(families))
        encoded = time.perf_counter()
        gzip.compress(generate_openmetrics(FamiliesCollector(families)), compresslevel=1)
        prometheus_s.append(time.perf_counter() - encoded)
        parse_s.append(parsed - started)
        build_s.append(built - parsed)
        encode_s.append(encoded - built)
    records = sum(len(job.records) for job in jobs)
    return PureStep(records, count_samples(text.decode()), median(parse_s), median(build_s), median(encode_s),
                    median(prometheus_s))
