#!/usr/bin/env bash
# Build both images where no container registry (and no PyTorch index) can be reached, only
# Debian's archive and PyPI, possibly through a TLS-inspecting proxy:
#   1. the base: a stand-in for python:3.11-slim-bookworm made with debootstrap (Debian's
#      python3 3.11, python3-venv, passwd, ca-certificates, `python` on PATH), `docker import`ed,
#      plus this host's CA bundle with PIP_CERT pointing at it, so pip inside the build trusts
#      what the host trusts;
#   2. a package index on 127.0.0.1 holding the torch CPU wheel pip finds on this host and its
#      dependencies (`pip download torch==<pin>`), passed as TORCH_INDEX_URL;
#   3. `docker build --network=host` of service/Dockerfile and training/Dockerfile.
# Usage (as root, for debootstrap, on the first run): deploy/airgap-build.sh
# Environment: DOCKER (client to use, default `docker`), SERVICE_IMAGE, TRAIN_IMAGE (tags),
#   AIRGAP_CACHE (default ~/.cache/mlp-serve-airgap: the debootstrap tarball and the wheels,
#   reused by later runs), DEBIAN_MIRROR (debootstrap's default when unset), BUILD_TIMES (a file
#   to append "<image> <seconds>" lines to), ONLY (service or train: build just that one),
#   AIRGAP_INDEX_PORT (first port tried for the local index, default 38621).
# The base image is kept between runs (tagged by the hash of its inputs) so later builds reuse
# Docker's layer cache; `docker image rm` it, or remove AIRGAP_CACHE, to start from scratch.
set -euo pipefail
cd "$(dirname "$0")/.."

DOCKER=${DOCKER:-docker}
SERVICE_IMAGE=${SERVICE_IMAGE:-mlp-serve:0.1.0}
TRAIN_IMAGE=${TRAIN_IMAGE:-mlp-serve-train:0.1.0}
CACHE=${AIRGAP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mlp-serve-airgap}
SUITE=bookworm
PACKAGES=python3,python3-venv,passwd,ca-certificates
HOST_CA=${HOST_CA:-/etc/ssl/certs/ca-certificates.crt}
PY=${PYTHON:-python3}
export DOCKER_BUILDKIT=1

