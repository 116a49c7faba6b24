"""Times from the wire (``wms.service.common.wire_time``): what DIRAC clients send is read,
anything else is refused with the argument's name, never half-read."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from core.exceptions import InvalidArgumentError
from wms.service.common import wire_time

UTC = timezone.utc


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-12-04 10:20:30", datetime(2026, 12, 4, 10, 20, 30, tzinfo=UTC)),
    # DIRAC's Time.toString() is str(datetime): fractions when there are some
    ("2026-12-04 10:20:30.123456", datetime(2026, 12, 4, 10, 20, 30, tzinfo=UTC)),
    ("2026-12-04T10:20:30", datetime(2026, 12, 4, 10, 20, 30, tzinfo=UTC)),
    ("2026-12-04T10:20:30Z", datetime(2026, 12, 4, 10, 20, 30, tzinfo=UTC)),
    ("2026-12-04 11:20:30+01:00", datetime(2026, 12, 4, 10, 20, 30, tzinfo=UTC)),
    ("2026-12-04 10:20", datetime(2026, 12, 4, 10, 20, tzinfo=UTC)),
    ("2026-12-04", datetime(2026, 12, 4, tzinfo=UTC)),
])
def test_texts_dirac_clients_send(text: str, expected: datetime) -> None:
    got = wire_time(text, "StartTime")
    assert got == expected
    assert got is not None and got.utcoffset() == timedelta(0)


@pytest.mark.parametrize("bad", [
    "2026-12-04garbage",            # was read as the date before
    "2026-12-04 10:20:30 and more",  # was read as the time before
    "2026-13-01",                   # right shape, no such month
    "2026-12-04 25:00:00",
    "04/12/2026",
    "yesterday",
    " 2026-12-04",
    17,
    1.5,
    ["2026-12-04"],
])
def test_anything_else_is_refused_naming_the_argument(bad: object) -> None:
    with pytest.raises(InvalidArgumentError, match="bad StartTime"):
        wire_time(bad, "StartTime")  # type: ignore[arg-type]


def test_empty_is_none_and_datetimes_are_utc() -> None:
    assert wire_time(None) is None
    assert wire_time("") is None
    naive = datetime(2026, 12, 4, 10, 20, 30, 500, tzinfo=UTC).replace(tzinfo=None)
    assert wire_time(naive) == naive.replace(tzinfo=UTC)
    paris = timezone(timedelta(hours=1))
    got = wire_time(datetime(2026, 12, 4, 11, 0, tzinfo=paris))
    assert got == datetime(2026, 12, 4, 10, 0, tzinfo=UTC)
    assert got is not None and got.tzinfo is UTC
