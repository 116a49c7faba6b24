"""``Accounting/ReportGenerator``: accounting reports and plots, DIRAC's service of that name
(``listUniqueKeyValues``, ``listReports``, ``getReport``, ``generatePlot``).

Example (wire)::

    {"method": "getReport", "args": '[{"typeName": "Job", "reportName": "NumberOfJobs",
      "startTime": ..., "endTime": ..., "condDict": {}, "grouping": "Site"}]'}
"""

from __future__ import annotations

from monitoring.service.common import ReportService


class ReportGeneratorService(ReportService):
    system = "Accounting"
    name = "ReportGenerator"