say() { printf 'airgap-build: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

"$DOCKER" info >/dev/null 2>&1 || die "no Docker engine answers to '$DOCKER info' (start dockerd first)"
[ -r "$HOST_CA" ] || die "no CA bundle at $HOST_CA (set HOST_CA to the host's PEM bundle)"
mkdir -p "$CACHE"
WORK=$(mktemp -d)
INDEX_PID=
cleanup() {
    [ -z "$INDEX_PID" ] || kill "$INDEX_PID" 2>/dev/null || true
    # A debootstrap that failed midway may leave its mounts inside the tree.
    for mount in proc sys dev/pts; do umount "$WORK/rootfs/$mount" 2>/dev/null || true; done
    rm -rf --one-file-system "$WORK"
}
trap cleanup EXIT

# --- 1. base image -----------------------------------------------------------------------------
rootfs_key=$(printf '%s %s' "$SUITE" "$PACKAGES" | sha256sum | cut -c1-12)
rootfs_tar="$CACHE/rootfs-$SUITE-$rootfs_key.tar"
base_key=$(cat "$HOST_CA" <(echo "$rootfs_key") | sha256sum | cut -c1-12)
BASE_IMAGE="mlp-serve-base:$SUITE-$base_key"
if "$DOCKER" image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    say "base image $BASE_IMAGE (kept from an earlier run)"
else
    if [ ! -s "$rootfs_tar" ]; then
        command -v debootstrap >/dev/null || die "debootstrap is missing: apt-get install debootstrap"
        [ "$(id -u)" = 0 ] || die "debootstrap needs root for the first build (later runs reuse $rootfs_tar)"
        say "debootstrap $SUITE ($PACKAGES) -> $rootfs_tar"
        root="$WORK/rootfs"
        debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$root" ${DEBIAN_MIRROR:+"$DEBIAN_MIRROR"} \
            > "$WORK/debootstrap.log" 2>&1 || { tail -20 "$WORK/debootstrap.log" >&2; die "debootstrap failed"; }
        # As in python:3.11-slim: `python` is on PATH; no apt lists or caches in the image.
        ln -sf /usr/bin/python3 "$root/usr/local/bin/python"
        rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
        tar -C "$root" --numeric-owner -cf "$rootfs_tar.part" . && mv "$rootfs_tar.part" "$rootfs_tar"
        rm -rf "$root"
    fi
    say "docker import $rootfs_tar"
    "$DOCKER" import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' "$rootfs_tar" "mlp-serve-rootfs:$SUITE-$rootfs_key" >/dev/null
    mkdir -p "$WORK/base" && cp "$HOST_CA" "$WORK/base/ca-bundle.crt"
    printf '%s\n' "FROM mlp-serve-rootfs:$SUITE-$rootfs_key" \
        'COPY ca-bundle.crt /usr/local/share/build-ca/ca-bundle.crt' \
        'ENV PIP_CERT=/usr/local/share/build-ca/ca-bundle.crt' > "$WORK/base/Dockerfile"
    "$DOCKER" build -q -t "$BASE_IMAGE" "$WORK/base" >/dev/null
    "$DOCKER" image rm "mlp-serve-rootfs:$SUITE-$rootfs_key" >/dev/null
    say "base image $BASE_IMAGE"
fi

# --- 2. local torch index ----------------------------------------------------------------------
torch_pin=$(sed -n 's/^ *"\(torch==[^"]*\)".*/\1/p' pyproject.toml | head -1)
[ -n "$torch_pin" ] || die "no exact torch pin (\"torch==...\") found in pyproject.toml"
wheels="$CACHE/wheels-${torch_pin#torch==}"
if [ "${ONLY:-train}" = train ] && [ ! -f "$wheels/.complete" ]; then
    say "pip download $torch_pin -> $wheels"
    "$PY" -m pip download --quiet --only-binary=:all: --python-version 3.11 -d "$wheels" "$torch_pin" \
        > "$WORK/pip.log" 2>&1 || { tail -20 "$WORK/pip.log" >&2; die "pip could not download $torch_pin and its dependencies"; }
    touch "$wheels/.complete"
fi
if [ "${ONLY:-train}" = train ]; then
    # A PEP 503 "simple" index: /simple/<project>/ lists that project's files.
    "$PY" - "$wheels" "$WORK/index" <<'EOF'
import html, os, re, sys
from pathlib import Path
wheels, index = Path(sys.argv[1]), Path(sys.argv[2])
projects: dict[str, list[Path]] = {}
for f in sorted(wheels.glob("*.whl")) + sorted(wheels.glob("*.tar.gz")):
    name = re.split(r"-\d", f.name, maxsplit=1)[0]
    projects.setdefault(re.sub(r"[-_.]+", "-", name).lower(), []).append(f)
for name, files in projects.items():
    folder = index / "simple" / name
    folder.mkdir(parents=True)
    for f in files:
        os.symlink(f, index / f.name)
    links = "".join(f'<a href="../../{html.escape(f.name)}">{html.escape(f.name)}</a>\n' for f in files)
    (folder / "index.html").write_text(f"<!DOCTYPE html><html><body>\n{links}</body></html>\n")
EOF
    # TORCH_INDEX_URL is part of the layer cache key, so prefer the same port every run (the
    # first free one of a few fixed ports); any free port otherwise (a cold build then).
    port=$("$PY" - "${AIRGAP_INDEX_PORT:-38621}" <<'EOF'
import socket, sys
first = int(sys.argv[1])
for port in [*range(first, first + 8), 0]:
    with socket.socket() as s:
        # As the server binds: a port whose last connections sit in TIME_WAIT is free.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
        print(s.getsockname()[1])
        break
EOF
)
    # Loopback only; it also exits when this script dies without running its trap (SIGKILL).
    "$PY" - "$WORK/index" "$port" > "$WORK/index.log" 2>&1 <<'EOF' &
import functools, http.server, os, sys, threading, time
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[1])
server = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[2])), handler)
threading.Thread(target=server.serve_forever, daemon=True).start()
parent = os.getppid()
while os.getppid() == parent:
    time.sleep(1)
EOF
    INDEX_PID=$!
    for _ in $(seq 50); do
        "$PY" -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/simple/torch/', timeout=1)" 2>/dev/null && break
        sleep 0.2
    done
    say "torch index on http://127.0.0.1:$port/simple"
fi

# --- 3. the images -------------------------------------------------------------------------------
build() {  # build <Dockerfile> <tag> [extra args]
    local dockerfile=$1 tag=$2 start
    shift 2
    start=$(date +%s)
    say "building $tag from $dockerfile"
    "$DOCKER" build --network=host --progress=plain --build-arg PYTHON_IMAGE="$BASE_IMAGE" "$@" \
        -f "$dockerfile" -t "$tag" . > "$WORK/build.log" 2>&1 || { tail -40 "$WORK/build.log" >&2; die "building $tag failed"; }
    say "built $tag in $(( $(date +%s) - start )) s"
    [ -z "${BUILD_TIMES:-}" ] || echo "$tag $(( $(date +%s) - start ))" >> "$BUILD_TIMES"
}
[ "${ONLY:-service}" != service ] || build service/Dockerfile "$SERVICE_IMAGE"
[ "${ONLY:-train}" != train ] || build training/Dockerfile "$TRAIN_IMAGE" --build-arg TORCH_INDEX_URL="http://127.0.0.1:$port/simple"
