"""Parsing API answers: tolerant of what the schema allows, strict about what it forbids."""

import copy
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from exporter.model import InvalidResponse, _checked_record, _record, parse_job, parse_rfc3339, parse_timestamp

T = 1768487400.0  # 2026-01-15T14:30:00Z
GOOD = json.loads((Path(__file__).parent / "fixtures" / "job_running.json").read_text())


@pytest.mark.parametrize("text, expected", [
    ("2026-01-15T14:30:00Z", T),
    ("2026-01-15T14:30:00z", T),
    ("2026-01-15t14:30:00Z", T),
    ("2026-01-15T14:30:00", T),                      # no offset: UTC
    ("2026-01-15T14:30:00.000000Z", T),
    ("2026-01-15T14:30:00.5Z", T + 0.5),             # one fractional digit
    ("2026-01-15T14:30:00.123456789Z", T + 0.123456789),  # nine
    ("2026-01-15T16:30:00+02:00", T),
    ("2026-01-15T09:00:00.25-05:30", T + 0.25),
    ("2026-01-15T14:30:00+00:00", T),
    ("2026-01-15 14:30:00Z", T),
])
def test_rfc3339_timestamps(text, expected):
    assert parse_timestamp(text) == pytest.approx(expected, abs=1e-7)


@pytest.mark.parametrize("text", [
    "", "yesterday", "2026-01-15", "2026-13-01T00:00:00Z", "2026-01-15T14:30:00.1234567890Z",
    "2026-01-15T14:30:00+2:00", "2026-01-15T14:30Z", "2026-02-30T00:00:00Z",
])
def test_bad_timestamps_are_refused(text):
    with pytest.raises(ValueError):
        parse_timestamp(text)


def test_good_answer_parses_and_ignores_unknown_fields():
    job = parse_job(GOOD)
    assert (job.id, job.status, job.output_files, len(job.records)) == ("ij-running", "running", 2, 8)
    assert job.records[6].deleted is True
    assert job.records[5].method is None and job.records[5].deleted is False


def broken(mutate):
    body = copy.deepcopy(GOOD)
    mutate(body)
    return body


@pytest.mark.parametrize("body, reason", [
    ([], "expected a JSON object, got list"),
    (None, "expected a JSON object, got NoneType"),
    (broken(lambda b: b.pop("output_files")), "output_files: expected a list"),
    (broken(lambda b: b.update(id=7)), "id: expected a string, got int"),
    (broken(lambda b: b.update(status=None)), "status: expected a string, got null"),
    (broken(lambda b: b.update(created_at="soon")), "created_at: not an RFC 3339 timestamp"),
    (broken(lambda b: b.update(file_records={"a": 1})), "file_records: expected a list or null"),
    (broken(lambda b: b["file_records"].append("x")), "file_records[8]: expected an object"),
    (broken(lambda b: b["file_records"][0].pop("record_id")), "file_records[0].record_id: expected a string, got null"),
    (broken(lambda b: b["file_records"][4].update(queue_position="1")),
     "file_records[4].queue_position: expected an integer or null"),
    (broken(lambda b: b["file_records"][4].update(queue_position=True)),
     "file_records[4].queue_position: expected an integer or null"),
    (broken(lambda b: b["file_records"][1].update(deleted="no")), "file_records[1].deleted: expected a boolean"),
    (broken(lambda b: b["file_records"][1].update(completed_at=12)),
     "file_records[1].completed_at: expected an RFC 3339 timestamp, got int"),
    (broken(lambda b: b["file_records"][1].update(worker_id=["w"])),
     "file_records[1].worker_id: expected a string or null, got list"),
])
def test_answers_that_break_the_schema_say_where(body, reason):
    with pytest.raises(InvalidResponse) as err:
        parse_job(body)
    assert str(err.value) == reason


def test_settled_means_finished_job_with_every_live_record_finished():
    job = parse_job(json.loads((Path(__file__).parent / "fixtures" / "job_completed.json").read_text()))
    assert job.is_settled
    assert not parse_job(GOOD).is_settled
    still_running = broken(lambda b: b.update(status="completed"))
    assert not parse_job(still_running).is_settled  # records are still queued


