"""``WorkloadManagement/WMSAdministrator``: the site mask.

* ``banSite(site, comment)`` / ``allowSite(site, comment)`` (Operator, SiteManager): set the
  site Banned / Active and log who did it and why;
* ``getSiteMask(status="Active")``: the sorted sites with that status;
* ``getSiteMaskStatus(sites=None)``: a site's status (one site given as a string; ``Unknown``
  for a site never set), or ``{site: status}`` for a list or all sites;
* ``getSiteMaskLogging(sites)``: ``{site: [(Status, UpdateTime, Author, Comment), ...]}``,
  oldest first (DIRAC's JobDB format);
* ``getJobPilotOutput(jobID)`` (where DIRAC 9's ``WMSAdministratorClient`` asks): the output
  of the last pilot that ran the job, as ``PilotManager.getJobPilotOutput``.

A Banned site never gets jobs from the matcher; a site never set is allowed unless the
Matcher's option ``UnknownSitesAllowed`` is false.

Example (wire)::

    requests.post(url + "/WorkloadManagement/WMSAdministrator", cert=admin_proxy,
                  data={"method": "banSite", "args": '["LCG.CERN.cern", "downtime"]'})
    # {"OK": true, "Value": null}
"""

from __future__ import annotations

from typing import Any

from core.db import utcnow, write_transaction
from core.exceptions import InvalidArgumentError
from core.rpc.service import Call, Service, rpc_method
from wms.db import site_mask as mask_db
from wms.logic import pilots
from wms.logic.job_policy import job_ids_argument

SYSTEM = "WorkloadManagement"
CHANGERS = ["Operator", "SiteManager"]


def _site(site: str) -> str:
    site = site.strip()
    if not site or len(site) > 128:
        raise InvalidArgumentError("site name must have 1 to 128 characters")
    return site


def _sites(sites: str | list[str]) -> list[str]:
    items = [sites] if isinstance(sites, str) else sites
    if not all(isinstance(s, str) for s in items):
        raise InvalidArgumentError("sites must be strings")
    return [_site(s) for s in items]


class WMSAdministratorService(Service):
    system = SYSTEM
    name = "WMSAdministrator"

    def _set(self, call: Call, site: str, status: str, comment: str) -> None:
        author = call.identity.username or call.identity.dn or "unknown"
        with write_transaction(self.ctx.engine(SYSTEM)) as conn:
            mask_db.set_site_status(conn, _site(site), status, author=author, comment=comment,
                                    now=utcnow())

    @rpc_method("banSite", rights=CHANGERS)
    def ban_site(self, call: Call, site: str, comment: str = "No comment") -> None:
        self._set(call, site, mask_db.BANNED, comment)

    @rpc_method("allowSite", rights=CHANGERS)
    def allow_site(self, call: Call, site: str, comment: str = "No comment") -> None:
        self._set(call, site, mask_db.ACTIVE, comment)

    @rpc_method("getSiteMask", rights="authenticated")
    def get_site_mask(self, call: Call, status: str = "Active") -> list[str]:
        with self.ctx.engine(SYSTEM).connect() as conn:
            return sorted(mask_db.site_statuses(conn, status=status or "Active"))

    @rpc_method("getSiteMaskStatus", rights="authenticated")
    def get_site_mask_status(self, call: Call, sites: str | list[str] | None = None) -> Any:
        with self.ctx.engine(SYSTEM).connect() as conn:
            if isinstance(sites, str):
                return mask_db.site_statuses(conn, [_site(sites)]).get(sites.strip(),
                                                                        "Unknown")
            return mask_db.site_statuses(conn, None if sites is None else _sites(sites))

    @rpc_method("getSiteMaskLogging", rights="authenticated")
    def get_site_mask_logging(self, call: Call, sites: str | list[str]
                              ) -> dict[str, list[tuple[Any, ...]]]:
        with self.ctx.engine(SYSTEM).connect() as conn:
            history = mask_db.site_logging(conn, _sites(sites))
        return {site: [(r["status"], r["update_time"], r["author"], r["comment"])
                       for r in records] for site, records in history.items()}

    @rpc_method("getJobPilotOutput", rights="authenticated")
    def get_job_pilot_output(self, call: Call, job_id: int | str) -> dict[str, str]:
        [jid] = job_ids_argument(job_id)
        return pilots.job_pilot_output(self.ctx.engine(SYSTEM), call.identity, jid)
