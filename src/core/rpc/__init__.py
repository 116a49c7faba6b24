"""DIRAC-compatible HTTPS RPC: wire encoding, services, the Tornado server and the client.

>>> from core.rpc.jencode import encode, decode
>>> decode(encode({"a": (1, 2)}))
{'a': [1, 2]}
"""
