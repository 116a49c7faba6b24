#!/usr/bin/env bash
# Smoke test of the stack started by scripts/stack-up.sh: with the client image, a user asks the
# balancer who they are, submits a job (dsub), a pilot sent by the site director runs it, and the
# user follows it (dstat) and fetches its output (doutput). Ends with "OK".
#
#   bash scripts/stack-smoke.sh          # PILOTWMS_SMOKE_TIMEOUT=300 (seconds for the job)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/containers.sh"
STACK=${PILOTWMS_STACK:-$REPO/stack}
set -a; source "$STACK/stack.env"; set +a
start=$SECONDS
client() {
  podman run --rm -i --init --network host -v "$STACK/instance:/srv/pilotwms" \
    -w /srv/pilotwms/smoke "${PILOTWMS_IMAGE_PREFIX:-$PW_PREFIX}-client:latest" "$@"
}
install -d -o 8443 -g 8443 "$STACK/instance/smoke"

who=$(client pilotwms call Framework/Registry whoami)
grep -q "CN=alice" <<<"$who" || { echo "whoami through the balancer: $who" >&2; exit 1; }
pw_say "whoami through the balancer (X-SSL-CERT): alice"

job=$(client sh -c 'printf "#!/bin/sh\necho \"smoke test ran on \$(hostname) as \$(id -un)\"\n" > smoke.sh
                    dsub -N stack-smoke smoke.sh' | tail -1)
[[ $job =~ ^[0-9]+$ ]] || { echo "dsub said: $job" >&2; exit 1; }
pw_say "submitted job $job through https://127.0.0.1:$PILOTWMS_LB_PORT"

deadline=$((SECONDS + ${PILOTWMS_SMOKE_TIMEOUT:-300}))
status=""
while ((SECONDS < deadline)); do
  # the second line is the job's ("1,Done,"); DIRAC's csv ends with an empty line
  status=$(client dstat -a -F Status -f csv "$job" | sed -n 2p | cut -d, -f2)
  case $status in Done|Failed|Killed|Stalled) break ;; esac
  sleep 3
done
client dstat -a "$job"
[[ $status == Done ]] || {
  echo "job $job ended $status" >&2
  client dlogging "$job" >&2 || true
  podman logs "${PILOTWMS_STACK_PROJECT:-pilotwms-stack}_site-director_1" 2>&1 | tail -30 >&2
  exit 1
}
client doutput "$job" >/dev/null
out=$(cat "$STACK/instance/smoke/$job/std.out")
grep -q "smoke test ran on" <<<"$out" || { echo "std.out: $out" >&2; exit 1; }
pw_say "job $job Done, doutput: $out"
pw_say "smoke test passed in $((SECONDS - start)) s"
echo OK
