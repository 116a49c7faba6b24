"""Monitoring agents: accounting shipping and WMS/pilot history."""
