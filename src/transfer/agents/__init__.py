"""Agents of the transfer system (``pilotwms agent TransferAgent``)."""
