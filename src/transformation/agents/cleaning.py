"""``TransformationCleaningAgent``: transformations in ``Cleaning`` lose their jobs (killed
and deleted), requests (cancelled), outputs (when the additional parameter
``RemoveOutputs`` is true: a ``RemoveFile`` request for every file under the output
directory), files and tasks, then become ``Cleaned``.

Run: ``pilotwms agent TransformationCleaningAgent --config server.yaml``.

Example::

    >>> TransformationCleaningAgent.name, TransformationCleaningAgent.period
    ('TransformationCleaningAgent', 60.0)
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy.engine import Row

from core.ids import as_id
from core.security.identity import Identity
from dms.db import changes as dms_changes
from dms.db import rms as rms_db
from dms.logic.rms import parse_request
from transformation.agents.base import TransformationAgentBase
from transformation.logic import cleaning, submit
from transformation.logic.transformations import parameters_of
from wms.logic import job_manager
from wms.service.common import dequeue

log = logging.getLogger("pilotwms.agents.cleaning")
ADMIN = Identity(auth_method="x509", username="TransformationCleaning", group="",
                 properties=frozenset({"JobAdministrator"}), valid_dn=True, valid_group=True)


class TransformationCleaningAgent(TransformationAgentBase):
    name = "TransformationCleaningAgent"
    period = 60.0

    def run_once(self) -> bool:
        busy = False
        for trans in self.transformations(cleaning.CLEANABLE):
            kind = self.settings.kind_of(trans.type)
            remove = bool(parameters_of(self.ts(), trans.transformation_id).get(
                "RemoveOutputs"))
            result = cleaning.clean(
                self.ts(), trans.transformation_id,
                stop=functools.partial(self._stop_tasks, kind),
                remove_outputs=functools.partial(self._remove_outputs, trans) if remove
                else None)
            if result:
                busy = True
                log.info("transformation %d cleaned: %s", trans.transformation_id, result)
        return not busy

    def _stop_tasks(self, kind: str | None, ids: Sequence[str]) -> None:
        numbers = [n for n in map(as_id, ids) if n is not None]
        if kind == "Request":
            engine = self.engine("RequestManagement")
            for rid in numbers:
                rms_db.cancel(engine, rid)
            return
        engine = self.engine("WorkloadManagement")
        for start in range(0, len(numbers), 1000):
            job_manager.delete_jobs(engine, ADMIN, numbers[start:start + 1000],
                                    dequeue=dequeue)

    def _remove_outputs(self, trans: Row[Any]) -> int:
        """A RemoveFile request (owned by the author) for the files under the outputs."""
        view = self.catalog()
        base = submit.output_base(self.settings, trans.vo, trans.transformation_id)
        dir_id = view.dir_id(base)
        if dir_id is None:
            return 0
        with view.engine.connect() as conn:
            ids = dms_changes.files_below(conn, dir_id, 0, 10_000_000)
        lfns = sorted(view.lfns(ids).values())
        for start in range(0, len(lfns), 10_000):
            part = lfns[start:start + 10_000]
            request = parse_request({
                "RequestName": f"{trans.transformation_id:08d}_cleaning",
                "Operations": [{"Type": "RemoveFile", "Files": [{"LFN": x} for x in part]}]},
                trans.author, trans.author_group, trans.vo)
            rms_db.insert_request(self.engine("RequestManagement"), request)
        return len(lfns)
