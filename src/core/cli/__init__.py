"""Command-line tools: the operator command ``pilotwms`` and helpers shared by user commands.

>>> from core.cli.common import EXIT_ERROR
>>> EXIT_ERROR
2
"""
