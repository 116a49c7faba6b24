"""The Monitoring system: accounting records, WMS/pilot history, component monitoring,
reports and plots (``Monitoring/Monitoring``, ``Accounting/ReportGenerator``, ``dacct``).

Layout: ``types`` (record types) · ``db`` (the two backends, SQL and OpenSearch, and the
state tables) · ``logic`` (records from the WMS, buckets, history snapshots, reports, plots) ·
``service`` · ``client`` · ``agents`` · ``cli``. The WMS never imports this package: it writes
an outbox row when a job ends and the accounting agent reads it (docs/monitoring.md).
"""
