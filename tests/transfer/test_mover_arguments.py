"""The data movers' RPC methods over HTTPS with bad arguments: clear InvalidArgumentError
(never an internal error), and the heartbeat's accepted forms still work.

Regression (found by the RPC fuzzer, tests/fuzz/test_rpc_methods.py):
``moverHeartbeat("", {"": null})`` was an HTTP 500 (``int(None)`` in the service), as were
byte counts that were not numbers (``{"lease": {}}``, ``{"lease": "x"}``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from core.config.loader import load_config
from core.config.schema import Config
from core.exceptions import InvalidArgumentError, NotFoundError
from core.rpc.client import RPCClient
from tests.support.credentials import Creds
from tests.transfer.env import TransferEnv


@pytest.fixture(scope="module")
def mover_rpc(tmp_path_factory: pytest.TempPathFactory, creds: Creds,
              instance: Any) -> Iterator[RPCClient]:
    config: Config = load_config(instance.config, environ={})
    env = TransferEnv(config, tmp_path_factory.mktemp("movers"), creds).start()
    try:
        yield env.rpc("Transfer/DataPush", who="host")
    finally:
        env.stop()


BAD_LEASES: list[tuple[Any, str]] = [
    ({"": None}, "items must be int, not NoneType"),
    ({"lease-1": {}}, "items must be int, not dict"),
    ({"lease-1": "12"}, "items must be int, not str"),
    ({"lease-1": 1.5}, "items must be int, not float"),
    ({"lease-1": True}, "items must be int, not bool"),
    ({"lease-1": -1}, "bytes moved must be >= 0"),
    (["lease-1", 2], "items must be str, not int"),
    ([None], "items must be str, not NoneType"),
    ("lease-1", "must be dict or list or tuple, not str"),
]


@pytest.mark.parametrize("leases, message", BAD_LEASES,
                         ids=[repr(x)[:30] for x, _ in BAD_LEASES])
def test_bad_heartbeats_are_refused_clearly(mover_rpc: RPCClient, leases: Any,
                                            message: str) -> None:
    mover_rpc.call("registerMover", "m1", "", 2)
    with pytest.raises(InvalidArgumentError, match=message):
        mover_rpc.call("moverHeartbeat", "m1", leases)
    with pytest.raises(InvalidArgumentError, match=message):
        mover_rpc.call("moverHeartbeat", "", leases)  # checked before the mover is looked up


def test_good_heartbeats_still_work(mover_rpc: RPCClient) -> None:
    mover_rpc.call("registerMover", "m2", "", 2)
    assert mover_rpc.call("moverHeartbeat", "m2", []) == {"Revoked": []}
    assert mover_rpc.call("moverHeartbeat", "m2", {}) == {"Revoked": []}
    # leases it does not hold are revoked, with or without byte counts
    assert mover_rpc.call("moverHeartbeat", "m2", ["gone"]) == {"Revoked": ["gone"]}
    assert mover_rpc.call("moverHeartbeat", "m2", {"gone": 0, "lost": 2**63 - 1}) == \
        {"Revoked": ["gone", "lost"]}
    with pytest.raises(NotFoundError, match="not registered"):
        mover_rpc.call("moverHeartbeat", "nobody", {})


def test_a_heartbeat_with_any_number_of_leases(mover_rpc: RPCClient) -> None:
    """Regression: 40,000 leases (beyond SQLite's 32,766 bound parameters in a plain IN) were
    an HTTP 500 (found by hand while re-checking the fuzzer's moverHeartbeat finding)."""
    mover_rpc.call("registerMover", "m3", "", 2)
    leases = [f"lease-{i:05d}" for i in range(40_000)]
    assert mover_rpc.call("moverHeartbeat", "m3", leases) == {"Revoked": leases}
    assert mover_rpc.call("moverHeartbeat", "m3", dict.fromkeys(leases, 0)) == \
        {"Revoked": leases}
