"""A tour of the WMS, sandbox, catalog and request methods through DIRAC's own client classes,
as an ordinary user. ARGS: {"workdir": dir, "home": LFN directory}. RESULT: {call label:
{"OK": bool, "Value" | "Message"}}, plus "ids"."""

import os

from DIRAC.Core.Base.Client import Client
from DIRAC.RequestManagementSystem.Client.File import File
from DIRAC.RequestManagementSystem.Client.Operation import Operation
from DIRAC.RequestManagementSystem.Client.ReqClient import ReqClient
from DIRAC.RequestManagementSystem.Client.Request import Request
from DIRAC.Resources.Catalog.FileCatalogClient import FileCatalogClient
from DIRAC.WorkloadManagementSystem.Client.JobManagerClient import JobManagerClient
from DIRAC.WorkloadManagementSystem.Client.JobMonitoringClient import JobMonitoringClient
from DIRAC.WorkloadManagementSystem.Client.PilotManagerClient import PilotManagerClient
from DIRAC.WorkloadManagementSystem.Client.SandboxStoreClient import SandboxStoreClient
from DIRAC.WorkloadManagementSystem.Client.WMSAdministratorClient import WMSAdministratorClient

ARGS = globals()["ARGS"]
os.chdir(ARGS["workdir"])
HOME = ARGS["home"]
RESULT = {}


def rec(label, reply):
    RESULT[label] = ({"OK": True, "Value": reply["Value"]} if reply["OK"]
                     else {"OK": False, "Message": reply["Message"]})
    return reply.get("Value")


jm, mon = JobManagerClient(), JobMonitoringClient()
one = rec("JobManager.submitJob", jm.submitJob(
    '[ Executable = "/bin/echo"; Arguments = "tour"; JobName = "tour"; JobGroup = "g1";'
    ' Site = "LCG.Nowhere.org"; InputData = {"/demo/in1"}; ]'))
bulk = rec("JobManager.submitJob(parametric)", jm.submitJob(
    '[ Executable = "/bin/echo"; Arguments = "%s"; Parameters = {"a", "b"};'
    ' Site = "LCG.Nowhere.org"; ]'))
rec("JobManager.confirmBulkSubmission", jm.confirmBulkSubmission(bulk))
two = rec("JobManager.submitJob(2)", jm.submitJob(
    '[ Executable = "/bin/true"; Site = "LCG.Nowhere.org"; ]'))
three = rec("JobManager.submitJob(3)", jm.submitJob(
    '[ Executable = "/bin/true"; Site = "LCG.Nowhere.org"; JobName = "for-the-matcher"; ]'))
RESULT["ids"] = {"one": one, "bulk": bulk, "two": two, "three": three}

for name, args in (("getJobsStatus", [[one]]), ("getJobsStates", [[one]]),
                   ("getJobsMinorStatus", [[one]]), ("getJobsApplicationStatus", [[one]]),
                   ("getJobsSites", [[one]]), ("getJobSummary", [one]),
                   ("getJobsSummary", [[one]]), ("getJobAttributes", [one]),
                   ("getJobAttribute", [one, "JobGroup"]), ("getJobParameters", [[one]]),
                   ("getJobParameter", [one, "nothing"]), ("getJobLoggingInfo", [one]),
                   ("getJobJDL", [one, False]), ("getJobs", [{"JobGroup": "g1"}]),
                   ("getInputData", [one]), ("getJobHeartBeatData", [one])):
    rec(f"JobMonitoring.{name}", getattr(mon, name)(*args))

rec("JobManager.rescheduleJob", jm.rescheduleJob(two))
rec("JobManager.killJob", jm.killJob([bulk[0]]))
rec("JobManager.deleteJob", jm.deleteJob([bulk[1]]))

with open("sandbox.txt", "w") as stream:
    stream.write("sandbox content\n")
sb = SandboxStoreClient()
ref = rec("SandboxStore.uploadFilesAsSandbox", sb.uploadFilesAsSandbox(
    ["sandbox.txt"], assignTo={f"Job:{one}": "Input"}))
rec("SandboxStore.getSandboxesAssignedToEntity", Client(
    url="WorkloadManagement/SandboxStore").getSandboxesAssignedToEntity(f"Job:{one}"))
