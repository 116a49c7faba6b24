"""Monitoring commands: ``dacct``."""
