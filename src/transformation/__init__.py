"""The transformation system: turns newly registered data into jobs or transfers (to come).

>>> import transformation
>>> transformation.__name__
'transformation'
"""