os.mkdir("down")
rec("SandboxStore.downloadSandboxForJob", sb.downloadSandboxForJob(one, "Input", "down"))
RESULT["downloaded"] = open("down/sandbox.txt").read()

rec("WMSAdministrator.getJobPilotOutput", WMSAdministratorClient().getJobPilotOutput(one))
rec("PilotManager.getPilots", PilotManagerClient().getPilots(one))

fc = FileCatalogClient()
f1 = f"{HOME}/tour/f1"
rec("FileCatalog.isOK", fc.isOK())
rec("FileCatalog.createDirectory", fc.createDirectory(f"{HOME}/tour"))
rec("FileCatalog.addFile", fc.addFile({f1: {"PFN": "", "Size": 3, "SE": "DIRAC-USER",
                                            "GUID": "TOUR-GUID-1", "Checksum": "0001"}}))
rec("FileCatalog.addReplica", fc.addReplica({f1: {"PFN": "", "SE": "OTHER-SE"}}))
for name, args in (("exists", [f1]), ("isFile", [f1]), ("isDirectory", [f"{HOME}/tour"]),
                   ("getFileMetadata", [f1]), ("getFileSize", [f1]), ("getReplicas", [f1]),
                   ("getDirectoryMetadata", [f"{HOME}/tour"]),
                   ("listDirectory", [f"{HOME}/tour"]),
                   ("getDirectorySize", [f"{HOME}/tour"]),
                   ("getDirectoryReplicas", [f"{HOME}/tour"]),
                   ("getPathPermissions", [[f1, f"{HOME}/tour/new"]]),
                   ("hasAccess", [[f1, "/demo"], "addFile"]),
                   ("getLFNForGUID", [["TOUR-GUID-1", "NO-SUCH-GUID"]]),
                   ("setMetadata", [f1, {"run": 7}]), ("getFileUserMetadata", [f1]),
                   ("findFilesByMetadata", [{"run": 7}, HOME]),
                   ("findFilesByMetadataDetailed", [{"run": 7}, HOME]),
                   ("getFileDetails", [f1]), ("getMetadataFields", []),
                   ("getReplicaStatus", [{f1: "OTHER-SE"}]),
                   ("setFileStatus", [{f1: "Problematic"}]),
                   ("getDirectoryDump", [HOME]),
                   ("getStorageUsage", []), ("changePathMode", [{f1: 0o640}]),
                   ("getFileAncestors", [[f1], 1]), ("getDatasets", [f"{HOME}/*"]),
                   ("removeReplica", [{f1: {"SE": "OTHER-SE"}}]), ("removeFile", [f1]),
                   ("removeDirectory", [f"{HOME}/tour"])):
    rec(f"FileCatalog.{name}", getattr(fc, name)(*args))

request = Request()
request.RequestName = "tour-request"
request.Owner, request.OwnerGroup = "alice", "demo_user"   # DIRAC 9's validator wants them
request.JobID = one
operation = Operation()
operation.Type = "RemoveFile"
rfile = File()
rfile.LFN = f"{HOME}/tour/gone"
operation.addFile(rfile)
request.addOperation(operation)
rc = ReqClient()
rid = rec("ReqManager.putRequest", rc.putRequest(request))
rec("ReqManager.getRequestStatus", rc.getRequestStatus(rid))
rec("ReqManager.getRequestIDsForJobs", rc.getRequestIDsForJobs([one]))
rec("ReqManager.readRequestsForJobs", rc.readRequestsForJobs([one]))
rec("ReqManager.getRequestFileStatus", rc.getRequestFileStatus(rid, [rfile.LFN]))
rec("ReqManager.getDigest", rc.getDigest(rid))
rec("ReqManager.getBulkRequestStatus", rc._getRPC().getBulkRequestStatus([rid]))
got = rc.getRequest(rid)
RESULT["ReqManager.getRequest"] = ({"OK": True, "Value": got["Value"].RequestName}
                                   if got["OK"] else {"OK": False, "Message": got["Message"]})
rec("ReqManager.getRequestInfo", rc.getRequestInfo(rid))
rec("ReqManager.getRequestIDForName", rc._getRPC().getRequestIDForName("tour-request"))
rec("ReqManager.cancelRequest", rc.cancelRequest(rid))
rec("ReqManager.deleteRequest", rc.deleteRequest(rid))
rec("ReqManager.getRequestStatus(deleted)", rc.getRequestStatus(rid))
