"""Agents of the DataManagement and RequestManagement systems."""
