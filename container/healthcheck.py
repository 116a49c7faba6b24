#!/usr/bin/env python3
"""Container health checks (standard library only, plus pilotwms for the agent check).

    pilotwms-healthcheck server   # POST method=ping to $PILOTWMS_HEALTH_URL/Framework/Registry
    pilotwms-healthcheck agent    # $PILOTWMS_HEALTH_AGENT beat within 3 x its period (DB row)

Exit 0 when healthy, 1 otherwise (with the reason on stderr).
"""

from __future__ import annotations

import json
import os
import ssl
import sys
import urllib.request


def server() -> int:
    base = os.environ.get("PILOTWMS_HEALTH_URL", "https://127.0.0.1:8443").rstrip("/")
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # liveness of our own local port, not identity
    request = urllib.request.Request(f"{base}/Framework/Registry", data=b"method=ping",
                                     method="POST")
    with urllib.request.urlopen(request, timeout=5, context=context) as reply:  # noqa: S310
        body = json.loads(reply.read())
    if not body.get("OK"):
        print(f"ping failed: {body}", file=sys.stderr)
        return 1
    return 0


def agent() -> int:
    from datetime import datetime, timedelta, timezone

    import sqlalchemy as sa

    from core.config.loader import load_config
    from core.db import make_engine
    from core.tables import component_heartbeats as hb

    name = os.environ["PILOTWMS_HEALTH_AGENT"]
    config = load_config(os.environ.get("PILOTWMS_CONFIG", "/srv/pilotwms/config.yaml"))
    period = float(os.environ.get("PILOTWMS_HEALTH_PERIOD", "120"))
    engine = make_engine(config.database_url("Framework"))
    with engine.connect() as conn:
        last = conn.execute(sa.select(sa.func.max(hb.c.last_beat))
                            .where(hb.c.component == name)).scalar()
    if last is None or last < datetime.now(timezone.utc) - timedelta(seconds=3 * period):
        print(f"{name}: last heartbeat {last}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit({"server": server, "agent": agent}[sys.argv[1]]())
    except Exception as exc:  # noqa: BLE001 - any failure is "unhealthy"
        print(f"unhealthy: {exc}", file=sys.stderr)
        sys.exit(1)
