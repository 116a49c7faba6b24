#!/usr/bin/env bash
# Stop and remove the containers of the stack started by scripts/stack-up.sh. The state in
# $PILOTWMS_STACK (database, instance, secrets) is kept for the next stack-up, unless --purge.
#
#   bash scripts/stack-down.sh [--purge]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/containers.sh"
STACK=${PILOTWMS_STACK:-$REPO/stack}
PROJECT=${PILOTWMS_STACK_PROJECT:-pilotwms-stack}
if [[ -f $STACK/stack.env && -x $PW_COMPOSE ]]; then
  "$PW_COMPOSE" -p "$PROJECT" -f "$REPO/container/compose.yaml" --env-file "$STACK/stack.env" \
    down -t 20 >/dev/null 2>&1 || true
fi
# anything podman-compose left behind (a failed start), by the project's label
podman ps -a -q --filter "label=io.podman.compose.project=$PROJECT" | xargs -r podman rm -f -t 10 >/dev/null
if [[ ${1:-} == --purge ]]; then
  rm -rf "$STACK"
  pw_say "stack stopped, $STACK removed"
else
  pw_say "stack stopped (state kept in $STACK; --purge removes it)"
fi
