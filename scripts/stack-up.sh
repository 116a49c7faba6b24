#!/usr/bin/env bash
# Build the pilotwms images and start the stack (container/compose.yaml) on this machine:
# MariaDB, two `pilotwms serve` behind an HAProxy TLS balancer, the site director and the
# stalled-job agent, all on the host network on 127.0.0.1. On a fresh Debian 12 machine it
# installs podman, runc, debootstrap and catatonit (apt) and podman-compose (PyPI, own venv).
#
#   bash scripts/stack-up.sh           # then: bash scripts/stack-smoke.sh, scripts/stack-down.sh
#
# State lives in $PILOTWMS_STACK (default <repo>/stack): instance/ (configuration, dev CA,
# certificates, sandboxes; mounted at /srv/pilotwms), mariadb/ (the datadir), secrets/ (the DB
# password, mode 600), balancer/ (its certificate), stack.env (ports). A second run reuses them.
# Ports: PILOTWMS_LB_PORT (the URL to use; default: a free port), PILOTWMS_DB_PORT,
# PILOTWMS_SERVER1_PORT, PILOTWMS_SERVER2_PORT (default: free ports).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/containers.sh"
STACK=${PILOTWMS_STACK:-$REPO/stack}
PROJECT=${PILOTWMS_STACK_PROJECT:-pilotwms-stack}
export PILOTWMS_STACK=$STACK
UID_PW=8443   # the pilotwms user of the images
start=$SECONDS

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
pc() { "$PW_COMPOSE" -p "$PROJECT" -f "$REPO/container/compose.yaml" --env-file "$STACK/stack.env" "$@"; }
client() {  # a command in the client image, as the pilotwms user, with the instance mounted
  podman run --rm -i --init --network host -v "$STACK/instance:/srv/pilotwms" "$@"
}
image=$PW_PREFIX-client:latest
wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local end=$((SECONDS + $1)) what=$2; shift 2
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < end)) || { pw_say "timeout: $what"; return 1; }
    sleep 1
  done
}

pw_setup
pw_build server agent client mariadb balancer

# -- ports and secrets (kept across runs) ---------------------------------------------------
mkdir -p "$STACK/secrets" "$STACK/balancer" "$STACK/mariadb"
chmod 700 "$STACK/secrets"
install -d -o "$UID_PW" -g "$UID_PW" "$STACK/instance"
if [[ ! -f $STACK/stack.env ]]; then
  cat >"$STACK/stack.env" <<EOF
PILOTWMS_STACK=$STACK
PILOTWMS_LB_PORT=${PILOTWMS_LB_PORT:-$(free_port)}
PILOTWMS_DB_PORT=${PILOTWMS_DB_PORT:-$(free_port)}
PILOTWMS_SERVER1_PORT=${PILOTWMS_SERVER1_PORT:-$(free_port)}
PILOTWMS_SERVER2_PORT=${PILOTWMS_SERVER2_PORT:-$(free_port)}
PILOTWMS_IMAGE_PREFIX=$PW_PREFIX
EOF
fi
set -a; source "$STACK/stack.env"; set +a
if [[ ! -f $STACK/secrets/db_password ]]; then
  (umask 077; python3 -c 'import secrets; print(secrets.token_urlsafe(24))' >"$STACK/secrets/db_password")
fi
(umask 077; printf 'PILOTWMS_DB=mysql+pymysql://pilotwms:%s@127.0.0.1:%s/pilotwms\n' \
  "$(cat "$STACK/secrets/db_password")" "$PILOTWMS_DB_PORT" >"$STACK/secrets/db.env")

# -- the instance: dev CA, host and user certificates, configuration ------------------------
if [[ ! -f $STACK/instance/config.yaml ]]; then
  pw_say "pilotwms init (in the client image)"
  client "$image" pilotwms init /srv/pilotwms --host 127.0.0.1 --port "$PILOTWMS_LB_PORT" >/dev/null
  client "$image" python3 - "$PILOTWMS_LB_PORT" <<'PY'
