"""Data management: file catalog, storage elements, data manager (built by the DMS issue).

>>> import dms
>>> dms.__name__
'dms'
"""
