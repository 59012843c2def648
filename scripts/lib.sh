#!/usr/bin/env bash
# Shared set-up functions for Berth's scripts (up, down, test).
#
# Source it:   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# Or run one or more functions directly:
#              scripts/lib.sh ensure_docker build_test_images
#
# Every function is idempotent: it checks first and only acts when something
# is missing or out of date.
set -euo pipefail

BERTH_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BERTH_VENV="$BERTH_REPO/.venv"
BERTH_DOCKERD_LOG="/var/log/berth-dockerd.log"
BERTH_DOCKER_SOCKET="unix:///var/run/docker.sock"
BERTH_TEST_IMAGE_REPO="berth-test/busybox"
BERTH_IMAGE_HASH_LABEL="org.berth.content-hash"

# The Debian packages every Berth script needs. python3-venv is added by
# ensure_base_packages only when the chosen python cannot create a venv.
BERTH_APT_BASE=(docker.io busybox-static docker-registry iptables procps curl git wrk)

_BERTH_APT_UPDATED=0

# -- messages ---------------------------------------------------------------

say() { printf '==> %s\n' "$*" >&2; }
warn() { printf 'WARNING: %s\n' "$*" >&2; }
die() {
    printf 'ERROR: %s\n' "$*" >&2
    exit 1
}

