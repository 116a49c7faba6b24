"""``SiteDirector``: keeps every configured queue fed with pilots.

Each cycle, for each queue of ``Resources.Sites.<site>.CEs.<ce>.Queues`` that is this
instance's (several directors split the queues):

1. asks the CE for the status of the queue's active pilots, records changes, and stores the
   output of pilots that ended;
2. unless the queue is backing off after a failed submission, counts the waiting jobs it
   could run (the matcher's own task-queue filter), and submits
   :func:`~wms.logic.site_director.pilots_to_submit` pilots, each with its own stamp (the
   name the pilot reports) and a fresh pilot token of ``Operations.Pilot.User``/``Group``.

Run it with ``pilotwms agent SiteDirector --config config.yaml``.

Example::

    >>> SiteDirector.name
    'SiteDirector'
"""

from __future__ import annotations

import logging
import tempfile
import time
import uuid
import zlib
from pathlib import Path

from core.agent import Agent
from core.config.schema import CEConfig, Config, QueueConfig
from core.db import write_transaction
from core.exceptions import ConfigError, PilotWMSError
from core.security.tokens import TokenIssuer
from pilot.build import build as build_pilot
from wms.ce.base import ComputingElement, PilotStatus, ce_class
from wms.db import pilots as pilots_db
from wms.logic import matching, pilots
from wms.logic.site_director import (
    ca_bundle,
    pilot_identity,
    pilot_script,
    pilots_to_submit,
    queue_resource,
)

log = logging.getLogger("pilotwms.agents.site_director")


