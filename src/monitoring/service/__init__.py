"""Monitoring services: ``Monitoring/Monitoring`` and ``Accounting/ReportGenerator``."""
