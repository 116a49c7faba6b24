"""Helpers for the test suite: real servers (MariaDB, pilotwms) started and stopped by tests."""
