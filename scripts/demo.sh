#!/usr/bin/env bash
# The pilotwms demo on the embedded default (SQLite, one machine): install into .venv, make a
# fresh instance in ./demo, start the services, and call them as a user would -- with a
# certificate, with an RFC 3820 proxy carrying a group, and with a bearer token.
#
#   bash scripts/demo.sh            # PILOTWMS_DEMO_PORT=8443 by default
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
VENV=${PILOTWMS_VENV:-$REPO/.venv}
DEMO=${PILOTWMS_DEMO_DIR:-$REPO/demo}
PORT=${PILOTWMS_DEMO_PORT:-8443}
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
  if [[ $(id -u) -eq 0 ]]; then apt-get update -q && apt-get install -y -q python3-venv
  else sudo -n apt-get update -q && sudo -n apt-get install -y -q python3-venv; fi
fi
[[ -x $VENV/bin/python ]] || python3 -m venv "$VENV"
"$VENV/bin/pip" install -q -e .
export PATH=$VENV/bin:$PATH

say "pilotwms init $DEMO"
pilotwms init "$DEMO" --force --port "$PORT"

say "pilotwms serve (log: $DEMO/server.log)"
pilotwms serve --config "$DEMO/config.yaml" >"$DEMO/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  grep -q "pilotwms serving" "$DEMO/server.log" && break
  kill -0 $SERVER 2>/dev/null || { cat "$DEMO/server.log"; exit 1; }
  sleep 0.2
done
head -1 "$DEMO/server.log"

# the demo uses only its own credentials, whatever this shell has
export PILOTWMS_CLIENT_CONFIG=$DEMO/client.yaml
unset BEARER_TOKEN X509_USER_CERT X509_USER_KEY
export X509_USER_PROXY=$DEMO/no-proxy BEARER_TOKEN_FILE=$DEMO/no-token
rm -f "$X509_USER_PROXY"

say "whoami with alice's certificate (plain requests.post, as a DIRAC script does)"
python - "$DEMO" "$PORT" <<'PY'
import json, sys, requests
demo, port = sys.argv[1], sys.argv[2]
reply = requests.post(f"https://127.0.0.1:{port}/Framework/Registry", data={"method": "whoami"},
                      cert=(f"{demo}/users/alice/usercert.pem", f"{demo}/users/alice/userkey.pem"),
                      verify=f"{demo}/ca/certificates", timeout=30)
print(reply.status_code, json.dumps(reply.json(), indent=1))
PY

say "whoami with the admin's RFC 3820 proxy carrying group demo_admin"
pilotwms proxy init --cert "$DEMO/users/admin/usercert.pem" --key "$DEMO/users/admin/userkey.pem" \
  -g demo_admin --out "$DEMO/admin-proxy.pem"
X509_USER_PROXY=$DEMO/admin-proxy.pem pilotwms call Framework/Registry whoami

say "whoami with a bearer token (pilotwms token issue)"
pilotwms token issue --config "$DEMO/config.yaml" --user alice --out "$DEMO/alice.token"
BEARER_TOKEN_FILE=$DEMO/alice.token pilotwms call Framework/Registry whoami

say "without credentials the server answers 401"
python - "$DEMO" "$PORT" <<'PY'
import sys, requests
demo, port = sys.argv[1], sys.argv[2]
reply = requests.post(f"https://127.0.0.1:{port}/Framework/Registry", data={"method": "whoami"},
                      verify=f"{demo}/ca/certificates", timeout=30)
print(reply.status_code, reply.text)
PY
say "the site director sends local pilots (log: $DEMO/director.log)"
pilotwms agent SiteDirector --config "$DEMO/config.yaml" --period 2 >"$DEMO/director.log" 2>&1 &
DIRECTOR=$!
trap 'kill $DIRECTOR $SERVER 2>/dev/null; wait $DIRECTOR $SERVER 2>/dev/null || true' EXIT

