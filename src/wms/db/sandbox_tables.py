"""Tables of the sandbox store (filled by the SandboxStore work).

>>> from wms.db.sandbox_tables import metadata
>>> metadata is not None
True
"""

from __future__ import annotations

from wms.db.tables import metadata

__all__ = ["metadata"]
