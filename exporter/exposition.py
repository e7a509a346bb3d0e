"""Job families as exposition text, in pieces that can be rendered once and joined on every scrape.

The output is byte for byte what prometheus_client's encoders write for the same families (a
property test holds the two together), but cut differently: into *sections*, one per HELP/TYPE
block, and for each job the section's sample lines. A scrape then writes each section's header
followed by every job's lines for it, so a family stays contiguous under one HELP and TYPE while
a settled job's lines come from its ``RenderedJob`` (rendered when its answer arrived) and only the
unfinished jobs and the per-scrape state series are rendered anew.

The two formats differ only in their headers and in gauge histograms: the text format writes the
``_gcount`` and ``_gsum`` samples of all jobs after the buckets under a gauge HELP/TYPE of their
own (only when there are any); OpenMetrics keeps each job's buckets, count and sum together. Gauge
sample lines are the same bytes in both, and are kept once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Collection, Iterable, Sequence

from prometheus_client.core import Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from .cardinality import PER_FILE_RECENT, per_file_wanted
from .config import MetricsConfig
from .gzipstream import Chunk, GzipMember, deflate
from .metrics import PER_FILE_FAMILY_NAMES, FamiliesCollector, build_job_families
from .model import IngestionJob, JobSnapshot, RenderedJob
from .samplelines import Block, Lines, at, escape, sample_lines

TEXT, OPENMETRICS = "text", "openmetrics"
FORMATS = (TEXT, OPENMETRICS)
# A kept piece smaller than this is recompressed with the scrape's fresh text instead: deflated on
# its own it would gain little, and every kept chunk costs a CRC combination per gzip answer.
MIN_KEPT_CHUNK = 2048
_SUFFIXES = ("_gcount", "_gsum")  # sorted, as prometheus_client writes them
# The reason a job not rendered by its scrape's deadline is exported with, as for a fetch that did not end.
TIMEOUT = "timeout"


@dataclass(frozen=True)
class Section:
    family: int  # index in the family list
    suffix: str  # "" for the family's own block; "_gcount" or "_gsum" in the text format
    header: bytes

    @property
    def optional(self) -> bool:
        """The text format writes a gauge histogram's count and sum blocks only when they have samples."""
        return bool(self.suffix)


@dataclass(frozen=True)
class FilledPieces:
    """One job's sample lines per section of each format at one time, and the kept chunks of the long ones."""

    lines: dict[str, tuple[bytes, ...]]  # format -> per section
    chunks: dict[str, tuple[Chunk | None, ...]]  # format -> per section, None: compress with the fresh text


@dataclass(frozen=True)
class JobPieces:
    """One job's pieces as kept: an unfinished job's lines have holes (samplelines.Lines) for the
    values that grow with time. The chunks are of the sections without holes only."""

    lines: dict[str, tuple[Block, ...]]
    chunks: dict[str, tuple[Chunk | None, ...]]
    filled: FilledPieces | None = field(init=False, default=None)  # itself, when it has no holes

    def __post_init__(self) -> None:
        if not any(type(block) is Lines for blocks in self.lines.values() for block in blocks):
            object.__setattr__(self, "filled", FilledPieces(self.lines, self.chunks))  # type: ignore[arg-type]

    def at(self, now: float) -> FilledPieces:
        """The pieces with every hole filled at ``now``: bytes only, ready to join."""
        if self.filled is not None:
            return self.filled
        filled: dict[int, bytes] = {}  # a gauge section's lines are one object in both formats
        lines = {fmt: tuple(filled.get(id(block)) or filled.setdefault(id(block), at(block, now))
                            for block in blocks)
                 for fmt, blocks in self.lines.items()}
        return FilledPieces(lines, self.chunks)


@dataclass(frozen=True)
class RoundPieces:
    """One round's pieces, joined into a body per format and encoding."""

    snapshots: tuple[JobSnapshot, ...]  # as exported: a job not rendered in time shows as timed out
    jobs: list[FilledPieces]  # of the snapshots with data, in their order
    state: dict[str, tuple[bytes, ...]]  # format -> the state sections' lines, per section
    late: tuple[str, ...]  # jobs not rendered in time: first in the next round


class RenderCost:
    """How long rendering a job's records takes, learnt from the renders of the last rounds:
    the slowest seconds per record seen recently, so the estimate errs towards stopping early."""

    FIRST_GUESS = 20e-6  # seconds per record before anything was measured (about 2x what it takes)
    REMEMBERED = 64

    def __init__(self) -> None:
        self._recent: list[float] = []

    def estimate(self, records: int) -> float:
        per_record = max(self._recent) if self._recent else self.FIRST_GUESS
        return per_record * max(records, 1)

    def took(self, records: int, seconds: float) -> None:
        self._recent = (self._recent + [seconds / max(records, 1)])[-self.REMEMBERED:]


