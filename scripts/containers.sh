#!/usr/bin/env bash
# Container images of pilotwms, built with rootful podman + runc from Debian 12's packages and a
# Debian base image this script makes itself (debootstrap from the mirror in /etc/apt, then
# `podman import`): no container registry is needed.
#
#   bash scripts/containers.sh build [TARGET...]   # default: server agent client mariadb balancer
#   bash scripts/containers.sh base                # only the Debian base image
#   bash scripts/containers.sh site-check          # build the site image, run a Slurm job in it
#   bash scripts/containers.sh clean               # remove the images and the build cache
#
# Sourced by scripts/stack-*.sh for pw_setup (packages, containers.conf, podman-compose).
# Cache between runs on one machine: the base image, podman's layer cache (apt and Python
# dependency layers change only with the Containerfile or requirements.txt), the compose venv.
# Settings: PILOTWMS_CACHE (default <repo>/.cache), PILOTWMS_IMAGE_PREFIX (localhost/pilotwms:
# images are <prefix>-server, <prefix>-agent, ...; scripts/test.sh uses one per checkout).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PW_CACHE=${PILOTWMS_CACHE:-$REPO/.cache}
PW_PREFIX=${PILOTWMS_IMAGE_PREFIX:-localhost/pilotwms}
# the base image is shared by every checkout (same content): made once per machine
PW_BASE=${PILOTWMS_BASE_IMAGE:-localhost/pilotwms-debian:bookworm}
PW_TARGETS_DEFAULT=(server agent client mariadb balancer)
export CONTAINERS_CONF=$PW_CACHE/containers/containers.conf
PW_COMPOSE=$PW_CACHE/compose-venv/bin/podman-compose
PW_APT=(apt-get -q -y -o DPkg::Lock::Timeout=600)

pw_say() { printf '[%s] %s\n' "$(date +%T)" "$*"; }
pw_root() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo -n "$@"; fi; }

# -- packages, podman settings, podman-compose ------------------------------------------------
pw_setup() {
  local missing=()
  command -v podman >/dev/null || missing+=(podman)
  command -v buildah >/dev/null || missing+=(buildah)
  command -v runc >/dev/null || missing+=(runc)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  [[ -x /usr/libexec/podman/catatonit ]] || missing+=(catatonit)
  command -v newuidmap >/dev/null || missing+=(uidmap)
  command -v slirp4netns >/dev/null || missing+=(slirp4netns)
  command -v fuse-overlayfs >/dev/null || missing+=(fuse-overlayfs)
  python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
  if ((${#missing[@]})); then
    pw_say "installing ${missing[*]}"
    pw_root "${PW_APT[@]}" update >/dev/null
    DEBIAN_FRONTEND=noninteractive pw_root "${PW_APT[@]}" install "${missing[@]}" >/dev/null
  fi
  mkdir -p "$PW_CACHE/containers"
  local nofile nproc
  nofile=$(ulimit -Hn); [[ $nofile == unlimited ]] && nofile=1048576
  nproc=$(ulimit -Hu); { [[ $nproc == unlimited ]] || ((nproc > 32768)); } && nproc=32768
  # podman's rootful defaults (nofile/nproc 1048576) exceed the hard limits of machines where
  # root lacks CAP_SYS_RESOURCE ("crun: setrlimit RLIMIT_NOFILE: Operation not permitted");
  # crun refuses hybrid cgroup v1+v2 layouts, runc does not; there may be no systemd.
  cat >"$CONTAINERS_CONF.tmp" <<EOF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
  mv "$CONTAINERS_CONF.tmp" "$CONTAINERS_CONF"
  if [[ ! -x $PW_COMPOSE ]]; then
    # Debian's podman-compose 1.0.3 breaks network_mode: host; PyPI's 1.x works
    python3 -m venv "$PW_CACHE/compose-venv"
    "$PW_CACHE/compose-venv/bin/pip" install -q 'podman-compose>=1.1,<2'
  fi
}

# -- the Debian base image ------------------------------------------------------------------
pw_uris() {  # every URI of the host's apt sources (deb822 and one-line formats)
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -f $f ]] && awk '/^[ \t]*URIs:/{for(i=2;i<=NF;i++)print $i}' "$f"; done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -f $f ]] && sed -E 's/\[[^]]*\]//' "$f" | awk '$1=="deb"{print $2}'; done
  true
}

