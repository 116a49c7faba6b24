"""The pilot: a standard-library-only program that runs on worker nodes (built by the pilots
issue).

>>> import pilot
>>> pilot.__name__
'pilot'
"""
