"""The WMS database: tables and queries only, no rules (those live in ``wms.logic``).

>>> from wms.db.schema import WMS_SCHEMA
>>> WMS_SCHEMA.system
'WorkloadManagement'
"""
