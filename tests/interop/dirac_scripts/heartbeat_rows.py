"""DIRAC's ``JobDB.getHeartBeatData`` run on given database rows: the answer its
``getJobHeartBeatData`` sends. ARGS: [[name, value, "YYYY-MM-DD HH:MM:SS"], ...], the rows of
its ``HeartBeatLoggingInfo`` table (the values as the MySQL driver gives a BLOB: bytes).
RESULT: the method's value.

The method is taken from DIRAC's installed source and run as it is (with a stand-in for the
query): importing ``JobDB`` itself needs the server's MySQL and OpenSearch drivers, which a
client installation does not have."""

import ast
import datetime
import types

from DIRAC import S_ERROR, S_OK
from DIRAC.WorkloadManagementSystem import DB as DB_PACKAGE

source = open(f"{DB_PACKAGE.__path__[0]}/JobDB.py", encoding="utf-8").read()
job_db = next(node for node in ast.parse(source).body
              if isinstance(node, ast.ClassDef) and node.name == "JobDB")
method = next(node for node in job_db.body
              if isinstance(node, ast.FunctionDef) and node.name == "getHeartBeatData")
namespace = {"S_OK": S_OK, "S_ERROR": S_ERROR}
exec(compile(ast.Module(body=[method], type_ignores=[]), "JobDB.py", "exec"), namespace)  # noqa: S102
# naive, as the MySQL driver gives a DATETIME
rows = tuple((name, value.encode(),
              datetime.datetime.strptime(when, "%Y-%m-%d %H:%M:%S"))  # noqa: DTZ007
             for name, value, when in ARGS)  # noqa: F821 - set by dirac_call.py
stub = types.SimpleNamespace(_query=lambda *args, **kwargs: S_OK(rows))
answer = namespace["getHeartBeatData"](stub, 7)
assert answer["OK"], answer
RESULT = [list(row) for row in answer["Value"]]