@given(st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9999, 12, 30)), st.booleans())
def test_the_api_shape_reads_the_same_as_any_other_spelling(moment, with_fraction):
    api_shape = moment.strftime("%Y-%m-%dT%H:%M:%S") + (moment.strftime(".%f") if with_fraction else "") + "Z"
    other = moment.strftime("%Y-%m-%dT%H:%M:%S") + (moment.strftime(".%f") if with_fraction else "") + "+00:00"
    assert parse_timestamp(api_shape) == pytest.approx(parse_timestamp(other), abs=1e-6)
    expected = moment.replace(tzinfo=timezone.utc)
    if not with_fraction:
        expected = expected.replace(microsecond=0)
    assert parse_timestamp(api_shape) == pytest.approx(expected.timestamp(), abs=1e-6)


def _reading(parse, text):
    try:
        return parse(text)
    except ValueError:
        return "refused"


def _edited(text, edits):
    for index, char in edits:
        index %= len(text)
        text = text[:index] + char + text[index + 1:]
    return text


_api_shape = st.datetimes(max_value=datetime(9999, 12, 31)).flatmap(
    lambda m: st.sampled_from([m.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), m.strftime("%Y-%m-%dT%H:%M:%SZ")]))
# The API's shape with a few characters changed: leap seconds, impossible days, signs, spaces,
# commas, full-width and Arabic-Indic digits, which the general reader's \d accepts.
_near_api_shape = st.builds(_edited, _api_shape, st.lists(
    st.tuples(st.integers(0, 26), st.sampled_from("0123456789 +-:.,TZz\uff15\u0663")), max_size=3))


@given(_near_api_shape)
@example("2016-12-31T23:59:60Z")  # a leap second: fromisoformat refuses it, RFC 3339 does not
@example("2016-12-31T23:59:60.500000Z")
@example("2026-02-30T00:00:00Z")
@example("2026-01-15T14:30:00,123456Z")
@example("\uff12026-01-15T14:30:00Z")
@example("2000-01-01T00:00:00.0+0000Z")  # a fraction and an offset in the fraction's place
def test_the_fast_path_reads_exactly_what_the_general_reader_reads(text):
    fast, general = _reading(parse_timestamp, text), _reading(parse_rfc3339, text)
    if general == "refused":
        assert fast == "refused"
    else:
        assert fast == pytest.approx(general, abs=1e-6)


_RECORD = {"record_id": "ijf-1", "filename": "a.pdf", "status": "processing", "created_at": "2026-01-15T14:30:00Z",
           "method": "best", "worker_id": "w-1", "queue_position": None, "error_message": None,
           "suggested_fix": None, "deleted": False, "processing_at": "2026-01-15T14:31:00.250000Z",
           "completed_at": None, "failed_at": None}
_value = st.one_of(
    st.none(), st.booleans(), st.integers(-2, 2), st.just(2**53 + 1), st.floats(allow_nan=False), st.just([]),
    st.text(max_size=6), st.sampled_from(["", "queued", "completed", "stopped", "x" * 70, "caf\u00e9", "\ud800"]),
    _api_shape, _near_api_shape)


def _read_record(read, raw):
    try:
        return read(raw)
    except InvalidResponse as err:
        return "refused", str(err)


@given(st.one_of(
    st.builds(lambda changed, dropped: {k: v for k, v in {**_RECORD, **changed}.items() if k not in dropped},
              st.dictionaries(st.sampled_from(sorted(_RECORD)), _value, max_size=4),
              st.sets(st.sampled_from(sorted(_RECORD)), max_size=2)),
    _value))
@example(_RECORD)
@example({**_RECORD, "deleted": None, "queue_position": 7, "status": "x" * 70})
@example({**_RECORD, "created_at": "2016-12-31T23:59:60Z"})
@example({**_RECORD, "filename": "r\u00e9sum\u00e9.pdf"})
def test_a_record_in_the_api_shape_reads_exactly_as_the_checked_reader_reads_it(raw):
    terminal = frozenset({"completed", "failed", "stopped"})
    fast = _read_record(lambda r: _record(r, "file_records", 3, terminal), raw)
    checked = _read_record(lambda r: _checked_record(r, "file_records[3]", terminal), raw)
    assert fast == checked
