"""Job families as exposition text, in pieces that can be rendered once and joined on every scrape.

The output is byte for byte what prometheus_client's encoders write for the same families (a
property test holds the two together), but cut differently: into *sections*, one per HELP/TYPE
block, and for each job the section's sample lines. A scrape then writes each section's header
followed by every job's lines for it, so a family stays contiguous under one HELP and TYPE while
a job's lines come from its ``RenderedJob``, rendered when its answer arrived. A scrape renders
only the per-scrape state series, the values that grow with time in an unfinished job's lines
(holes, samplelines.py), and the unfinished jobs it holds as parsed answers (their copies in the
job list or in a data job, which have no kept rendering).

The two formats differ only in their headers and in gauge histograms: the text format writes the
``_gcount`` and ``_gsum`` samples of all jobs after the buckets under a gauge HELP/TYPE of their
own (only when there are any); OpenMetrics keeps each job's buckets, count and sum together. Gauge
sample lines are the same bytes in both, and are kept once.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, Collection, Iterable, Iterator, Sequence

from prometheus_client.core import Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from .cardinality import PER_FILE_RECENT, per_file_wanted
from .config import MetricsConfig
from .gzipstream import FRESH_LEVEL, KEPT_LEVEL, Chunk, GzipMember, deflate, inflate
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


Piece = bytes | Chunk  # a section's lines for one job as sent: plain, or kept deflated (and nothing else)
KeptPiece = Block | Chunk  # as kept: an unfinished job's lines may have holes


@dataclass(frozen=True)
class FilledPieces:
    """One job's lines at one time, per section of each format: ready to join."""

    lines: dict[str, tuple[Piece, ...]]  # format -> per section


@dataclass(frozen=True)
class JobPieces:
    """One job's lines as kept, per section of each format. A long piece of fixed lines is kept
    deflated only (gzipstream.Chunk): a gzip answer sends it as it is, a plain one inflates it.
    An unfinished job's lines have holes (samplelines.Lines) for the values that grow with time."""

    lines: dict[str, tuple[KeptPiece, ...]]
    filled: FilledPieces | None = field(init=False, default=None)  # itself, when it has no holes

    def __post_init__(self) -> None:
        if not any(type(piece) is Lines for pieces in self.lines.values() for piece in pieces):
            object.__setattr__(self, "filled", FilledPieces(self.lines))  # type: ignore[arg-type]

    def at(self, now: float) -> FilledPieces:
        """The pieces with every hole filled at ``now``."""
        if self.filled is not None:
            return self.filled
        filled: dict[int, bytes] = {}  # a gauge section's lines are one object in both formats

        def fill(piece: KeptPiece) -> Piece:
            if not isinstance(piece, Lines):
                return piece
            text = filled.get(id(piece))
            if text is None:
                text = filled[id(piece)] = piece.at(now)
            return text

        return FilledPieces({fmt: tuple(fill(piece) for piece in pieces) for fmt, pieces in self.lines.items()})


class Exposition:
    """A whole answer as pieces: plain bytes and, in a plain answer, kept chunks inflated as they
    are sent, so a kept job's long pieces are not held uncompressed for it. Iterating it gives
    writes of at least ``WRITE_SIZE`` (but the last): one per piece would be thousands of sends."""

    __slots__ = ("pieces", "size")
    WRITE_SIZE = 256 * 1024

    def __init__(self, pieces: Sequence[Piece]):
        self.pieces = pieces
        self.size = sum(piece.size if isinstance(piece, Chunk) else len(piece) for piece in pieces)

    def __iter__(self) -> Iterator[bytes]:
        pending: list[bytes] = []
        pending_size = 0
        for piece in self.pieces:
            text = inflate(piece) if isinstance(piece, Chunk) else piece
            if pending and pending_size + len(text) >= self.WRITE_SIZE:
                yield b"".join(pending + [text])
                pending, pending_size = [], 0
            elif len(text) >= self.WRITE_SIZE:
                yield text
            else:
                pending.append(text)
                pending_size += len(text)
        if pending:
            yield b"".join(pending)


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
        lines: dict[str, tuple[KeptPiece, ...]] = dict(self._split(families, skip=self.state_families))
        if keep:
            # A settled job's pieces are sent for hours; an unfinished job's only until its next
            # change, often the next scrape: compressing them fast wins there.
            level = KEPT_LEVEL if job.is_settled else FRESH_LEVEL
            made: dict[int, Chunk] = {}  # gauge sections are the same bytes in both formats: deflate once
            lines = {fmt: tuple(
                (made.get(id(piece)) or made.setdefault(id(piece), deflate(piece, level)))
                if type(piece) is bytes and len(piece) >= MIN_KEPT_CHUNK else piece
                for piece in pieces) for fmt, pieces in lines.items()}
        return JobPieces(lines)

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

    def trimmed(self, job: RenderedJob, now: float) -> RenderedJob:
        """``job`` without its per-file text if, under metrics.per_file: recent, it is past the window."""
        settings = self.settings
        if settings.per_file != PER_FILE_RECENT or not job.is_settled or not isinstance(job.pieces, JobPieces) \
                or per_file_wanted(settings.per_file, settings.per_file_window, True, job.ended_at, now):
            return job
        pieces = JobPieces({fmt: tuple(b"" if i in self._file_sections[fmt] else piece for i, piece in enumerate(kept))
                            for fmt, kept in job.pieces.lines.items()})
        return replace(job, pieces=pieces)

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

    def body(self, round_: RoundPieces, fmt: str, gzipped: bool, tail: list[Metric]) -> Exposition:
        """The whole exposition: every job family, then ``tail`` (the exporter's own families)."""
        encoder = generate_openmetrics if fmt == OPENMETRICS else generate_latest
        end = encoder(FamiliesCollector(tail))
        if not gzipped:
            out: list[Piece] = []
            text: list[bytes] = []  # plain pieces not yet in ``out``: joined into one
            for piece in self._in_order(round_, fmt):
                if type(piece) is bytes:
                    text.append(piece)
                else:
                    out += (b"".join(text), piece)
                    text = []
            text.append(end)
            out.append(b"".join(text))
            return Exposition(out)
        member = GzipMember()
        for piece in self._in_order(round_, fmt):
            if isinstance(piece, Chunk):
                member.add_chunk(piece)
            else:
                member.add_text(piece)
        member.add_text(end)
        return Exposition(member.finish())

    def _in_order(self, round_: RoundPieces, fmt: str) -> Iterator[Piece]:
        """Every section's header and lines, the state sections' and each job's, in the body's order."""
        state, jobs = round_.state[fmt], round_.jobs
        for index, section in enumerate(self.sections[fmt]):
            if section.family in self.state_families:
                if state[index] or not section.optional:
                    yield section.header
                    yield state[index]
                continue
            pieces = [job.lines[fmt][index] for job in jobs]
            if section.optional and not any(pieces):
                continue
            yield section.header
            yield from pieces

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
        return FilledPieces({fmt: tuple(b"" if i in self._file_sections[fmt] else piece
                                        for i, piece in enumerate(per_section))
                             for fmt, per_section in pieces.lines.items()})

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
