"""WMS agents: loops that act on the database on their own (see :mod:`core.agent`).

>>> from wms.agents.stalled_jobs import StalledJobAgent
>>> StalledJobAgent.name
'StalledJobAgent'
"""
