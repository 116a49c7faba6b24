"""Logic of the DataManagement system: plain functions, dependencies passed in."""
