"""COMDIRAC-like data management commands (``dls``, ``dcd``, ``dfind``, ...)."""
