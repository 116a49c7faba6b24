"""Monitoring rules: accounting records and buckets, history snapshots, reports, plots."""
