"""Typed clients of ``Transfer/TransferManager`` and ``Transfer/DataPush``.

Example::

    from transfer.client import TransferClient, DataPushClient
    tc = TransferClient.from_config()
    tc.put_association("ftp1", {"protocol": "ftp", "host": "h", "user": "u",
                                "password": "secret"})
    tid = tc.submit({"Remote": "ftp1", "Source": "spool:" + tc.upload(Path("f.grib")),
                     "Target": "f.grib"})
    tc.get_transfer(tid)["Status"]

    push = DataPushClient.from_config()
    file_id = push.push_sync(Path("f.grib"), "DISK:/demo/push")
"""

from __future__ import annotations

import os
import urllib.parse
from pathlib import Path
from typing import Any

import requests

from core.client_config import ClientConfig, make_client
from core.exceptions import PilotWMSError, ServiceUnavailableError
from core.rpc.client import Credentials, RPCClient, error_from_reply
from core.rpc.jencode import decode
from dms.storage.base import CHUNK, Progress, adler32_file
from dms.storage.https import FileBody

MANAGER = "Transfer/TransferManager"
PUSH = "Transfer/DataPush"


def _reply(response: requests.Response, what: str) -> Any:
    try:
        reply = decode(response.content)
    except PilotWMSError:
        reply = None
    if not isinstance(reply, dict) or "OK" not in reply:
        raise PilotWMSError(f"{what}: HTTP {response.status_code}: {response.text[:200]}")
    if not reply["OK"]:
        raise error_from_reply(reply)
    return reply.get("Value")


class TransferClient:
    def __init__(self, rpc: RPCClient) -> None:
        self.rpc = rpc

    @classmethod
    def from_config(cls, cfg: ClientConfig | None = None,
                    credentials: Credentials | None = None) -> TransferClient:
        return cls(make_client(MANAGER, cfg, credentials))

    def close(self) -> None:
        self.rpc.close()

    def _base(self) -> str:
        """The service's URL (the first server: uploads and results are not failed over)."""
        return self.rpc.urls[0]

    # associations
    def protocols(self) -> dict[str, Any]:
        return dict(self.rpc.call("getProtocols"))

    def put_association(self, name: str, description: dict[str, Any]) -> bool:
        return bool(self.rpc.call("putAssociation", name, description))

    def get_association(self, name: str) -> dict[str, Any]:
        return dict(self.rpc.call("getAssociation", name))

    def list_associations(self) -> list[dict[str, Any]]:
        return list(self.rpc.call("listAssociations"))

    def delete_association(self, name: str) -> bool:
        return bool(self.rpc.call("deleteAssociation", name))

    # transfers
    def upload(self, path: Path, progress: Progress | None = None) -> str:
        """Stream a local file into the server's spool; returns its spool ticket."""
        size = os.path.getsize(path)
        ticket = str(self.rpc.call("prepareUpload", size))
        url = f"{self._base()}/spool/{ticket}"
        body = FileBody(Path(path), progress)
        try:
            response = self.rpc.session.put(
                url, data=body, timeout=self.rpc.timeout, verify=self.rpc.verify,
                headers={"Content-Type": "application/octet-stream",
                         "Content-Length": str(size)})
        except requests.RequestException as exc:
            raise ServiceUnavailableError(f"upload of {path}: {type(exc).__name__}") from None
        finally:
            body.close()
        value = _reply(response, f"upload of {path}")
        local = adler32_file(path)
        if int(value["Size"]) != local.size or value["Checksum"] != local.checksum:
            raise PilotWMSError(f"{path} changed while it was uploaded: submit it again")
        return ticket

    def submit(self, request: dict[str, Any]) -> int:
        return int(self.rpc.call("submitTransfer", request))

    def get_transfer(self, transfer_id: int) -> dict[str, Any]:
        return dict(self.rpc.call("getTransfer", transfer_id))

    def list_transfers(self, status: str | None = None) -> list[dict[str, Any]]:
        return list(self.rpc.call("listTransfers", status))

    def restart(self, transfer_id: int) -> bool:
        return bool(self.rpc.call("restartTransfer", transfer_id))

    def delete(self, transfer_id: int) -> bool:
        return bool(self.rpc.call("deleteTransfer", transfer_id))

    def download_result(self, transfer_id: int, dest: Path) -> int:
        """The file a finished ``get`` transfer fetched, into ``dest``; its size."""
        url = f"{self._base()}/result/{transfer_id}"
        response = self.rpc.session.get(url, stream=True, timeout=self.rpc.timeout,
                                         verify=self.rpc.verify)
        with response:
            if response.status_code != 200 or \
                    response.headers.get("Content-Type", "").startswith("application/json"):
                _reply(response, f"transfer {transfer_id}")
            part = dest.with_name(f".{dest.name}.part")
            size = 0
            with open(part, "wb") as out:
                for chunk in response.iter_content(CHUNK):
                    out.write(chunk)
                    size += len(chunk)
            part.replace(dest)
        return size


class DataPushClient:
    def __init__(self, rpc: RPCClient) -> None:
        self.rpc = rpc

    @classmethod
    def from_config(cls, cfg: ClientConfig | None = None,
                    credentials: Credentials | None = None) -> DataPushClient:
        return cls(make_client(PUSH, cfg, credentials))

    def close(self) -> None:
        self.rpc.close()

    def push_async(self, files: list[dict[str, Any]]) -> list[int]:
        return [int(x) for x in self.rpc.call("pushAsync", files)]

    def push_sync(self, path: Path, destination: str, *, group: str = "",
                  progress: Progress | None = None) -> int:
        """Stream ``path`` through a data mover; returns the data file ID once the mover has
        stored it and the server has registered it."""
        info = adler32_file(path)
        where = self.rpc.call("pushSync", {"Name": Path(path).name, "Size": info.size,
                                           "Checksum": info.checksum, "Group": group,
                                           "Destination": destination})
        body = FileBody(Path(path), progress)
        try:
            response = requests.put(where["URL"], data=body, timeout=self.rpc.timeout,
                                    verify=self.rpc.verify, headers={
                                        "Content-Type": "application/octet-stream",
                                        "Content-Length": str(info.size),
                                        "X-Checksum-Adler32": info.checksum})
        except requests.RequestException as exc:
            host = urllib.parse.urlsplit(where["URL"]).netloc
            raise ServiceUnavailableError(f"mover {where['Mover']} ({host}): "
                                          f"{type(exc).__name__}") from None
        finally:
            body.close()
        return int(_reply(response, f"push of {path}")["FileID"])

    def get_data_files(self, ids: list[int]) -> list[dict[str, Any]]:
        return list(self.rpc.call("getDataFiles", ids))

    def get_group(self, group: str, files: bool = True) -> dict[str, Any]:
        return dict(self.rpc.call("getGroup", group, files))

    def list_movers(self) -> list[dict[str, Any]]:
        return list(self.rpc.call("listMovers"))
