"""Tables of the task queues (filled by the matcher work).

>>> from wms.db.tq_tables import metadata
>>> metadata is not None
True
"""

from __future__ import annotations

from wms.db.tables import metadata

__all__ = ["metadata"]