class SiteDirector(Agent):
    name = "SiteDirector"
    period = 30.0

    def __init__(self, config: Config, **kwargs: object) -> None:
        super().__init__(config, **kwargs)  # type: ignore[arg-type]
        _user, group, vo = pilot_identity(config)
        if config.auth.signing is None:
            raise ConfigError("Auth.Signing is needed: the site director issues pilot tokens")
        self.group = group
        self.vo = vo
        self.issuer = TokenIssuer(config.auth.signing)
        ca_dir = config.server.ca_dir
        if ca_dir is None:
            raise ConfigError("Server.CADir is needed: pilots carry the CA certificates")
        self.cas = ca_bundle(ca_dir)
        with tempfile.TemporaryDirectory() as tmp:
            self.zipapp = build_pilot(Path(tmp) / "pilot.pyz", compact=True).read_bytes()
        self.urls = config.operations.pilot.urls or [f"https://{config.server.host}:{config.server.port}"]
        self._ces: dict[tuple[str, str], ComputingElement] = {}
        self._backoff: dict[tuple[str, str, str], float] = {}

    def _ce(self, site: str, name: str, conf: CEConfig) -> ComputingElement:
        key = (site, name)
        if key not in self._ces:
            self._ces[key] = ce_class(conf.ce_type)(name, conf.settings)
        return self._ces[key]

    def queues(self) -> list[tuple[str, str, CEConfig, str, QueueConfig]]:
        return [(site, ce_name, ce_conf, q_name, q)
                for site, site_conf in sorted(self.config.resources.sites.items())
                for ce_name, ce_conf in sorted(site_conf.ces.items())
                for q_name, q in sorted(ce_conf.queues.items())
                if not ce_conf.push_mode]  # push-mode CEs get jobs from the PushJobAgent

    def run_once(self) -> bool:
        for site, ce_name, ce_conf, q_name, queue in self.queues():
            if not self.mine(zlib.crc32(f"{site}/{ce_name}/{q_name}".encode())):
                continue
            try:
                ce = self._ce(site, ce_name, ce_conf)
                self.update_pilots(ce, site, ce_name, q_name)
                self.feed(ce, site, ce_name, q_name, queue)
            except PilotWMSError as exc:
                log.error("%s/%s/%s: %s", site, ce_name, q_name, exc)
        return True

    def update_pilots(self, ce: ComputingElement, site: str, ce_name: str, q_name: str) -> None:
        engine = self.engine()
        with engine.connect() as conn:
            active = pilots_db.pilots_of_queue(conn, site, ce_name, q_name,
                                               list(pilots.ACTIVE_PILOT))
        if not active:
            return
        finished = []
        for ref, status in ce.status(list(active)).items():
            new = str(status)
            if new == "Submitted" or new == active[ref]:
                continue
            if active[ref] == "Running" and new == "Waiting":
                continue  # the pilot registered before the batch system noticed
            pilots.set_status(engine, [ref], new)
            if PilotStatus(new).is_final:
                out, err = ce.output(ref) if new != "Deleted" else ("", "")
                with write_transaction(engine) as conn:
                    pilots_db.store_output(conn, ref, out, err)
                finished.append(ref)
        if finished:  # output kept here: the CE may forget them (files, job dirs, VMs)
            try:
                ce.cleanup(finished)
            except PilotWMSError as exc:  # a leftover on the CE, not a lost pilot
                log.warning("%s/%s/%s: cleanup of %d pilots failed: %s", site, ce_name,
                            q_name, len(finished), exc)

    def feed(self, ce: ComputingElement, site: str, ce_name: str, q_name: str,
             queue: QueueConfig) -> int:
        key = (site, ce_name, q_name)
        if self._backoff.get(key, 0.0) > time.monotonic():
            return 0
        engine = self.engine()
        settings = matching.MatchSettings.from_config(self.config)
        tqs = matching.matching_task_queues(engine, queue_resource(site, ce_name, q_name,
                                                                   queue),
                                            settings=settings,
                                            scope=matching.MatchScope(self.vo))
        waiting_jobs = sum(int(tq.get("Jobs", 0)) for tq in tqs.values())
        with engine.connect() as conn:
            mine = pilots_db.pilots_of_queue(conn, site, ce_name, q_name,
                                             list(pilots.ACTIVE_PILOT))
        waiting = sum(1 for s in mine.values() if s in ("Submitted", "Waiting"))
        count = pilots_to_submit(queue, waiting_jobs=waiting_jobs, waiting_pilots=waiting,
                                 active_pilots=len(mine))
        submitted = 0
        for _ in range(count):
            stamp = uuid.uuid4().hex
            try:
                refs = ce.submit(self.script(site, ce_name, q_name, queue, stamp), 1,
                                 queue=q_name, processors=queue.number_of_processors,
                                 wall_seconds=queue.max_wall_time or None,
                                 memory_mb=queue.max_ram or None,
                                 gpus=queue.number_of_gpus, gpu_model=queue.gpu_model)
            except PilotWMSError as exc:
                minutes = self.config.operations.pilot.failing_queue_backoff_minutes
                self._backoff[key] = time.monotonic() + 60 * minutes
                log.error("%s/%s/%s: submission failed, leaving it for %.0f min: %s", site,
                          ce_name, q_name, minutes, exc)
                break
            pilots.add_pilots(engine, refs, vo=self.vo, owner_group=self.group,
                              grid_type=type(ce).__name__.removesuffix("ComputingElement"),
                              site=site, ce=ce_name, queue=q_name,
                              stamps={ref: stamp for ref in refs})
            submitted += len(refs)
        if submitted:
            log.info("%s/%s/%s: %d pilot(s) for %d waiting job(s)", site, ce_name, q_name,
                     submitted, waiting_jobs)
        return submitted

    def script(self, site: str, ce_name: str, q_name: str, queue: QueueConfig,
               stamp: str) -> str:
        conf = self.config.operations.pilot
        token = self.issuer.issue(conf.user, group=self.group, vo=self.vo,
                                  lifetime=conf.token_lifetime)
        args = [f"--url={','.join(self.urls)}", f"--site={site}", f"--ce={ce_name}",
                f"--queue={q_name}", f"--pilot-reference={stamp}",
                f"--max-failed-matches={conf.max_failed_matches}", f"--poll={conf.poll}",
                f"--heartbeat={conf.heartbeat}",
                f"--processors={queue.number_of_processors}"]
        if queue.max_wall_time:
            args.append(f"--max-time={queue.max_wall_time}")
        if queue.max_ram:
            args.append(f"--max-ram={queue.max_ram}")
        if queue.platform:
            args.append(f"--platform={queue.platform}")
        if queue.whole_node:
            args.append("--whole-node")
        if queue.number_of_gpus and queue.gpu_model:
            # the model of allocated GPUs that the node cannot name (no nvidia-smi)
            args.append(f"--gpu-model={queue.gpu_model}")
        args += [f"--tag={t}" for t in queue.tags]
        args += [f"--required-tag={t}" for t in queue.required_tags]
        return pilot_script(zipapp=self.zipapp, token=token, cas=self.cas, args=args,
                            python=conf.python)

    def run(self, *, once: bool = False) -> None:
        try:
            super().run(once=once)
        finally:
            for ce in self._ces.values():
                ce.close()