say "jobs: dsub (a job, a parametric one, one that fails, one to kill)"
pilotwms proxy init -g demo_user --out "$DEMO/alice-proxy.pem" >/dev/null   # alice's, from client.yaml
export X509_USER_PROXY=$DEMO/alice-proxy.pem
printf '#!/bin/sh\necho "hello from job $1 on $(hostname)"\n' > "$DEMO/hello.sh"
cd "$DEMO"
dsub -N demo-hello hello.sh world
dsub -N scan --Parametric 0:3 hello.sh %s
printf '#!/bin/sh\necho "this job fails" >&2\nexit 3\n' > fail.sh
dsub -N fails fail.sh
LONG=$(dsub -N long /bin/sleep 600)
dstat

say "dkill $LONG while it waits or runs"
sleep 3
dkill -v "$LONG"

say "dstat until every job has ended (at most 3 minutes)"
for _ in $(seq 90); do
  active=$(dstat -f csv | tail -n +2 | grep -c . || true)   # (DIRAC's csv ends with an empty line)
  [ "$active" -eq 0 ] && break
  sleep 2
done
dstat -a
dlogging 1

say "the login server is on: discovery, and alice's proxy exchanged for a token (dlogin --proxy)"
python - "$DEMO" "$PORT" <<'PY'
import sys, requests
demo, port = sys.argv[1], sys.argv[2]
meta = requests.get(f"https://127.0.0.1:{port}/.well-known/openid-configuration",
                    verify=f"{demo}/ca/certificates", timeout=30).json()
for key in ("issuer", "device_authorization_endpoint", "token_endpoint", "jwks_uri"):
    print(f"{key:30s} {meta[key]}")
PY
# (the token's login state goes under the demo, not your ~/.pilotwms)
HOME=$DEMO/home BEARER_TOKEN_FILE=$DEMO/alice-exchanged.token dlogin --proxy "$X509_USER_PROXY"
say "dstat with that token only (no proxy)"
HOME=$DEMO/home BEARER_TOKEN_FILE=$DEMO/alice-exchanged.token X509_USER_PROXY=$DEMO/no-proxy \
  dstat -a

say "doutput: the outputs, into ./<JobID>/"
doutput 1 2 3 4 5
for d in 1 2 3 4; do echo "--- $d/std.out"; cat "$d/std.out"; done

HOME_LFN=/demo/user/a/alice
say "data: dput a file to the instance's SE, a job that reads it and writes output data"
echo "input data for the demo" > input.txt
dmkdir "$HOME_LFN/data"
dput input.txt "$HOME_LFN/data/input.txt"
dls -l "$HOME_LFN/data"
DATAJOB=$(dsub -N with-data --InputData "$HOME_LFN/data/input.txt" --OutputData summary.txt \
  --OutputPath results /bin/sh -c 'wc -c < input.txt > summary.txt')
for _ in $(seq 60); do
  state=$(dstat -a -F Status -f csv "$DATAJOB" | sed -n 2p | cut -d, -f2)   # "7,Done," -> Done
  case $state in Done|Failed|Killed) break ;; esac
  sleep 2
done
dstat -a "$DATAJOB"
dlogging "$DATAJOB"

say "doutput --Data: the job's output data, checksums verified"
doutput --Data -D data-out "$DATAJOB"
echo "--- data-out/$DATAJOB/summary.txt: $(cat "data-out/$DATAJOB/summary.txt")"
dls -l "$HOME_LFN/results"

say "accounting: dacct (records shipped by the Monitoring service every 15 s)"
for _ in $(seq 30); do
  dacct jobs --from 1d -f csv 2>/dev/null | tail -n +2 | grep -q . && break
  sleep 2
done
dacct jobs --group-by FinalMajorStatus --from 1d --granularity day
dacct jobs -r TotalCPUUsed --group-by User --from 1d --plot "$DEMO/cpu-by-user.png"
say "dstat --summary: counts from the newest WMS history snapshot (one per 5-minute interval: it may lag)"
pilotwms agent WMSHistoryAgent --config "$DEMO/config.yaml" --once >"$DEMO/history.log" 2>&1  # at least one
dstat --summary
cd "$REPO"

say "demo finished"
