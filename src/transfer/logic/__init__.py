"""Rules of the transfer system: plain functions and small classes, dependencies passed in."""
