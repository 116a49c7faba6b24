"""Login costs: the test IdP's start, one device flow, one silent refresh, one credential lookup.

Starts the real test IdP (``scripts/oidc-idp``, oidc-provider on 127.0.0.1), then measures:

* IdP start-up (node + oidc-provider, until discovery answers);
* a device flow without the polling wait: device authorization, the user's approval at the
  IdP's pages (confirm, login, consent over HTTP), the token request;
* ``fresh_access_token`` when a refresh is due (token request + two private file writes under
  the lock), and ``find_credentials`` when none is (file reads only).

Bounded: ``--refreshes`` (default 30) and ``--lookups`` (default 1000) iterations.

    python bench/login.py
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.oidc_idp import PUBLIC_CLIENT, OIDCProvider  # noqa: E402

from bench.machine import machine_line  # noqa: E402
from core.client_config import ClientConfig, find_credentials  # noqa: E402
from core.oauth_client import (  # noqa: E402
    DEVICE_GRANT,
    LoginState,
    TokenStore,
    fresh_access_token,
)


def ms(values: list[float]) -> str:
    values = sorted(values)
    p90 = values[int(len(values) * 0.9) - 1] if len(values) >= 10 else values[-1]
    return f"median {statistics.median(values) * 1e3:.2f} ms, p90 {p90 * 1e3:.2f} ms"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--refreshes", type=int, default=30)
    p.add_argument("--lookups", type=int, default=1000)
    ns = p.parse_args()
    print(machine_line(), flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="bench-login-"))
    t0 = time.perf_counter()
    with OIDCProvider(workdir=tmp) as idp:
        print(f"IdP start-up: {time.perf_counter() - t0:.2f} s")
        flows = []
        for _ in range(5):
            t = time.perf_counter()
            auth = requests.post(idp.endpoint("device_authorization"), timeout=10, data={
                "client_id": PUBLIC_CLIENT, "scope": "openid groups offline_access"}).json()
            idp.approve_device(auth["user_code"], "alice", "alice-password")
            tokens = requests.post(idp.endpoint("token"), timeout=10, data={
                "client_id": PUBLIC_CLIENT, "grant_type": DEVICE_GRANT,
                "device_code": auth["device_code"]}).json()
            flows.append(time.perf_counter() - t)
        print(f"device flow without the polling wait (5 runs): {ms(flows)}")

        env = {"HOME": str(tmp), "BEARER_TOKEN_FILE": str(tmp / "bt")}
        store = TokenStore.default(env)
        store.save(tokens, LoginState.from_tokens(idp.discovery(), PUBLIC_CLIENT, tokens))
        refreshes = []
        for _ in range(ns.refreshes):
            t = time.perf_counter()
            fresh_access_token(store, margin=10**9)          # always due
            refreshes.append(time.perf_counter() - t)
        print(f"silent refresh ({ns.refreshes} runs): {ms(refreshes)}")
        cfg = ClientConfig.model_validate({"URLs": ["https://127.0.0.1:1"]})
        lookups = []
        for _ in range(ns.lookups):
            t = time.perf_counter()
            find_credentials(cfg, environ=env, uid=os.getuid())
            lookups.append(time.perf_counter() - t)
        print(f"find_credentials, no refresh due ({ns.lookups} runs): {ms(lookups)}")


if __name__ == "__main__":
    main()