# Run a command as root (directly, or through sudo when available).
as_root() {
    if [[ $EUID -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "'$*' needs root: run this script as root (or install sudo)."
    fi
}

# pid_alive PID: the process exists and is not a zombie (PID 1 may not reap).
pid_alive() {
    local state
    [[ $1 =~ ^[0-9]+$ ]] || return 1
    state="$(ps -o stat= -p "$1" 2>/dev/null || true)"
    [[ -n $state && $state != Z* ]]
}

# -- apt ----------------------------------------------------------------------

_apt_installed() {
    [[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" == installed ]]
}

# ensure_apt_packages pkg...: install the Debian packages that are missing.
ensure_apt_packages() {
    command -v dpkg-query >/dev/null 2>&1 \
        || die "dpkg-query not found: these scripts expect Debian 12 (bookworm)."
    local pkg missing=()
    for pkg in "$@"; do
        # docker-ce (Docker's own packages) conflicts with docker.io and does the same job.
        if [[ $pkg == docker.io ]] && _apt_installed docker-ce; then
            continue
        fi
        _apt_installed "$pkg" || missing+=("$pkg")
    done
    if [[ ${#missing[@]} -eq 0 ]]; then
        return 0
    fi
    say "installing Debian packages: ${missing[*]}"
    if [[ $_BERTH_APT_UPDATED -eq 0 ]]; then
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q \
            || die "apt-get update failed: check the network and /etc/apt/sources.list*."
        _BERTH_APT_UPDATED=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        "${missing[@]}" \
        || die "apt-get install ${missing[*]} failed: see the apt output above."
}

# ensure_base_packages [extra-pkg...]: the Berth base set, plus extras.
ensure_base_packages() {
    local pkgs=("${BERTH_APT_BASE[@]}" "$@")
    local py
    py="$(_find_python 2>/dev/null || echo python3)"
    if ! _python_can_venv "$py"; then
        pkgs+=(python3-venv)
    fi
    ensure_apt_packages "${pkgs[@]}"
}

# -- python / venv ------------------------------------------------------------

_python_ok() { # python >= 3.11?
    "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' >/dev/null 2>&1
}

_python_can_venv() {
    "$1" -c 'import venv, ensurepip' >/dev/null 2>&1
}

# Print the first python >= 3.11: $BERTH_PYTHON, python3 on PATH, then versioned names.
_find_python() {
    local candidate
    for candidate in ${BERTH_PYTHON:-} python3 python3.13 python3.12 python3.11 /usr/bin/python3; do
        if command -v "$candidate" >/dev/null 2>&1 && _python_ok "$candidate"; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}

_pyproject_sha() {
    cat "$BERTH_REPO/pyproject.toml" "$BERTH_REPO/constraints.txt" | sha256sum | cut -d' ' -f1
}

# ensure_venv [extras]: .venv exists with python >= 3.11 and `pip install -c constraints.txt
# -e ".[extras]"` has run since pyproject.toml or constraints.txt last changed (the pinned
# versions every install gets; scripts/update-constraints moves them). The stamp file
# holds one line per installed extras set ("<sha256 of both files> <extras>"); an install
# with extras also satisfies a later call without extras.
ensure_venv() {
    local extras="${1:-}"
    local stamp="$BERTH_VENV/.berth-install-stamp"
    local py sha spec

    if [[ -x $BERTH_VENV/bin/python ]] && ! _python_ok "$BERTH_VENV/bin/python"; then
        warn "$BERTH_VENV is broken or older than Python 3.11: recreating it."
        rm -rf "$BERTH_VENV"
    fi
    if [[ ! -x $BERTH_VENV/bin/python ]]; then
        py="$(_find_python)" \
            || die "no Python >= 3.11 found: install one (Debian 12: apt-get install python3) or set BERTH_PYTHON=/path/to/python3.11."
        if ! _python_can_venv "$py"; then
            ensure_apt_packages python3-venv
            _python_can_venv "$py" \
                || die "$py cannot create a virtualenv (no venv/ensurepip): install python3-venv for it."
        fi
        say "creating $BERTH_VENV with $py ($("$py" -c 'import platform; print(platform.python_version())'))"
        "$py" -m venv "$BERTH_VENV" || die "'$py -m venv $BERTH_VENV' failed: see above."
        rm -f "$stamp"
    fi

    sha="$(_pyproject_sha)"
    if [[ -f $stamp ]]; then
        if [[ -z $extras ]] && grep -q "^$sha " "$stamp"; then
            return 0
        fi
        if [[ -n $extras ]] && grep -qx "$sha $extras" "$stamp"; then
            return 0
        fi
    fi

    spec="."
    [[ -n $extras ]] && spec=".[$extras]"
    say "installing Berth into .venv: pip install -c constraints.txt -e \"$spec\" (pyproject.toml or constraints.txt changed, or first run)"
    # pip's (and setuptools') chatter goes to a log, shown only when the install fails.
    local log="$BERTH_VENV/berth-pip-install.log"
    if ! (cd "$BERTH_REPO" \
        && "$BERTH_VENV/bin/python" -m pip install --disable-pip-version-check \
            -c constraints.txt -e "$spec") \
        >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        die "pip install -e \"$spec\" failed: see the last lines of $log above (network to PyPI? a broken pyproject.toml?)."
    fi
    {
        if [[ -f $stamp ]]; then
            grep "^$sha " "$stamp" | grep -vx "$sha $extras" || true
        fi
        echo "$sha $extras"
    } >"$stamp.tmp"
    mv "$stamp.tmp" "$stamp"
}

# -- docker -------------------------------------------------------------------

_docker() { docker -H "$BERTH_DOCKER_SOCKET" "$@"; }

# ensure_docker: the Docker engine answers on the default socket; start dockerd if not.
ensure_docker() {
    command -v docker >/dev/null 2>&1 \
        || die "the docker CLI is missing: run 'apt-get install docker.io' (or scripts/up, which does)."
    if _docker info >/dev/null 2>&1; then
        return 0
    fi
    command -v dockerd >/dev/null 2>&1 \
        || die "dockerd is missing: run 'apt-get install docker.io' (or scripts/up, which does)."

    local p running=0
    for p in $(pgrep -x dockerd 2>/dev/null || true); do
        pid_alive "$p" && running=1
    done
    if ((running)); then
        say "dockerd is running but not answering yet; waiting for it"
    elif [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; then
        say "starting the Docker engine with systemctl"
        as_root systemctl start docker || warn "systemctl start docker failed; see 'journalctl -u docker'."
    else
        [[ $EUID -eq 0 ]] || die "the Docker engine is not running and starting dockerd needs root: run as root."
        say "starting dockerd in the background (log: $BERTH_DOCKERD_LOG)"
        # setsid: its own session, so it outlives this script and its terminal.
        setsid dockerd >>"$BERTH_DOCKERD_LOG" 2>&1 </dev/null &
    fi

    local waited=0
    until _docker info >/dev/null 2>&1; do
        if ((waited >= 60)); then
            [[ -f $BERTH_DOCKERD_LOG ]] && tail -n 20 "$BERTH_DOCKERD_LOG" >&2
            die "the Docker engine did not answer on $BERTH_DOCKER_SOCKET within 60 s: see $BERTH_DOCKERD_LOG (last lines above)."
        fi
        sleep 1
        waited=$((waited + 1))
    done
    say "Docker engine is up ($(_docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?'))"
}

# -- test images ----------------------------------------------------------------

# The path of the static busybox binary from Debian's busybox-static package.
_busybox_static() {
    local path
    path="$(dpkg -L busybox-static 2>/dev/null | grep -E '/bin/busybox$' | head -n1 || true)"
    [[ -n $path && -x $path ]] \
        || die "busybox-static is not installed: run 'apt-get install busybox-static' (scripts/test does)."
    echo "$path"
}

# Hash of a build context: every file in it (sorted by path) plus extra inputs.
_context_hash() {
    local dir="$1"
    shift
    {
        (cd "$dir" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum)
        printf '%s\n' "$@"
    } | sha256sum | cut -d' ' -f1
}

_image_label() { # image label -> value (empty when the image is missing)
    _docker image inspect -f "{{ index .Config.Labels \"$2\" }}" "$1" 2>/dev/null || true
}

# build_busybox_image: berth-test/busybox:latest and :1, FROM scratch with busybox-static.
build_busybox_image() {
    local ctx="$BERTH_REPO/images/busybox"
    local latest="$BERTH_TEST_IMAGE_REPO:latest" one="$BERTH_TEST_IMAGE_REPO:1"
    local src hash
    [[ -f $ctx/Dockerfile ]] || die "$ctx/Dockerfile is missing: restore it from git."
    src="$(_busybox_static)"
    mkdir -p "$ctx/bin"
    if ! cmp -s "$src" "$ctx/bin/busybox"; then
        cp "$src" "$ctx/bin/busybox"
    fi
    hash="$(_context_hash "$ctx")"

    if [[ "$(_image_label "$latest" "$BERTH_IMAGE_HASH_LABEL")" != "$hash" ]]; then
        say "building $latest (context images/busybox changed or image missing)"
        local log
        log="$(mktemp)"
        if ! DOCKER_BUILDKIT=0 _docker build --label "$BERTH_IMAGE_HASH_LABEL=$hash" \
            -t "$latest" -t "$one" "$ctx" >"$log" 2>&1; then
            cat "$log" >&2
            rm -f "$log"
            die "docker build of $latest failed: see the build output above."
        fi
        rm -f "$log"
        _docker run --rm "$latest" sh -c 'test -x /bin/ps && test -x /bin/top' \
            || die "$latest was built but 'sh' does not run in it: is $src really static?"
    else
        say "$latest is up to date"
    fi
    if [[ "$(_image_label "$one" "$BERTH_IMAGE_HASH_LABEL")" != "$hash" ]]; then
        _docker tag "$latest" "$one"
    fi
}

# The Debian mirror apt uses on this machine (deb822 sources or sources.list).
_debian_mirror() {
    local uri
    uri="$(grep -hsE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | awk '{print $2}' | grep -E '/debian/?$' | head -n1 || true)"
    if [[ -z $uri ]]; then
        uri="$(grep -hsE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
            | awk '{for (i = 2; i <= NF; i++) if ($i ~ /^(http|https|file):/) {print $i; exit}}' \
            | grep -E '/debian/?$' | head -n1 || true)"
    fi
    echo "${uri:-http://deb.debian.org/debian}"
}

BERTH_SWARM_NODE_REPO="berth/swarm-node"
BERTH_SWARM_NODE_SUITE="${BERTH_SWARM_NODE_SUITE:-bookworm}"

# build_swarm_node_image: berth/swarm-node:latest and :1, the swarm-mode cluster
# driver's node image: a Debian rootfs made by debootstrap (minbase plus the
# packages in images/swarm-node/packages: docker.io, iptables, ...) imported with
# images/swarm-node/entrypoint.sh, which runs dockerd with TLS on :2376. Cached by
# a content-hash label (context, suite, mirror): rebuilt only when one changes.
# Set BERTH_SWARM_NODE=0 to skip it (no swarm-mode clusters can be created then).
build_swarm_node_image() {
    [[ ${BERTH_SWARM_NODE:-1} == 0 ]] && return 0
    local ctx="$BERTH_REPO/images/swarm-node"
    local latest="$BERTH_SWARM_NODE_REPO:latest" one="$BERTH_SWARM_NODE_REPO:1"
    local mirror hash include
    [[ -f $ctx/entrypoint.sh && -f $ctx/packages ]] || die "$ctx is incomplete: restore it from git."
    mirror="$(_debian_mirror)"
    hash="$(_context_hash "$ctx" "$BERTH_SWARM_NODE_SUITE" "$mirror")"
    if [[ "$(_image_label "$latest" "$BERTH_IMAGE_HASH_LABEL")" == "$hash" ]]; then
        say "$latest is up to date"
    else
        command -v debootstrap >/dev/null 2>&1 || ensure_apt_packages debootstrap
        [[ $EUID -eq 0 ]] || die "building $latest needs root (debootstrap): run as root."
        include="$(grep -vE '^\s*(#|$)' "$ctx/packages" | paste -sd, -)"
        local root log started
        root="$(mktemp -d /var/tmp/berth-swarm-node.XXXXXX)"
        log="$root.log"
        started=$SECONDS
        say "building $latest: debootstrap $BERTH_SWARM_NODE_SUITE from $mirror (a few minutes, once; log: $log)"
        if ! debootstrap --variant=minbase --include="$include" \
            "$BERTH_SWARM_NODE_SUITE" "$root/rootfs" "$mirror" >"$log" 2>&1; then
            tail -n 30 "$log" >&2
            rm -rf "$root"
            die "debootstrap failed: see the last lines of $log above (network to $mirror?)."
        fi
        rm -rf "$root"/rootfs/var/cache/apt/archives/*.deb "$root"/rootfs/var/lib/apt/lists/* \
            "$root"/rootfs/usr/share/doc/* "$root"/rootfs/usr/share/man/*
        install -m 0755 "$ctx/entrypoint.sh" "$root/rootfs/usr/local/bin/berth-node-entrypoint"
        if ! tar -C "$root/rootfs" -c . | _docker import \
            --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            --change 'ENTRYPOINT ["/usr/local/bin/berth-node-entrypoint"]' \
            --change 'EXPOSE 2376 2377 7946 4789' \
            --change "LABEL $BERTH_IMAGE_HASH_LABEL=$hash" \
            - "$latest" >>"$log" 2>&1; then
            tail -n 10 "$log" >&2
            rm -rf "$root"
            die "docker import of $latest failed: see $log."
        fi
        rm -rf "$root"
        rm -f "$log"
        say "built $latest in $((SECONDS - started)) s"
    fi
    if [[ "$(_image_label "$one" "$BERTH_IMAGE_HASH_LABEL")" != "$hash" ]]; then
        _docker tag "$latest" "$one"
    fi
}

# build_test_images: every local image the tests use (nothing comes from Docker Hub).
build_test_images() {
    ensure_docker
    build_busybox_image
    build_swarm_node_image
}

# -- sandboxed runtime (gVisor) ------------------------------------------------

BERTH_DOCKER_DAEMON_JSON="${BERTH_DOCKER_DAEMON_JSON:-/etc/docker/daemon.json}"

# ensure_runsc: gVisor's runsc installed (Debian package runsc) and registered with
# the engine as runtime "runsc" with --network=none (gVisor's own network stack
# does not work with Docker's bridge here: such containers have loopback only).
# Set BERTH_RUNSC=0 to skip. Never fatal: without it, `--runtime runsc` is refused
# by the scheduler with "runtime runsc not available".
ensure_runsc() {
    [[ ${BERTH_RUNSC:-1} == 0 ]] && return 0
    if ! command -v runsc >/dev/null 2>&1; then
        ensure_apt_packages runsc || { warn "cannot install runsc: --runtime runsc stays unavailable"; return 0; }
    fi
    ensure_runsc_for_podman
    if _docker info --format '{{json .Runtimes}}' 2>/dev/null | grep -q '"runsc"'; then
        return 0
    fi
    say "registering runsc (gVisor) with the Docker engine in $BERTH_DOCKER_DAEMON_JSON"
    as_root python3 - "$BERTH_DOCKER_DAEMON_JSON" "$(command -v runsc)" <<'PY' || { warn "could not edit $BERTH_DOCKER_DAEMON_JSON"; return 0; }
import json, os, sys
path, runsc = sys.argv[1], sys.argv[2]
data = {}
if os.path.exists(path) and open(path).read().strip():
    data = json.load(open(path))
data.setdefault("runtimes", {})["runsc"] = {"path": runsc, "runtimeArgs": ["--network=none"]}
os.makedirs(os.path.dirname(path), exist_ok=True)
with open(path + ".tmp", "w") as f:
    json.dump(data, f, indent=2)
os.replace(path + ".tmp", path)
PY
    # runtimes are reloadable: SIGHUP, no restart, running containers untouched.
    local p
    for p in $(pgrep -x dockerd 2>/dev/null || true); do
        as_root kill -HUP "$p" || true
    done
    sleep 1
    if _docker info --format '{{json .Runtimes}}' 2>/dev/null | grep -q '"runsc"'; then
        say "runsc is registered"
    else
        warn "runsc is not listed by 'docker info' after the reload: restart dockerd to pick up $BERTH_DOCKER_DAEMON_JSON"
    fi
}

# ensure_runsc_for_podman: the wrapper scripts/podman/containers.conf names as
# Podman's "runsc" runtime (runsc --network=none: Podman cannot pass runtime
# arguments). Idempotent.
ensure_runsc_for_podman() {
    local wrapper=/usr/local/lib/berth/runsc-podman runsc
    runsc="$(command -v runsc)" || return 0
    local body
    body="$(printf '#!/bin/sh\n# gVisor for Podman (scripts/podman/containers.conf): runsc with --network=none.\nexec %s --network=none "$@"\n' "$runsc")"
    if [[ -x $wrapper && "$(cat "$wrapper")" == "$body" ]]; then
        return 0
    fi
    as_root mkdir -p "$(dirname "$wrapper")"
    printf '%s\n' "$body" | as_root tee "$wrapper.tmp" >/dev/null
    as_root chmod 755 "$wrapper.tmp"
    as_root mv "$wrapper.tmp" "$wrapper"
}

# -- Podman ---------------------------------------------------------------------

# ensure_podman: Debian's Podman (4.3) and its network backend, for the Podman
# runtime driver. Its tests start `podman system service` themselves, with
# CONTAINERS_CONF=scripts/podman/containers.conf (no default ulimits: this
# sandbox refuses Podman's raised nofile/nproc without CAP_SYS_RESOURCE).
ensure_podman() {
    ensure_apt_packages podman netavark
}

# _ensure_pinned_venv WHAT MODULE FUNCTION TEST: build (or find) a test virtualenv with
# MODULE's FUNCTION (tests/keystone_server.py build_venv: the pinned packages from PyPI,
# built once and reused while its marker names the same pins). Under CI=true a failure
# is fatal (the tests that need it must run); elsewhere a warning, and TEST is skipped.
_ensure_pinned_venv() {
    local what="$1" module="$2" function="$3" test="$4"
    if (cd "$BERTH_REPO" && "$BERTH_VENV/bin/python" -c \
        "from $module import $function as e; print(e())"); then
        return 0
    fi
    [[ ${CI:-} == true ]] && die "the $what virtualenv could not be built (see above)."
    warn "no $what virtualenv: $test will be skipped."
}

# ensure_keystone_venv: a real OpenStack Keystone for the external-Keystone tests
# (tests/keystone_server.py): the pinned keystone and gunicorn in their own virtualenv
# (/var/tmp/berth-keystone-venv, or $BERTH_KEYSTONE_VENV), under a minute to build.
ensure_keystone_venv() {
    _ensure_pinned_venv "Keystone test" tests.keystone_server ensure_keystone_venv \
        tests/compat/test_openstack_keystone.py
}

# ensure_glance_venv: a real OpenStack Glance for the Glance image driver's tests
# (tests/glance_server.py): the pinned glance (33.0.0, the release of Keystone 30.0.0)
# and gunicorn in their own virtualenv (/var/tmp/berth-glance-venv, or
# $BERTH_GLANCE_VENV), about a minute to build.
ensure_glance_venv() {
    _ensure_pinned_venv "Glance test" tests.glance_server ensure_glance_venv \
        tests/compat/test_openstack_glance.py
}

# ensure_tempest_venv: tempest and the Zun and Magnum tempest plugins (tests/tempest/runner.py
# TEMPEST_PINS) in their own virtualenv (/var/tmp/berth-tempest-venv, or
# $BERTH_TEMPEST_VENV), about a minute to build; used by scripts/tempest.
ensure_tempest_venv() {
    _ensure_pinned_venv tempest tests.tempest.runner tempest_venv \
        tests/compat/test_openstack_tempest.py
}

# -- the image store ------------------------------------------------------------

# start_image_store DATA_DIR [PORT]: Berth's image store, a docker-registry with
# htpasswd auth serving DATA_DIR/image-store on 127.0.0.1:PORT (default 9519),
# kept running by a small supervisor loop (restarted a second after it exits).
# Idempotent. Prints the address; the password is in DATA_DIR/image-store/password.
start_image_store() {
    local data_dir="$1" port="${2:-9519}"
    local dir="$data_dir/image-store"
    local pid_file="$dir/supervisor.pid" log="$dir/registry.log" config pid
    mkdir -p "$dir"
    config="$("$BERTH_VENV/bin/berth" image store-config --dir "$dir" --port "$port")" \
        || die "writing the image store's config failed: see above"
    pid="$(cat "$pid_file" 2>/dev/null || true)"
    if ! pid_alive "$pid"; then
        say "starting the image store on 127.0.0.1:$port (data: $dir/data, log: $log)"
        # shellcheck disable=SC2016  # the inner shell expands these
        setsid bash -c 'echo $$ >"$1"; while true; do docker-registry serve "$2"; echo "docker-registry exited ($?); restarting in 1 s"; sleep 1; done' \
            _ "$pid_file" "$config" >>"$log" 2>&1 </dev/null &
    fi
    local waited=0 code
    while true; do
        code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$port/v2/" 2>/dev/null || true)"
        [[ $code == 401 || $code == 200 ]] && break
        ((waited >= 30)) && { tail -n 20 "$log" >&2; die "the image store did not answer on 127.0.0.1:$port within 30 s: see $log"; }
        sleep 1
        waited=$((waited + 1))
    done
    echo "127.0.0.1:$port"
}

# stop_image_store DATA_DIR: stop the supervisor and its docker-registry (the images stay).
stop_image_store() {
    local pid_file="$1/image-store/supervisor.pid" pid
    pid="$(cat "$pid_file" 2>/dev/null || true)"
    if pid_alive "$pid"; then
        say "stopping the image store (pid $pid)"
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 20); do
            pid_alive "$pid" || break
            sleep 0.5
        done
    fi
    rm -f "$pid_file"
}

# Run as a program: call the functions named on the command line, in order.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    [[ $# -gt 0 ]] || die "usage: $0 FUNCTION... (e.g. ensure_docker build_test_images)"
    for _berth_fn in "$@"; do
        declare -F "$_berth_fn" >/dev/null || die "$0: no function named '$_berth_fn'"
        "$_berth_fn"
    done
fi
