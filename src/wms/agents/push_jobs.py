"""``PushJobAgent``: push mode, for sites whose worker nodes cannot reach the server.

For every queue of a CE with ``PushMode: true`` (``Resources.Sites.<s>.CEs.<ce>``; the CE is a
``Slurm`` CE, or an ``SSH`` CE with ``BatchSystem: Slurm``), each cycle:

1. **follow** the queue's pushed jobs (those this instance handles: :meth:`Agent.mine` of the
   job ID): one ``squeue``/``sacct`` for all; the job goes Running/"Application" when its
   batch job starts; heartbeats with the worker node's CPU/memory figures (``usage.json``)
   every ``Operations.PushMode.Heartbeat`` seconds, also while queued; a ``Kill`` in the reply
   is ``scancel``; a finished batch job's directory comes back, the job goes Completing, and
   the pilot's wrapper reports the end (exit code, output sandbox, Done/Failed);
2. **fill** the queue (when :meth:`Agent.mine` of the queue's key): ``requestJob`` to the
   Matcher with the queue's resource description (the one its pilots would send), as a pilot
   of ``Operations.Pilot.User``; each match is recorded in ``push_jobs`` and shipped: input
   sandboxes downloaded here, the job directory (inputs, ``job.json``, the standard-library
   :mod:`pilot.batch_wrapper`) copied to the CE's ``WorkDir/push/<job>`` and ``sbatch``-ed.
   The queue's ``MaxWaitingPilots``/``MaxTotalPilots``/``MaxPilotsToSubmit`` bound the jobs
   queued / in flight / matched per cycle.

The job-scoped credential never leaves the agent: every call about a job uses the credential a
pilot would get with the match (the owner's, scoped to ``job:<id>``), minted from
``Auth.Signing``. The phase of each job is in the
database (:mod:`wms.db.push_jobs`), so a restarted agent, or a peer, carries on where it was;
jobs that ended meanwhile on the server (killed, rescheduled by the stalled-job agent, removed)
have their batch job cancelled and their row forgotten.

Run it with ``pilotwms agent PushJobAgent --config config.yaml``.

Example::

    >>> PushJobAgent.name
    'PushJobAgent'
"""

from __future__ import annotations

import json
import logging
import shutil
import tarfile
import tempfile
import time
import zlib
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from core.agent import Agent
from core.config.schema import CEConfig, Config, QueueConfig
from core.db import utcnow, write_transaction
from core.exceptions import ConfigError, PilotWMSError
from core.security.tokens import TokenIssuer
from pilot.payload import PayloadRefusedError
from pilot.rpc import RpcClient, RpcError
from pilot.wrapper import STATE, WrapperOptions
from wms.ce.base import CEError, ComputingElement, PilotStatus, ce_class
from wms.ce.slurm import SlurmComputingElement
from wms.ce.ssh import SSHComputingElement
from wms.db import jobs as jobs_db
from wms.db import push_jobs as push_db
from wms.logic.job_policy import JOB_CREDENTIAL_PROPERTIES
from wms.logic.push import META, PushedJob, batch_script, unpack
from wms.logic.site_director import pilot_identity, pilots_to_submit, queue_resource

__all__ = ["PushJobAgent", "slurm_of"]

log = logging.getLogger("pilotwms.agents.push_jobs")

MATCHER = "WorkloadManagement/Matcher"
#: a job whose shipping failed this often fails with :data:`SHIP_FAILED`
MAX_SHIP_ATTEMPTS = 3
SHIP_FAILED = "Submission To Batch System Failed"
NO_MATCH = 1510
#: the server statuses in which a pushed job is still ours to follow
OURS = ("Matched", "Running", "Completing", "Stalled")
_UNPACK = 'rm -rf -- "$1" && mkdir -p -- "$1" && base64 -d | tar -xzf - -C "$1"'
_PACK = 'cd -- "$1" && tar -czf - --exclude="./{meta}" . | base64'.format(meta=META)