pw_base() {
  podman image exists "$PW_BASE" && return 0
  local mirror security root=$PW_CACHE/rootfs t=$SECONDS
  mirror=$(pw_uris | grep -v -- '-security' | grep -E '/debian/?$' | head -1) || true
  security=$(pw_uris | grep -E -- '-security/?$' | head -1) || true
  mirror=${PILOTWMS_DEBIAN_MIRROR:-${mirror:-http://deb.debian.org/debian}}
  pw_say "debootstrap bookworm from $mirror"
  pw_root rm -rf "$root"
  pw_root debootstrap --variant=minbase bookworm "$root" "$mirror" >"$PW_CACHE/debootstrap.log" 2>&1 \
    || { tail -20 "$PW_CACHE/debootstrap.log"; return 1; }
  { echo "deb $mirror bookworm main"; echo "deb $mirror bookworm-updates main"
    [[ -z $security ]] || echo "deb $security bookworm-security main"; } >"$root/etc/apt/sources.list"
  # HTTPS egress may go through a proxy whose CA only the host trusts: give it to the image
  mkdir -p "$root/usr/local/share/ca-certificates" "$root/etc/ssl/certs"
  cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/" 2>/dev/null || true
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
  # packages must not try to start services while an image is built
  printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"; chmod 755 "$root/usr/sbin/policy-rc.d"
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  tar -C "$root" -c . | podman import -q --change 'CMD ["/bin/bash"]' - "$PW_BASE" >/dev/null
  pw_root rm -rf "$root"
  pw_say "base image $PW_BASE ($((SECONDS - t)) s)"
}

# -- build context: the Containerfile, its files, the project's sources, pinned requirements --
pw_requirements() {  # install_requires of setup.cfg, pinned to the tested venv's versions if any
  python3 - "$REPO/setup.cfg" "${PILOTWMS_VENV:-$REPO/.venv}" <<'PY'
import configparser, re, subprocess, sys
from pathlib import Path
cfg = configparser.ConfigParser(); cfg.read(sys.argv[1])
reqs = [r.strip() for r in cfg["options"]["install_requires"].splitlines() if r.strip()]
python = Path(sys.argv[2]) / "bin" / "python"
versions = {}
if python.exists():
    out = subprocess.run([str(python), "-m", "pip", "list", "--format=freeze"],
                         capture_output=True, text=True).stdout
    for line in out.splitlines():
        if "==" in line:
            name, version = line.split("==", 1)
            versions[re.sub(r"[-_.]+", "-", name).lower()] = version
for req in reqs:
    name = re.split(r"[ <>=!~;\[]", req, maxsplit=1)[0]
    pinned = versions.get(re.sub(r"[-_.]+", "-", name).lower())
    print(f"{name}=={pinned}" if pinned else req)
PY
}

pw_context() {
  local ctx=$PW_CACHE/container-context
  rm -rf "$ctx"; mkdir -p "$ctx/project"
  cp "$REPO"/container/Containerfile "$REPO"/container/*.sh "$REPO"/container/*.py \
     "$REPO"/container/haproxy.cfg "$ctx/"
  cp -r "$REPO/setup.cfg" "$REPO/pyproject.toml" "$REPO/README.md" "$REPO/src" "$ctx/project/"
  find "$ctx/project" -name __pycache__ -prune -exec rm -rf {} +
  pw_requirements >"$ctx/requirements.txt"
  echo "$ctx"
}

pw_build_one() {  # pw_build_one CONTEXT TARGET
  local t=$SECONDS
  # docker format: OCI images drop HEALTHCHECK
  podman build -q --format docker --pull=never --network host --build-arg "BASE=$PW_BASE" \
    ${PILOTWMS_BUILD_NO_CACHE:+--no-cache} \
    --target "$2" -t "$PW_PREFIX-$2:latest" -f "$1/Containerfile" "$1" >"$PW_CACHE/build-$2.log" 2>&1 \
    || { tail -30 "$PW_CACHE/build-$2.log" >&2; pw_say "image $PW_PREFIX-$2 FAILED"; return 1; }
  pw_say "image $PW_PREFIX-$2 ($((SECONDS - t)) s)"
}

pw_build() {
  local targets=("$@") ctx target pids=() pid failed=0
  ((${#targets[@]})) || targets=("${PW_TARGETS_DEFAULT[@]}")
  pw_base
  ctx=$(pw_context)
  # MariaDB and HAProxy images share nothing with the Python ones but the base: build them
  # meanwhile (their apt downloads overlap the Python image's pip downloads)
  for target in "${targets[@]}"; do
    case $target in mariadb|balancer) pw_build_one "$ctx" "$target" & pids+=($!) ;; esac
  done
  for target in "${targets[@]}"; do
    case $target in mariadb|balancer) ;; *) pw_build_one "$ctx" "$target" || failed=1 ;; esac
  done
  for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
  return $failed
}

pw_site_check() {  # the site image: its single-node Slurm runs a batch job as pilotwms
  local port out
  pw_build site
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  out=$(timeout 180 podman run --rm --init --network host -e "SLURM_CTLD_PORT=$port" \
    "$PW_PREFIX-site:latest" sh -c '
      for i in $(seq 60); do sinfo -h -o %T 2>/dev/null | grep -q idle && break; sleep 1; done
      su -s /bin/sh pilotwms -c "cd /tmp && sbatch -Q -o /tmp/out.%j --wrap \"id -un\""
      for i in $(seq 60); do [ -s /tmp/out.1 ] && break; sleep 1; done; cat /tmp/out.1' 2>/dev/null)
  [[ $out == pilotwms ]] || { pw_say "site image: the batch job said '$out'"; return 1; }
  pw_say "site image: slurmctld + slurmd up, a batch job ran as pilotwms"
}

pw_clean() {
  local target
  for target in "${PW_TARGETS_DEFAULT[@]}" site; do
    podman rmi -f "$PW_PREFIX-$target:latest" >/dev/null 2>&1 || true
  done
  podman rmi -f "$PW_BASE" >/dev/null 2>&1 || true
  podman image prune -f >/dev/null 2>&1 || true
  rm -rf "$PW_CACHE/container-context"
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  cmd=${1:-build}; shift || true
  pw_setup
  case $cmd in
    build) pw_build "$@" ;;
    base) pw_base ;;
    site-check) pw_site_check ;;
    clean) pw_clean ;;
    *) echo "usage: $0 build [TARGET...]|base|site-check|clean" >&2; exit 2 ;;
  esac
fi
