"""``WorkloadManagement/QueueMonitoring``: the configured queues, what they offer and how busy
they are (``dqueues``, ECaccess's ``ecaccess-queue-list``).

``getQueues(filters)`` (filters: ``Site``, ``Tag``) answers one entry per queue: its declared
capacity (:meth:`wms.logic.capacity.QueueCapacity.describe`), ``SiteMask`` (Active, Banned,
... ; "Unknown" when never set), ``WaitingJobs`` (waiting jobs its pilots could take, by the
matcher's own rules), ``RunningJobs`` and ``MatchedJobs`` (at the site), and ``Pilots``
(status -> count for the queue).

Example (wire)::

    args = '[{"Tag": "GPU"}]'   # -> [{"Site": ..., "Queue": ..., "NumberOfGPUs": 2, ...}]
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from core.exceptions import InvalidArgumentError
from core.in_values import in_values
from core.rpc.service import Call, Service, rpc_method
from wms.db import site_mask as mask_db
from wms.db.pilot_tables import pilot_agents
from wms.db.tables import jobs
from wms.logic import capacity, matching
from wms.service.common import SYSTEM
from wms.service.wiring import engine


class QueueMonitoringService(Service):
    system = SYSTEM
    name = "QueueMonitoring"

    @rpc_method("getQueues", rights="authenticated")
    def get_queues(self, call: Call, filters: dict[str, str | None] | None = None
                   ) -> list[dict[str, Any]]:
        flt = dict(filters or {})
        unknown = set(flt) - {"Site", "Tag"}
        if unknown:
            raise InvalidArgumentError(f"unknown filters: {', '.join(sorted(unknown))}")
        queues = capacity.select_queues(capacity.queues_of(self.ctx.config),
                                        site=flt.get("Site") or None, tag=flt.get("Tag") or None)
        eng = engine(self.ctx)
        settings = matching.MatchSettings.from_config(self.ctx.config)
        sites = sorted({q.site for q in queues})
        with eng.connect() as conn:
            mask = mask_db.site_statuses(conn, sites)
            counts: dict[tuple[str, str], int] = {}
            if sites:
                query = (sa.select(jobs.c.site, jobs.c.status, sa.func.count())
                         .where(in_values(jobs.c.site, sites),
                                jobs.c.status.in_(["Running", "Matched"]))
                         .group_by(jobs.c.site, jobs.c.status))
                counts = {(s, st): int(n) for s, st, n in conn.execute(query)}
            pilots: dict[tuple[str, str, str], dict[str, int]] = {}
            if sites:
                query = (sa.select(pilot_agents.c.site, pilot_agents.c.ce, pilot_agents.c.queue,
                                   pilot_agents.c.status, sa.func.count())
                         .where(in_values(pilot_agents.c.site, sites),
                                pilot_agents.c.status.in_(["Submitted", "Waiting", "Running"]))
                         .group_by(pilot_agents.c.site, pilot_agents.c.ce, pilot_agents.c.queue,
                                   pilot_agents.c.status))
                for s, ce, qn, st, n in conn.execute(query):
                    pilots.setdefault((s, ce, qn), {})[st] = int(n)
        scope = matching.MatchScope(call.identity.vo) if call.identity.vo else None
        out = []
        for q in queues:
            tqs = matching.matching_task_queues(eng, capacity.queue_resource(q),
                                                settings=settings, scope=scope)
            entry = q.describe()
            entry.update({
                "SiteMask": mask.get(q.site, "Unknown"),
                "WaitingJobs": sum(int(t.get("Jobs", 0)) for t in tqs.values()),
                "RunningJobs": counts.get((q.site, "Running"), 0),
                "MatchedJobs": counts.get((q.site, "Matched"), 0),
                "Pilots": pilots.get((q.site, q.ce, q.queue), {})})
            out.append(entry)
        return out
