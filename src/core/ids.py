"""Database IDs given on the wire as a number or as decimal text.

Many DIRAC methods take "an ID or a name" (``transName``, a production, a schedule) or IDs
as text (``{"12": ...}`` keys, job IDs from a command line). :func:`as_id` says whether such
a value is an ID that a database column can hold (a whole number from 0 to 2**63 - 1, or the
ASCII decimal text of one), so that callers never hand ``int()`` a text it cannot parse
(``"²".isdigit()`` is true) nor the database a number it cannot store.

Example::

    >>> as_id(12), as_id("12"), as_id(" 12 ")
    (12, 12, None)
    >>> as_id("²"), as_id("9" * 19), as_id(-1), as_id(True), as_id("reco")
    (None, None, None, None, None)
"""

from __future__ import annotations

from typing import Any

#: the largest value of a signed 64-bit column (MariaDB BIGINT, SQLite INTEGER)
MAX_ID = 2**63 - 1


def as_id(value: Any) -> int | None:
    """``value`` as a database ID, or None when it is not one (see the module's example)."""
    if isinstance(value, str):
        if not (value.isascii() and value.isdigit()) or len(value) > 19:
            return None
        value = int(value)
    elif isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if 0 <= value <= MAX_ID else None
