"""pilotwms core: the shared framework of every system.

Subpackages: ``rpc`` (HTTPS services and client with DIRAC's envelope), ``security`` (X509,
proxies, tokens, identities and rights), ``config`` (the validated YAML configuration), ``db``
(SQLAlchemy engines and schema management) and ``cli`` (the ``pilotwms`` operator command).

>>> import core
>>> core.__name__
'core'
"""
