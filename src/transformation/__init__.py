"""The transformation and production systems: catalog data turned into jobs and data
operations without anyone submitting them by hand (DIRAC's TransformationSystem and
ProductionSystem). Layout: ``db/`` -> ``logic/`` -> ``service/``, ``client.py``, ``agents/``,
``cli/``, ``plugins/``; see docs/transformations.md."""
