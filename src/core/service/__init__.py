"""Services of the ``Framework`` system that every installation hosts.

>>> from core.service.registry import RegistryService
>>> RegistryService.path()
'Framework/Registry'
"""
