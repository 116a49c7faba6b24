"""pilotwms workload management: jobs, task queues, matching and pilots.

The pure logic (JDL parsing and writing, parametric expansion, job description validation and
the job state machine) lives in :mod:`wms.logic`; it touches neither a database nor the network.

>>> import wms
>>> wms.__name__
'wms'
"""