import sys, yaml
path = "/srv/pilotwms/config.yaml"
cfg = yaml.safe_load(open(path))
lb = f"https://127.0.0.1:{sys.argv[1]}"
cfg["Server"]["TrustedBalancers"] = ["127.0.0.1"]          # X-SSL-CERT from the balancer only
cfg["Server"]["Processes"] = 2
systems = cfg.setdefault("Systems", {})
wms = systems.setdefault("WorkloadManagement", {}).setdefault("Services", {})
wms.setdefault("SandboxStore", {}).setdefault("Options", {})["BasePath"] = "/srv/pilotwms/sandboxes"
cfg.setdefault("Operations", {}).setdefault("Pilot", {})["URLs"] = [lb]   # pilots go through it
open(path, "w").write("# pilotwms instance of the compose stack (scripts/stack-up.sh); the\n"
                      "# database URL comes from PILOTWMS_DB (secrets/db.env)\n"
                      + yaml.safe_dump(cfg, sort_keys=False))
PY
fi
# the balancer's certificate (the instance's host certificate) and the CA it accepts
HA_UID=$(podman run --rm --entrypoint id "$PW_PREFIX-balancer:latest" -u 2>/dev/null)
cat "$STACK/instance/host/hostcert.pem" "$STACK/instance/host/hostkey.pem" >"$STACK/balancer/balancer.pem"
cp "$STACK/instance/ca/ca.pem" "$STACK/balancer/ca.pem"
chown "$HA_UID" "$STACK/balancer/balancer.pem"; chmod 600 "$STACK/balancer/balancer.pem"

# -- database, schemas, then everything -------------------------------------------------------
pw_say "starting MariaDB on 127.0.0.1:$PILOTWMS_DB_PORT"
pc up -d db >"$STACK/compose-up.log" 2>&1 || { cat "$STACK/compose-up.log"; exit 1; }
db_ready() {
  [[ $(podman inspect -f '{{.State.Running}}' "${PROJECT}_db_1") == true ]] \
    || { podman logs "${PROJECT}_db_1" 2>&1 | tail -20 >&2; pw_say "MariaDB exited"; exit 1; }
  podman exec "$@"
}
wait_for 120 "MariaDB answers" db_ready "${PROJECT}_db_1" mariadb-admin --no-defaults \
  --socket=/run/mysqld/mysqld.sock -uroot ping
wait_for 60 "pilotwms db init" client --env-file "$STACK/secrets/db.env" "$image" pilotwms db init --config /srv/pilotwms/config.yaml
pw_say "starting the servers, the balancer and the agents"
pc up -d >>"$STACK/compose-up.log" 2>&1 || { cat "$STACK/compose-up.log"; exit 1; }
for name in server1 server2 balancer site-director stalled-jobs; do
  # podman-compose can exit 0 when a container did not start: look at each
  [[ $(podman inspect -f '{{.State.Running}}' "${PROJECT}_${name}_1" 2>/dev/null) == true ]] \
    || { podman logs "${PROJECT}_${name}_1" 2>&1 | tail -20; pw_say "$name is not running"; exit 1; }
done
# podman schedules health checks with systemd timers; without systemd, run them here
for name in db server1 server2 balancer site-director stalled-jobs; do
  wait_for 90 "$name healthy" podman healthcheck run "${PROJECT}_${name}_1"
done
wait_for 60 "the balancer answers" python3 - "$STACK" "$PILOTWMS_LB_PORT" <<'PY'
import json, ssl, sys, urllib.request
stack, port = sys.argv[1], sys.argv[2]
ctx = ssl.create_default_context(cafile=f"{stack}/balancer/ca.pem")
req = urllib.request.Request(f"https://127.0.0.1:{port}/Framework/Registry", data=b"method=ping")
assert json.loads(urllib.request.urlopen(req, timeout=10, context=ctx).read())["OK"]
PY
pw_say "stack up in $((SECONDS - start)) s: https://127.0.0.1:$PILOTWMS_LB_PORT" \
  "(users: PILOTWMS_CLIENT_CONFIG=$STACK/instance/client.yaml, or the client image)"