class Renderer:
    """Sections and pieces for one ``MetricsConfig`` (the family list depends on it)."""

    def __init__(self, settings: MetricsConfig):
        self.settings = settings
        # A snapshot without data still has series: scrape success, error, last success. Those
        # families depend on the scrape, never on the job's answer, and are rendered every time.
        probe = build_job_families([JobSnapshot("probe", None, False, "probe", 0.0)], 0.0, settings)
        self._types = [family.type for family in probe]
        self.state_families = frozenset(i for i, family in enumerate(probe) if family.samples)
        self.sections = {TEXT: tuple(_text_sections(probe)), OPENMETRICS: tuple(_openmetrics_sections(probe))}
        # The sections a kept job loses when metrics.per_file: recent stops giving it per-file series.
        self._file_sections = {fmt: frozenset(i for i, section in enumerate(sections)
                                              if probe[section.family].name in PER_FILE_FAMILY_NAMES)
                               for fmt, sections in self.sections.items()}

    def render_data(self, job_id: str, job: IngestionJob, now: float, keep: bool = False) -> JobPieces:
        """The job's data series (every family but the state ones), with holes where a value grows
        with time; ``keep``: deflate the long pieces that have none."""
        families = build_job_families([JobSnapshot(job_id, job, True)], now, self.settings)
        lines = self._split(families, skip=self.state_families)
        chunks: dict[str, tuple[Chunk | None, ...]] = {}
        if keep:
            made: dict[int, Chunk] = {}  # gauge sections are the same bytes in both formats: deflate once
            for fmt in FORMATS:
                chunks[fmt] = tuple(
                    (made.get(id(piece)) or made.setdefault(id(piece), deflate(piece)))
                    if type(piece) is bytes and len(piece) >= MIN_KEPT_CHUNK else None
                    for piece in lines[fmt])
        return JobPieces(lines, chunks)

    def render_kept(self, job_id: str, job: IngestionJob, now: float | None = None,
                    digest: bytes | None = None) -> RenderedJob:
        """What is kept of a job's answer (asked for as ``job_id``): its series, rendered once, no records.

        A settled job's series do not depend on the time (nothing is waiting or running), except
        whether it has per-file series: under ``metrics.per_file: recent`` a scrape past the window
        leaves them out. An unfinished job's values that grow with time are holes, filled by each
        scrape. ``now``: when it is kept (without it, a settled job is kept as when it ended);
        ``digest``: of the answer's body, so an unchanged answer is not read again.
        """
        ended_at = job.ended_at if job.ended_at is not None else job.created_at
        pieces = self.render_data(job_id, job, ended_at if now is None else now, keep=True)
        return RenderedJob(job_id, job.status, job.created_at, ended_at, pieces, self.settings,
                           job.is_settled, digest)

    def serves(self, job: RenderedJob) -> bool:
        return job.settings == self.settings

    def render_round(self, snapshots: Sequence[JobSnapshot], now: float, until: float | None = None,
                     clock: Callable[[], float] | None = None, cost: RenderCost | None = None,
                     first: Collection[str] = ()) -> RoundPieces:
        """Every job's pieces for one round: kept ones as they are, the others rendered now.

        With ``until`` (on ``clock``), an unfinished job whose rendering ``cost`` says would end
        past it is not rendered: it is exported as a job whose fetch timed out, and the next round
        renders it among the ``first``.
        """
        exported = list(snapshots)
        pieces: dict[int, FilledPieces] = {}
        fresh = [i for i, s in enumerate(snapshots) if isinstance(s.job, IngestionJob)]
        fresh.sort(key=lambda i: snapshots[i].job_id not in first)  # stable: the late ones of last round first
        for i in fresh:
            snap = snapshots[i]
            assert isinstance(snap.job, IngestionJob)
            records = len(snap.job.records)
            if until is not None and clock is not None and cost is not None:
                started = clock()
                if started + cost.estimate(records) > until:
                    exported[i] = JobSnapshot(snap.job_id, None, False, TIMEOUT, snap.last_success)
                    continue
                pieces[i] = self.render_data(snap.job_id, snap.job, now).at(now)
                cost.took(records, clock() - started)
            else:
                pieces[i] = self.render_data(snap.job_id, snap.job, now).at(now)
        for i, snap in enumerate(snapshots):
            if isinstance(snap.job, RenderedJob):
                pieces[i] = self._kept(snap.job_id, snap.job, now)
        state = {fmt: tuple(at(block, now) for block in blocks) for fmt, blocks in self._split(build_job_families(
            [JobSnapshot(s.job_id, None, s.fresh, s.error, s.last_success) for s in exported], now, self.settings),
            only=self.state_families).items()}
        late = tuple(exported[i].job_id for i in fresh if i not in pieces)
        return RoundPieces(tuple(exported), [pieces[i] for i in sorted(pieces)], state, late)

    def body(self, round_: RoundPieces, fmt: str, gzipped: bool, tail: list[Metric]) -> list[bytes]:
        """The whole exposition: every job family, then ``tail`` (the exporter's own families)."""
        state, jobs = round_.state[fmt], round_.jobs
        encoder = generate_openmetrics if fmt == OPENMETRICS else generate_latest
        end = encoder(FamiliesCollector(tail))
        if not gzipped:
            out: list[bytes] = []
            for index, section in enumerate(self.sections[fmt]):
                content = state[index] if section.family in self.state_families else \
                    b"".join([job.lines[fmt][index] for job in jobs])
                if content or not section.optional:
                    out += (section.header, content)
            out.append(end)
            return out
        member = GzipMember()
        for index, section in enumerate(self.sections[fmt]):
            if section.family in self.state_families:
                if state[index] or not section.optional:
                    member.add_text(section.header + state[index])
                continue
            if section.optional and not any(job.lines[fmt][index] for job in jobs):
                continue
            member.add_text(section.header)
            for job in jobs:
                chunk = job.chunks[fmt][index] if job.chunks else None
                if chunk is None:
                    member.add_text(job.lines[fmt][index])
                else:
                    member.add_chunk(chunk)
        member.add_text(end)
        return member.finish()

    def _kept(self, job_id: str, job: RenderedJob, now: float) -> FilledPieces:
        if not self.serves(job) or not isinstance(job.pieces, JobPieces):
            raise ValueError(f"job {job_id} was rendered for other metrics settings")
        if not job.is_settled:
            return job.pieces.at(now)
        settings = self.settings
        if settings.per_file == PER_FILE_RECENT and \
                not per_file_wanted(settings.per_file, settings.per_file_window, True, job.ended_at, now):
            return self._without_files(job.pieces.at(now))
        return job.pieces.at(now)

    def _without_files(self, pieces: FilledPieces) -> FilledPieces:
        lines = {fmt: tuple(b"" if i in self._file_sections[fmt] else piece for i, piece in enumerate(per_section))
                 for fmt, per_section in pieces.lines.items()}
        chunks = {fmt: tuple(None if i in self._file_sections[fmt] else chunk for i, chunk in enumerate(per_section))
                  for fmt, per_section in pieces.chunks.items()}
        return FilledPieces(lines, chunks)

    def _split(self, families: list[Metric], skip: Iterable[int] = (), only: Iterable[int] | None = None,
               ) -> dict[str, tuple[Block, ...]]:
        """Each family's sample lines, per section of each format."""
        skip, only = frozenset(skip), None if only is None else frozenset(only)
        text: list[Block] = []
        openmetrics: list[Block] = []
        for index, family in enumerate(families):
            wanted = index not in skip and (only is None or index in only)
            if self._types[index] != "gaugehistogram":
                block = sample_lines(family.samples) if wanted else b""
                text.append(block)
                openmetrics.append(block)
                continue
            if not wanted:
                text += (b"", b"", b"")
                openmetrics.append(b"")
                continue
            name = family.name
            text.append(sample_lines(s for s in family.samples if s.name == name + "_bucket"))
            text += (sample_lines(s for s in family.samples if s.name == name + suffix) for suffix in _SUFFIXES)
            openmetrics.append(sample_lines(family.samples))
        return {TEXT: tuple(text), OPENMETRICS: tuple(openmetrics)}


def _text_sections(families: list[Metric]) -> Iterable[Section]:
    for index, family in enumerate(families):
        help_text = family.documentation.replace("\\", r"\\").replace("\n", r"\n")
        kind = {"gauge": "gauge", "gaugehistogram": "histogram"}[family.type]
        yield Section(index, "", f"# HELP {family.name} {help_text}\n# TYPE {family.name} {kind}\n".encode())
        if family.type == "gaugehistogram":
            for suffix in _SUFFIXES:
                name = family.name + suffix
                yield Section(index, suffix, f"# HELP {name} {help_text}\n# TYPE {name} gauge\n".encode())


def _openmetrics_sections(families: list[Metric]) -> Iterable[Section]:
    for index, family in enumerate(families):
        help_text = escape(family.documentation)
        yield Section(index, "", f"# HELP {family.name} {help_text}\n# TYPE {family.name} {family.type}\n".encode())
