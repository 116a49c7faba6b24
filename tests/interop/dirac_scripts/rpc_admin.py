"""The administrators' and pilots' side through DIRAC's own client classes (a group with
JobAdministrator, Operator, GenericPilot): matcher, state updates, pilots, resource status.
ARGS: {"ids": {...} from rpc_user.py}. RESULT: {call label: {"OK", "Value" | "Message"}}."""

from DIRAC.ResourceStatusSystem.Client.ResourceStatus import ResourceStatus
from DIRAC.ResourceStatusSystem.Client.ResourceStatusClient import ResourceStatusClient
from DIRAC.ResourceStatusSystem.Client.SiteStatus import SiteStatus
from DIRAC.WorkloadManagementSystem.Client.JobManagerClient import JobManagerClient
from DIRAC.WorkloadManagementSystem.Client.JobStateUpdateClient import JobStateUpdateClient
from DIRAC.WorkloadManagementSystem.Client.MatcherClient import MatcherClient
from DIRAC.WorkloadManagementSystem.Client.PilotManagerClient import PilotManagerClient

ARGS = globals()["ARGS"]
ids = ARGS["ids"]
RESULT = {}


def rec(label, reply):
    RESULT[label] = ({"OK": True, "Value": reply["Value"]} if reply["OK"]
                     else {"OK": False, "Message": reply["Message"]})
    return reply.get("Value")


resource = {"Site": "LCG.Nowhere.org", "GridCE": "ce.nowhere.org", "CPUTime": 86400,
            "Setup": "pilotwms", "ReleaseVersion": "9.1.22", "PilotReference": "tour://p1",
            "OwnerGroup": "demo_user"}
matcher = MatcherClient()
rec("Matcher.getActiveTaskQueues", matcher.getActiveTaskQueues())
rec("Matcher.getMatchingTaskQueues", matcher.getMatchingTaskQueues(resource))
pilots = PilotManagerClient()
rec("PilotManager.addPilotReferences", pilots.addPilotReferences(
    ["tour://p1"], "demo_pilot", "Local", {}, "LCG.Nowhere.org", "ce.nowhere.org"))
match = rec("Matcher.requestJob", matcher.requestJob(resource))
job = int(match["JobID"]) if match else ids["three"]
jsu = JobStateUpdateClient()
rec("JobStateUpdate.setJobStatus", jsu.setJobStatus(job, "Running", "Application", "tour"))
rec("JobStateUpdate.setJobApplicationStatus", jsu.setJobApplicationStatus(job, "busy", "tour"))
rec("JobStateUpdate.setJobParameter", jsu.setJobParameter(job, "TourParam", "1"))
rec("JobStateUpdate.setJobParameters", jsu.setJobParameters(job, [["A", "1"], ["B", "2"]]))
rec("JobStateUpdate.setJobsParameter", jsu.setJobsParameter({job: ["C", "3"]}))
rec("JobStateUpdate.setJobAttribute", jsu.setJobAttribute(job, "ApplicationStatus", "attr"))
rec("JobStateUpdate.setJobAttribute(refused)", jsu.setJobAttribute(job, "Owner", "mallory"))
rec("JobStateUpdate.setJobSite", jsu.setJobSite(job, "LCG.Nowhere.org"))
rec("JobStateUpdate.sendHeartBeat", jsu.sendHeartBeat(job, {"CPUConsumed": 1.0}, {}))
rec("JobStateUpdate.setJobStatusBulk", jsu.setJobStatusBulk(
    job, {"2030-01-01 00:00:00": {"Status": "Done", "MinorStatus": "Execution Complete",
                                  "Source": "tour"}}))
rec("PilotManager.setPilotStatus", pilots.setPilotStatus("tour://p1", "Running"))
rec("PilotManager.getPilotInfo", pilots.getPilotInfo("tour://p1"))
rec("PilotManager.selectPilots", pilots.selectPilots({"Status": "Running"}))
rec("PilotManager.getPilotSummary", pilots.getPilotSummary())
jm = JobManagerClient()
rec("JobManager.resetJob", jm.resetJob(ids["one"]))   # Failed (no input data): reset
rec("JobManager.removeJob", jm.removeJob([ids["bulk"][1]]))
rec("ResourceStatus.getElementStatus", ResourceStatus().getElementStatus(
    ["DIRAC-USER", "ProductionSandboxSE", "CLOSED-SE"], "StorageElement"))
rec("ResourceStatus.getElementStatus(CE)", ResourceStatus().getElementStatus(
    "localhost", "ComputingElement"))
rec("SiteStatus.getSiteStatuses", SiteStatus().getSiteStatuses(["Demo.Local.site"]))
rec("ResourceStatusClient.addOrModifyStatusElement", ResourceStatusClient()
    .addOrModifyStatusElement("Resource", "Status", name="DIRAC-USER",
                              statusType="ReadAccess", status="Banned"))
RESULT["job"] = job