def slurm_of(ce: ComputingElement) -> SlurmComputingElement:
    """The Slurm CE behind a push-mode CE (itself, or an SSH CE's ``BatchSystem: Slurm``)."""
    if isinstance(ce, SlurmComputingElement):
        return ce
    if isinstance(ce, SSHComputingElement) and ce.slurm is not None:
        return ce.slurm
    raise ConfigError(f"CE {ce.name}: push mode needs a Slurm CE or an SSH CE with "
                      "BatchSystem: Slurm")


def job_gpus(jdl: Mapping[str, Any]) -> int:
    """The GPUs a pushed job asks Slurm for (``NumberOfGPUs``/``GPUs`` of its JDL).

    >>> job_gpus({"NumberOfGPUs": 2}), job_gpus({"GPUs": "1"}), job_gpus({})
    (2, 1, 0)
    """
    for key in ("NumberOfGPUs", "GPUs"):
        try:
            value = int(jdl.get(key) or 0)
        except (TypeError, ValueError):
            continue
        if value > 0:
            return value
    return 0


class PushJobAgent(Agent):
    name = "PushJobAgent"
    period = 10.0

    def __init__(self, config: Config, **kwargs: object) -> None:
        super().__init__(config, **kwargs)  # type: ignore[arg-type]
        self.user, self.group, self.vo = pilot_identity(config)
        if config.auth.signing is None:
            raise ConfigError("Auth.Signing is needed: the push agent issues its tokens")
        if config.server.ca_dir is None:
            raise ConfigError("Server.CADir is needed to verify the server")
        self.issuer = TokenIssuer(config.auth.signing)
        self.ca_dir = str(config.server.ca_dir)
        pilot_conf = config.operations.pilot
        self.urls = pilot_conf.urls or [f"https://{config.server.host}:{config.server.port}"]
        self.opts = config.operations.push_mode
        self.staging = str(self.opts.staging_dir or tempfile.mkdtemp(prefix="pwpush-"))
        self._ces: dict[tuple[str, str], SlurmComputingElement] = {}
        self._bases: dict[tuple[str, str], str] = {}
        self._rpc: RpcClient | None = None
        self._rpc_born = 0.0
        self._backoff: dict[tuple[str, str, str], float] = {}
        #: batch references this instance submitted (for logs and tests)
        self.submitted: list[str] = []
        for site, ce_name, ce_conf, _q_name, _queue in self.queues():
            self.batch(site, ce_name, ce_conf)  # a CE that cannot push is a ConfigError now

    # -- identities ---------------------------------------------------------------------------

    def rpc(self) -> RpcClient:
        """A client speaking as a pilot of the site (token renewed at half its life)."""
        lifetime = self.config.operations.pilot.token_lifetime
        now = utcnow().timestamp()
        if self._rpc is None or now - self._rpc_born > lifetime / 2:
            token = self.issuer.issue(self.user, group=self.group, vo=self.vo,
                                      lifetime=lifetime)
            self._rpc = RpcClient(self.urls, token=token, ca_dir=self.ca_dir, retries=2)
            self._rpc_born = now
        return self._rpc

    def job_rpc(self, job_id: int) -> RpcClient:
        """A client acting on ``job_id`` only, with the credential the Matcher gives a pilot
        (``JobToken``): the job owner's, scoped to the job, with the owner's ordinary
        properties only. Minted here (not stored) so that a restarted agent has it too."""
        with self.engine().connect() as conn:
            row = jobs_db.status_of(conn, [job_id]).get(job_id)
        if row is None:
            raise ValueError(f"job {job_id} does not exist")
        token = self.issuer.issue(row.owner, group=row.owner_group, vo=row.vo, lifetime=3600,
                                  scopes=[f"job:{job_id}"],
                                  extra_claims={"properties": list(JOB_CREDENTIAL_PROPERTIES)})
        return self.rpc().with_token(token)

    # -- configuration ------------------------------------------------------------------------

    def queues(self) -> list[tuple[str, str, CEConfig, str, QueueConfig]]:
        return [(site, ce_name, ce_conf, q_name, q)
                for site, site_conf in sorted(self.config.resources.sites.items())
                for ce_name, ce_conf in sorted(site_conf.ces.items()) if ce_conf.push_mode
                for q_name, q in sorted(ce_conf.queues.items())]

    def batch(self, site: str, ce_name: str, conf: CEConfig) -> SlurmComputingElement:
        key = (site, ce_name)
        if key not in self._ces:
            self._ces[key] = slurm_of(ce_class(conf.ce_type)(ce_name, conf.settings))
        return self._ces[key]

    def base_dir(self, site: str, ce_name: str, slurm: SlurmComputingElement) -> str:
        """``<WorkDir>/push`` on the batch side, created and absolute."""
        key = (site, ce_name)
        if key not in self._bases:
            res = slurm.runner.run(
                ["/bin/sh", "-c", 'mkdir -p -- "$1" && cd -- "$1" && pwd -P', "sh",
                 f"{slurm.commands.work_dir}/push"], check=True)
            self._bases[key] = res.stdout.strip()
        return self._bases[key]

    # -- the cycle ----------------------------------------------------------------------------

    def run_once(self) -> bool:
        for site, ce_name, ce_conf, q_name, queue in self.queues():
            try:
                slurm = self.batch(site, ce_name, ce_conf)
                self.follow(slurm, site, ce_name, q_name)
                if self.mine(zlib.crc32(f"{site}/{ce_name}/{q_name}".encode())):
                    self.fill(slurm, site, ce_name, q_name, queue)
            except (PilotWMSError, RpcError, OSError) as exc:
                log.error("%s/%s/%s: %s", site, ce_name, q_name, exc)
        return True

    def fill(self, slurm: SlurmComputingElement, site: str, ce_name: str, q_name: str,
             queue: QueueConfig) -> int:
        """Match and ship up to the queue's limits; the number of jobs matched."""
        key = (site, ce_name, q_name)
        if self._backoff.get(key, 0.0) > time.monotonic():
            return 0
        engine = self.engine()
        with engine.connect() as conn:
            phases = push_db.in_flight(conn, site, ce_name, q_name)
        waiting = phases.get("New", 0) + phases.get("Submitted", 0)
        count = pilots_to_submit(queue, waiting_jobs=queue.max_pilots_to_submit + waiting,
                                 waiting_pilots=waiting, active_pilots=sum(phases.values()))
        resource = queue_resource(site, ce_name, q_name, queue)
        matched = 0
        for _ in range(count):
            try:
                match = self.rpc().call(MATCHER, "requestJob", resource)
            except RpcError as exc:
                if exc.errno != NO_MATCH:
                    raise
                break
            job_id = int(match["JobID"])
            matched += 1
            with write_transaction(engine) as conn:
                push_db.add_job(conn, job_id, site, ce_name, q_name, agent=self.instance,
                                now=utcnow())
            log.info("%s/%s/%s: matched job %d", site, ce_name, q_name, job_id)
            try:
                self.ship(slurm, site, ce_name, q_name, queue, job_id)
            except (PilotWMSError, RpcError, OSError):
                minutes = self.config.operations.pilot.failing_queue_backoff_minutes
                self._backoff[key] = time.monotonic() + 60 * minutes
                log.error("%s/%s/%s: shipping failed, no matching for %.0f min", site, ce_name,
                          q_name, minutes)
                raise
            self.beat()  # a long cycle must not look like a dead agent to the peers
        return matched

    def wrapper(self, job_id: int, site: str, ce_name: str, q_name: str,
                queue: QueueConfig) -> PushedJob:
        with self.engine().connect() as conn:
            jdl = jobs_db.jdls_of(conn, [job_id]).get(job_id, "")
        processors = queue.number_of_processors
        max_wall = float(queue.max_wall_time) if queue.max_wall_time else None
        opts = WrapperOptions(workdir=self.staging, processors=processors, max_wall=max_wall,
                              cpu_limit_factor=self.opts.cpu_limit_factor,
                              max_sandbox_mib=self.config.operations.max_sandbox_size_mib,
                              parameters={"Site": site, "GridCE": ce_name, "CEQueue": q_name},
                              log=lambda m: log.info("%s", m),
                              outage=0.0)  # the agent's next cycle retries, not one call
        return PushedJob({"JobID": job_id, "JDL": jdl}, self.job_rpc(job_id), opts)

    def ship(self, slurm: SlurmComputingElement, site: str, ce_name: str, q_name: str,
             queue: QueueConfig, job_id: int, *, recover: bool = False) -> None:
        """Prepare (reports, input sandboxes), copy the job directory, sbatch it."""
        job = self.wrapper(job_id, site, ce_name, q_name, queue)
        engine = self.engine()
        with write_transaction(engine) as conn:
            attempt = push_db.count_attempt(conn, job_id)
        if attempt > MAX_SHIP_ATTEMPTS:
            job.report("Failed", SHIP_FAILED)
            job._send_log()
            with write_transaction(engine) as conn:
                push_db.forget(conn, job_id)
            return
        try:
            if not job.prepare():
                job._send_log()
                with write_transaction(engine) as conn:
                    push_db.forget(conn, job_id)
                return
            remote = f"{self.base_dir(site, ce_name, slurm)}/{job_id}"
            name = f"push-{job_id}"
            if recover:  # an earlier attempt may have reached sbatch before a crash
                slurm.runner.run(["scancel", f"--name={name}"])
            try:
                staged = job.stage(remote)
            except PayloadRefusedError as exc:  # a DIRAC workflow this site cannot run
                job.refuse(exc)
                job._send_log()
                with write_transaction(engine) as conn:
                    push_db.forget(conn, job_id)
                return
            slurm.runner.run(["/bin/sh", "-c", _UNPACK, "sh", remote], input=staged,
                             check=True)
            argv = slurm.commands.sbatch(queue=q_name, job_name=name,
                                         processors=queue.number_of_processors,
                                         wall_seconds=queue.max_wall_time or None,
                                         memory_mb=queue.max_ram or None,
                                         gpus=job_gpus(job.jdl))
            out = slurm.runner.run(argv, input=batch_script(remote, self.opts.python),
                                   check=True).stdout.strip().split(";")[0]
            if not out.isdigit():
                raise CEError(f"unexpected sbatch output {out!r}")
            ref = f"slurm://{slurm.host}/{out}"
        finally:
            shutil.rmtree(job.dir, ignore_errors=True)
        now = utcnow()
        with write_transaction(engine) as conn:
            won = push_db.set_phase(conn, job_id, "New", "Submitted", now=now, batch_ref=ref,
                                    remote_dir=remote, agent=self.instance,
                                    next_beat=now + timedelta(seconds=self.opts.heartbeat))
        if not won:  # a peer shipped it meanwhile: ours goes
            slurm.kill([ref])
            return
        self.submitted.append(ref)
        job.parameters({"BatchJobReference": ref, "PushModeAgent": self.instance})
        log.info("job %d: submitted as %s", job_id, ref)

    def follow(self, slurm: SlurmComputingElement, site: str, ce_name: str,
               q_name: str) -> None:
        engine = self.engine()
        with engine.connect() as conn:
            rows = [r for r in push_db.rows(conn, site, ce_name, q_name) if self.handles(r)]
            states = jobs_db.status_of(conn, [r.job_id for r in rows])
        if not rows:
            return
        queue = self.config.resources.sites[site].ces[ce_name].queues[q_name]
        refs = [r.batch_ref for r in rows if r.batch_ref]
        batch = slurm.status(refs) if refs else {}
        for row in rows:
            server = states.get(row.job_id)
            try:
                if server is None or server.status not in OURS:
                    self.drop(slurm, row, batch.get(row.batch_ref), "ended on the server")
                elif row.phase == "New":
                    self.ship(slurm, site, ce_name, q_name, queue, row.job_id, recover=True)
                else:
                    self.step(slurm, row, batch[row.batch_ref], queue)
            except (PilotWMSError, RpcError, OSError) as exc:
                log.error("job %d: %s", row.job_id, exc)

    def handles(self, row: push_db.PushRow) -> bool:
        """Whether this instance looks after ``row``: a job not yet shipped stays with the agent
        that matched it while that agent is alive; otherwise jobs are split by job ID."""
        if row.phase == "New":
            if row.agent == self.instance:
                return True
            if row.agent in self._peers:
                return False
        return self.mine(row.job_id)

    def step(self, slurm: SlurmComputingElement, row: push_db.PushRow, state: PilotStatus,
             queue: QueueConfig) -> None:
        """One look at a job in the batch system."""
        engine = self.engine()
        now = utcnow()
        if row.phase == "Killed":
            if state.is_final:
                self.drop(slurm, row, state, "killed")
            return
        if state.is_final:
            if row.phase == "Submitted":  # it started and ended between two looks
                self.job_rpc(row.job_id).call(STATE, "setJobStatus", row.job_id, "",
                                              "Application", "JobWrapper")
            self.collect(slurm, row, state, queue)
            return
        if state == PilotStatus.RUNNING and row.phase == "Submitted":
            with write_transaction(engine) as conn:
                moved = push_db.set_phase(conn, row.job_id, "Submitted", "Running", now=now)
            if moved:
                self.job_rpc(row.job_id).call(STATE, "setJobStatus", row.job_id, "",
                                              "Application", "JobWrapper")
        if row.next_beat > now:
            return
        usage = slurm.runner.read_file(f"{row.remote_dir}/{META}/usage.json")
        try:
            dynamic = json.loads(usage) if usage else {}
        except ValueError:
            dynamic = {}
        reply = self.job_rpc(row.job_id).call(STATE, "sendHeartBeat", row.job_id, dynamic, {})
        with write_transaction(engine) as conn:
            push_db.set_next_beat(conn, row.job_id,
                                  now + timedelta(seconds=self.opts.heartbeat))
        if isinstance(reply, dict) and "Kill" in reply:
            log.info("job %d: Kill from the server: scancel %s", row.job_id, row.batch_ref)
            slurm.kill([row.batch_ref])
            with write_transaction(engine) as conn:
                push_db.set_phase(conn, row.job_id, row.phase, "Killed", now=now)

    def collect(self, slurm: SlurmComputingElement, row: push_db.PushRow, state: PilotStatus,
                queue: QueueConfig) -> None:
        """The batch job ended: bring the directory back, report as the pilot would."""
        job = self.wrapper(row.job_id, row.site, row.ce, row.queue, queue)
        try:
            job.report("Completing", "Retrieving Outputs From Batch System")
            result: dict[str, Any] = {}
            try:
                packed = slurm.runner.run(["/bin/sh", "-c", _PACK, "sh", row.remote_dir],
                                          check=True).stdout
                unpack(packed, job.dir)
                job.relay_workflow_statuses()
                text = slurm.runner.read_file(f"{row.remote_dir}/{META}/result.json")
                result = json.loads(text) if text.strip() else {}
            except (CEError, OSError, ValueError, tarfile.TarError) as exc:
                job.log(f"cannot bring the job directory back: {exc}")
            batch_log, batch_err = slurm.output(row.batch_ref)
            job.lines += [f"batch job {row.batch_ref} ended {state}"]
            job.lines += (batch_log + batch_err).splitlines()[-200:]
            if result:
                job.parameters({"TotalCPUTime(s)": result.get("CPU", 0),
                                "WallClockTime(s)": result.get("Wall", 0),
                                "MaxRSS(kB)": result.get("MaxRSS", 0)})
                code, reason = result.get("ExitCode"), result.get("Reason")
            else:
                code, reason = None, f"Batch job {state} without a result"
            final = job.finish(code, reason)
            job._send_log()
            log.info("job %d: %s (batch job %s)", row.job_id, final, state)
        finally:
            shutil.rmtree(job.dir, ignore_errors=True)
        self.drop(slurm, row, state, "done")

    def drop(self, slurm: SlurmComputingElement, row: push_db.PushRow,
             state: PilotStatus | None, why: str) -> None:
        """Cancel what may still run, remove the remote files, forget the row."""
        if row.batch_ref:
            if state is not None and not state.is_final:
                slurm.kill([row.batch_ref])
                return  # the directory goes once the batch job has gone
            slurm.cleanup([row.batch_ref])
        if row.remote_dir:
            slurm.runner.run(["rm", "-rf", "--", row.remote_dir], check=True)
        with write_transaction(self.engine()) as conn:
            push_db.forget(conn, row.job_id)
        log.info("job %d: forgotten (%s)", row.job_id, why)

    def run(self, *, once: bool = False) -> None:
        try:
            super().run(once=once)
        finally:
            for ce in self._ces.values():
                ce.close()
            if self.opts.staging_dir is None:
                shutil.rmtree(self.staging, ignore_errors=True)

