"""The pilotwms version, in one place.

>>> from core.version import __version__
>>> isinstance(__version__, str)
True
"""

from __future__ import annotations

__version__ = "0.1.0"
