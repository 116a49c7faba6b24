"""DIRAC's job statuses, state machine and minor statuses, as data. ARGS: unused. RESULT:
{"states": [...], "final": [...], "really_final": [...], "next": {current: {candidate: next}},
"minor": {NAME: text}}."""

from DIRAC.WorkloadManagementSystem.Client import JobMinorStatus, JobStatus

states = list(JobStatus.JOB_STATES)
RESULT = {
    "states": states,
    "final": sorted(JobStatus.JOB_FINAL_STATES),
    "really_final": sorted(JobStatus.JOB_REALLY_FINAL_STATES),
    "next": {current: {candidate: JobStatus.JobsStateMachine(current).getNextState(candidate)
                       ["Value"] for candidate in states} for current in states},
    "minor": {name: value for name, value in vars(JobMinorStatus).items()
              if name.isupper() and isinstance(value, str)},
}
