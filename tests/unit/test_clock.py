"""cerniq_ops.clock: the one place that reads and writes time stamps."""

from datetime import UTC, datetime, timedelta, timezone

import pytest

from cerniq_ops import clock

pytestmark = pytest.mark.unit


def test_a_record_stamp_round_trips_and_nothing_else_reads_as_one():
    at = datetime(2026, 12, 3, 6, 7, 42, tzinfo=UTC)
    assert clock.parse_time("2026-12-03T06:07:42Z") == at
    assert clock.parse_time(at.strftime(clock.TIME_FORMAT)) == at
    for bad in ("2026-12-03 06:07:42", "2026-12-03T06:07:42+00:00", ""):
        with pytest.raises(ValueError):
            clock.parse_time(bad)
    assert clock.parse_time(clock.now_utc()).tzinfo is UTC


def test_iso_8601_with_z_or_an_offset():
    assert clock.parse_iso("2026-12-01T10:00:00Z") == datetime(2026, 12, 1, 10, tzinfo=UTC)
    assert clock.parse_iso("2026-03-30T10:00+03:00") == datetime(
        2026, 3, 30, 10, tzinfo=timezone(timedelta(hours=3))
    )
    with pytest.raises(ValueError):
        clock.parse_iso("yesterday")
