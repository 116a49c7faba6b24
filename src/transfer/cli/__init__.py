"""Commands of the transfer system: ``dassoc``, ``dtransfer``, ``dpush`` and the operator's
``pilotwms mover`` / ``pilotwms transfer``."""
