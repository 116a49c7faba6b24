"""Pure WMS logic: no database, no network, no clock.

* :mod:`wms.logic.jdl`: the JDL (ClassAd-like) value model, parser and DIRAC-style writer;
* :mod:`wms.logic.parametric`: DIRAC's parametric job expansion (``Parameters`` & co.);
* :mod:`wms.logic.job_description`: validation and normalisation of a user JDL, and the
  processed JDL the server stores (``JobID``, ``Owner``, nested ``JobRequirements``);
* :mod:`wms.logic.states`: DIRAC's job statuses, minor statuses and transition table.

>>> from wms.logic.jdl import parse_jdl
>>> parse_jdl('[ Executable = "echo"; ]').get_str("Executable")
'echo'
"""
