"""Replies are gzipped for clients that accept it (``core.rpc.server.FastGzip``): what the
client decompresses is exactly the uncompressed reply, small replies are sent as they are,
and the level is the cheap one (1), not Tornado's default (6)."""

from __future__ import annotations

import gzip
import json
import zlib

import requests

from core.rpc.server import FastGzip
from tests.core.rpc.conftest import Creds
from tests.support.servers import ThreadedServer

NAMES = [f"job_{i}_of_a_rather_long_parametric_family" for i in range(5_000)]


def call(server: ThreadedServer, creds: Creds, names: list[str],
         encoding: str) -> requests.Response:
    reply = requests.post(f"{server.url}/Test/Probe",
                          data={"method": "typed", "args": json.dumps([7, names])},
                          headers={"Accept-Encoding": encoding}, verify=str(creds.ca_dir),
                          timeout=60, stream=True)
    assert reply.status_code == 200
    return reply


def test_a_large_reply_is_gzipped_at_level_one(probe_server: ThreadedServer,
                                               creds: Creds) -> None:
    plain = call(probe_server, creds, NAMES, "identity")
    assert "Content-Encoding" not in plain.headers
    body = plain.raw.read(decode_content=False)
    assert json.loads(body)["Value"]["names"] == NAMES

    packed = call(probe_server, creds, NAMES, "gzip")
    assert packed.headers["Content-Encoding"] == "gzip"
    wire = packed.raw.read(decode_content=False)
    assert gzip.decompress(wire) == body
    assert len(wire) < len(body) / 10
    # level 1's stream is what zlib makes at level 1, larger than level 6's for this text
    level1 = zlib.compressobj(1, zlib.DEFLATED, 31)
    level6 = zlib.compressobj(6, zlib.DEFLATED, 31)
    size1 = len(level1.compress(body) + level1.flush())
    size6 = len(level6.compress(body) + level6.flush())
    assert size6 < size1
    assert abs(len(wire) - size1) < abs(len(wire) - size6)
    assert FastGzip.GZIP_LEVEL == 1


def test_a_small_reply_is_not_compressed(probe_server: ThreadedServer, creds: Creds) -> None:
    reply = call(probe_server, creds, ["a"], "gzip")
    assert "Content-Encoding" not in reply.headers
    assert json.loads(reply.raw.read(decode_content=False))["Value"]["names"] == ["a"]
