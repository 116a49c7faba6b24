"""COMDIRAC-style user commands of the WMS: ``dsub``, ``dstat``, ``dkill``, ``dlogging``,
``doutput``, ``dinput``. Each module has ``main(argv=None) -> int`` (the console script).

Example::

    python -m wms.cli.dsub /bin/echo hello      # 12
    python -m wms.cli.dstat -a 12
"""
