#!/usr/bin/env bash
# Install the real DIRAC client (PyPI "DIRAC") into its own venv, for the interoperability tests.
#
#   scripts/install-dirac-client.sh            # install (idempotent; a second run takes < 1 s)
#   PILOTWMS_DIRAC_VENV=/some/dir  ...         # venv location (default: $REPO/.cache/dirac-venv)
#   PILOTWMS_DIRAC_VERSION=9.1.22  ...         # DIRAC release to pin
#   PILOTWMS_DIRAC_PYTHON=/usr/bin/python3 ... # interpreter for the venv (default: Debian's 3.11)
#   PILOTWMS_DIRAC_FORCE=1 ...                 # rebuild even if the stamp matches
#
# Why not a plain `pip install DIRAC` (Debian 12): M2Crypto has no Linux wheel (built from the
# sdist, needs swig + libssl-dev + gcc), and gfal2-python needs gfal2 >= 2.22 while Debian 12 ships
# 2.21. So: install DIRAC's requirements minus gfal2-python, then DIRAC itself with --no-deps, then
# borrow the gfal2 binding of Debian's python3-gfal2 (same cp311 ABI) with a symlink.
# On success prints the venv's python path on the last line of stdout.
set -euo pipefail
export CI=true DEBIAN_FRONTEND=noninteractive PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1
exec </dev/null

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${PILOTWMS_DIRAC_VENV:-$REPO/.cache/dirac-venv}
VERSION=${PILOTWMS_DIRAC_VERSION:-9.1.22}
APT_PACKAGES=(swig libssl-dev gcc python3-venv python3-gfal2 gfal2-plugin-file)

die() { echo "install-dirac-client: ERROR: $*" >&2; exit 1; }
log() { echo "install-dirac-client: $*" >&2; }

if [[ -n ${PILOTWMS_DIRAC_PYTHON:-} ]]; then
  PY=$PILOTWMS_DIRAC_PYTHON
elif [[ -x /usr/bin/python3 ]]; then
  PY=/usr/bin/python3   # Debian's interpreter: exactly the ABI python3-gfal2 was built for
else
  PY=$(command -v python3 || true)
fi
[[ -n $PY && -x $PY ]] || die "no python3 interpreter found (set PILOTWMS_DIRAC_PYTHON)"

STAMP=$VENV/.pilotwms-dirac-stamp
WANT="DIRAC==$VERSION python=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"

up_to_date() {
  [[ -z ${PILOTWMS_DIRAC_FORCE:-} && -f $STAMP && -x $VENV/bin/python ]] \
    && [[ $(cat "$STAMP") == "$WANT" ]]
}

if up_to_date; then
  echo "$VENV/bin/python"
  exit 0
fi

mkdir -p "$(dirname "$VENV")"
# Serialise concurrent installs (parallel test sessions) on the same venv.
exec 9>"$VENV.lock"
command -v flock >/dev/null && { flock -w 1800 9 || die "timed out waiting for $VENV.lock"; }
if up_to_date; then   # another process finished the install while we waited
  echo "$VENV/bin/python"
  exit 0
fi

# --- system packages (only those missing) -----------------------------------------------------
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
  command -v apt-get >/dev/null || die "missing system packages ${missing[*]} and no apt-get"
  SUDO=()
  if [[ $(id -u) != 0 ]]; then
    command -v sudo >/dev/null \
      || die "missing system packages ${missing[*]}; run as root or install them"
    SUDO=(sudo -n)
  fi
  log "apt-get install ${missing[*]}"
  apt_install() { "${SUDO[@]}" apt-get install -y -q "${missing[@]}" >&2; }
  apt_install || { "${SUDO[@]}" apt-get update -q >&2 && apt_install; } \
    || die "apt-get install ${missing[*]} failed"
fi

# --- venv -----------------------------------------------------------------------------------
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
start=$SECONDS
log "building $VENV ($WANT)"
rm -rf "$VENV"
"$PY" -m venv "$VENV" || die "python -m venv failed ($PY)"
VPY=$VENV/bin/python
"$VPY" -m pip install -q --upgrade pip >&2 || die "pip upgrade failed"

"$VPY" -m pip download -q --no-deps -d "$TMP" "DIRAC==$VERSION" >&2 \
  || die "cannot download DIRAC==$VERSION from the package index"
WHEEL=$(ls "$TMP"/[Dd][Ii][Rr][Aa][Cc]-"$VERSION"-*.whl 2>/dev/null | head -1)
[[ -n $WHEEL ]] || die "DIRAC==$VERSION: no wheel downloaded"

# Requirements from the wheel metadata: drop extras and gfal2-python (provided by Debian below).
"$VPY" - "$WHEEL" >"$TMP/reqs.txt" <<'EOF' || die "cannot read $WHEEL metadata"
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as zf:
    meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
    for line in zf.read(meta).decode().splitlines():
        if not line.startswith("Requires-Dist: "):
            continue
        req = line.split(": ", 1)[1]
        if "extra ==" in req or req.lower().replace("_", "-").startswith("gfal2-python"):
            continue
        print(req)
EOF
log "pip install $(wc -l <"$TMP/reqs.txt") requirements (M2Crypto builds from source, ~1 min)"
"$VPY" -m pip install -q -r "$TMP/reqs.txt" >&2 || die "installing DIRAC's requirements failed"
"$VPY" -m pip install -q --no-deps "$WHEEL" >&2 || die "installing DIRAC $VERSION failed"

# gfal2 binding from Debian's python3-gfal2.
SITE=$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
TAG=$("$VPY" -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
GFAL=/usr/lib/python3/dist-packages/gfal2$TAG
[[ -f $GFAL ]] || die "$GFAL not found (python3-gfal2 is built for another Python than $VPY)"
ln -sf "$GFAL" "$SITE/"

# Smoke test, with DIRAC's root pinned away from sys.base_prefix.
mkdir -p "$TMP/root"
DIRAC_ROOT_PATH=$TMP/root "$VPY" -c 'import DIRAC, M2Crypto, gfal2
from DIRAC.Core.Tornado.Client.TornadoClient import TornadoClient' >&2 \
  || die "the DIRAC venv does not import DIRAC/M2Crypto/gfal2"

echo "$WANT" >"$STAMP"
log "done in $((SECONDS - start)) s"
echo "$VPY"
