"""The WorkloadManagement services: thin RPC handlers over :mod:`wms.logic`.

>>> from wms.service.job_manager import JobManagerService
>>> JobManagerService.path()
'WorkloadManagement/JobManager'
"""
