#!/usr/bin/env bash
# Build the geoseg container image and smoke-test it without a container runtime.
#
# Where `podman run` / `docker run` cannot start containers (no cgroups, no registry), the image is
# still a filesystem: this script mounts it read-only-in-practice (`podman image mount`), runs the
# commands inside it with chroot as the image's own non-root user and with the image's own
# environment, and checks the results from outside.
#
#   1. base: `debian:bookworm-slim` is used when present; otherwise it is built with debootstrap
#      (Debian's package mirror is enough) and imported under that name, so the Containerfile is
#      the one online users build.
#   2. build: `podman build` (chroot isolation, docker format so HEALTHCHECK is kept; the CA bundle
#      in CA_BUNDLE, or PIP_CERT, is passed as the build secret `ca-bundle` for pip behind a
#      TLS-inspecting proxy).
#   3. smoke test, inside the image: `geoseg info`, `geoseg predict` on the sample scene without
#      --model (the bundled model), the result checked with rasterio outside and timed against the
#      same command outside the image; `geoseg app` started on 127.0.0.1 and its health URL polled
#      (skipped with a message when the image has no `geoseg app`); a Dask scheduler and worker
#      started inside, a client inside the image seeing the worker, and the image's HEALTHCHECK
#      against the worker's /health (skipped when the image has no dask); with moto and boto3 on
#      the outside Python, the scene served by a local S3 server and read inside the image as
#      s3://..., credentials and endpoint passed as AWS_* variables as `docker run -e` passes them.
#   4. clean-up: every process started inside the image (each runs as its own process group, so
#      the app's and Dask's children stop with it; none may remain rooted in the image mount), chroot
#      mounts, the image mount, scratch files and dangling layers. The image stays; `podman rmi
#      geoseg:latest` removes it.
#
# Needs: root, podman (Debian: apt-get install podman), debootstrap when the base is missing, and a
# Python with rasterio for the outside checks (PYTHON, default .venv/bin/python or python3).
# Environment: IMAGE (geoseg:latest), CONTAINERFILE (Containerfile), STORAGE_DRIVER (podman's
# default, overlay as root; vfs also works but stores every layer as a full copy), CA_BUNDLE,
# BUILD_ARGS (extra `podman build` arguments), SKIP_BUILD=1 (test an image already built),
# DEBIAN_MIRROR (http://deb.debian.org/debian).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/process-groups.sh
source scripts/process-groups.sh

IMAGE=${IMAGE:-geoseg:latest}
CONTAINERFILE=${CONTAINERFILE:-Containerfile}
BASE=debian:bookworm-slim
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SCENE=sample_data/rotterdam_ps_rgb.tif
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
podman() { command podman ${STORAGE_DRIVER:+--storage-driver "$STORAGE_DRIVER"} "$@"; }
say() { printf '== %s\n' "$*"; }
die() { printf 'image-check: %s\n' "$*" >&2; exit 1; }

[[ $(id -u) == 0 ]] || die "expected root (podman with chroot isolation and chroot need it); got uid $(id -u); run it with sudo"
command -v podman >/dev/null || die "podman not found; install it (Debian/Ubuntu: apt-get install podman)"
"$PYTHON" -c "import rasterio" 2>/dev/null || die "$PYTHON cannot import rasterio; set PYTHON to a Python with geoseg's dependencies (make install)"

SCRATCH=$(mktemp -d "${TMPDIR:-/var/tmp}/geoseg-image-check.XXXXXX")
MNT=""
BOUND=()
APP_PID=""
S3_PID=""
DASK_PIDS=()
cleanup() {
    set +e
    STOP_GRACE=5 stop_groups ${APP_PID:+"$APP_PID"} "${DASK_PIDS[@]}"
    [[ -n "$S3_PID" ]] && kill "$S3_PID" 2>/dev/null && wait "$S3_PID" 2>/dev/null
    local i left
    if [[ -n "$MNT" && -d "$MNT" ]]; then  # anything still running inside, whatever its group
        left=$(rooted_in "$MNT")
        # shellcheck disable=SC2086
        [[ -n "$left" ]] && { describe $left >&2; kill -KILL $left 2>/dev/null; sleep 1; }
    fi
    for ((i = ${#BOUND[@]} - 1; i >= 0; i--)); do umount -l "${BOUND[i]}" 2>/dev/null; done
    [[ -n "$MNT" ]] && podman image unmount "$IMAGE" >/dev/null 2>&1
    rm -rf "$SCRATCH"
    podman image prune -f >/dev/null 2>&1
}
trap cleanup EXIT

# ---------------------------------------------------------------------------------------- base
if podman image exists "$BASE"; then
    say "base $BASE present"
else
    command -v debootstrap >/dev/null || die "$BASE is missing and debootstrap is not installed; apt-get install debootstrap, or podman pull $BASE"
    say "base $BASE missing: building it with debootstrap from $MIRROR"
    ROOTFS="$SCRATCH/rootfs"
    t0=$SECONDS
    debootstrap --variant=minbase bookworm "$ROOTFS" "$MIRROR" >"$SCRATCH/debootstrap.log" 2>&1 \
        || { tail -20 "$SCRATCH/debootstrap.log" >&2; die "debootstrap failed (log above)"; }
    # The same sources as the published image (security and point updates), no package caches.
    printf 'deb %s bookworm main\ndeb %s bookworm-updates main\ndeb http://deb.debian.org/debian-security bookworm-security main\n' \
        "$MIRROR" "$MIRROR" >"$ROOTFS/etc/apt/sources.list"
    rm -rf "$ROOTFS"/var/cache/apt/*.bin "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/*
    tar -C "$ROOTFS" -c . | podman import - "$BASE" >/dev/null
    rm -rf "$ROOTFS"
    say "base built in $((SECONDS - t0)) s"
fi

# --------------------------------------------------------------------------------------- build
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    say "building $IMAGE from $CONTAINERFILE"
    t0=$SECONDS
    # shellcheck disable=SC2086
    CA_BUNDLE=${CA_BUNDLE:-${PIP_CERT:-}}
    podman build --isolation chroot --format docker --layers ${CA_BUNDLE:+--secret "id=ca-bundle,src=$CA_BUNDLE"} \
        -f "$CONTAINERFILE" -t "$IMAGE" ${BUILD_ARGS:-} . || die "podman build failed (log above)"
    say "built in $((SECONDS - t0)) s"
fi
podman image exists "$IMAGE" || die "image $IMAGE not found; build it first (make image)"
podman image inspect --format 'size {{.Size}} bytes' "$IMAGE" | awk '{printf "== image size %.2f GB (%s bytes, uncompressed)\n", $2 / 1e9, $2}'

# ------------------------------------------------------------------------- run inside the image
MNT=$(podman image mount "$IMAGE")
[[ -d "$MNT" ]] || die "podman image mount gave no folder (got '$MNT')"
bind() {  # bind SRC onto an existing folder of the image
    [[ -d "$MNT$2" ]] || die "the image has no $2 folder to mount onto"
    mount --bind "$1" "$MNT$2"
    BOUND+=("$MNT$2")
}
mkdir -p "$SCRATCH/data" "$SCRATCH/tmp"
chmod 1777 "$SCRATCH/tmp"
cp "$SCENE" "$SCRATCH/data/"
bind /proc /proc
bind /dev /dev
# A private, world-writable /dev/shm as a container runtime gives (multiprocessing, Dask's nanny).
mount -t tmpfs -o mode=1777,size=256m tmpfs "$MNT/dev/shm"
BOUND+=("$MNT/dev/shm")
bind /sys /sys
bind "$SCRATCH/tmp" /tmp  # nothing is written into the image's own layers
WORKDIR=$(podman image inspect --format '{{.Config.WorkingDir}}' "$IMAGE")
bind "$SCRATCH/data" "${WORKDIR:-/data}"
USER_NAME=$(podman image inspect --format '{{.Config.User}}' "$IMAGE")
[[ -n "$USER_NAME" && "$USER_NAME" != root && "$USER_NAME" != 0 ]] || die "the image runs as root; expected a USER"
IDS=$(chroot "$MNT" /usr/bin/id -u "$USER_NAME"):$(chroot "$MNT" /usr/bin/id -g "$USER_NAME")
chown "$IDS" "$SCRATCH/data"
mapfile -t IMAGE_ENV < <(podman image inspect --format '{{range .Config.Env}}{{println .}}{{end}}' "$IMAGE" | sed '/^$/d')

# a command in the image as its user, in its working folder, with its environment only
INSIDE=(chroot --userspec="$IDS" "$MNT" /usr/bin/env -i "${IMAGE_ENV[@]}" HOME=/tmp
        /bin/sh -c 'cd "$0" && exec "$@"' "${WORKDIR:-/data}")
inside() { "${INSIDE[@]}" "$@"; }
# The background services: chroot, env and sh exec, so each started process is the service itself,
# leading a process group of its own with every child it starts.
start_inside() {  # start_inside LOG CMD...: sets STARTED
    start_group "$1" "${INSIDE[@]}" "${@:2}"
}
none_inside() {  # none_inside WHAT: fail when a process still runs inside the image
    local left
    left=$(rooted_in "$MNT")
    if [[ -n "$left" ]]; then
        # shellcheck disable=SC2086
        describe $left >&2
        # shellcheck disable=SC2086
        kill -KILL $left 2>/dev/null
        die "$1 left processes running inside the image (listed above; now killed)"
    fi
}

say "inside: id; geoseg --version"
inside id
inside geoseg --version

say "inside: geoseg info $(basename "$SCENE")"
inside geoseg info "$(basename "$SCENE")"

say "inside: geoseg predict $(basename "$SCENE") classes.tif (bundled model, no --model)"
t0=$(date +%s.%N)
inside geoseg predict "$(basename "$SCENE")" classes.tif
t_in=$(echo "$(date +%s.%N) - $t0" | bc)
[[ -f "$SCRATCH/data/classes.tif" ]] || die "geoseg predict inside the image wrote no classes.tif"

OUTSIDE=""
if "$PYTHON" -c "import geoseg.cli" 2>/dev/null; then
    say "outside: the same predict with $PYTHON"
    t0=$(date +%s.%N)
    "$PYTHON" -c "from geoseg.cli import main; main()" predict "$SCENE" "$SCRATCH/outside.tif"
    t_out=$(echo "$(date +%s.%N) - $t0" | bc)
    OUTSIDE="$SCRATCH/outside.tif"
fi

say "outside: checking classes.tif with rasterio"
"$PYTHON" - "$SCENE" "$SCRATCH/data/classes.tif" "$OUTSIDE" <<'PY'
import sys

import numpy as np
import rasterio

scene, mask, other = sys.argv[1:4]
with rasterio.open(scene) as src, rasterio.open(mask) as out:
    assert out.crs == src.crs, f"CRS {out.crs} != {src.crs}"
    assert out.transform == src.transform, f"transform {out.transform} != {src.transform}"
    assert (out.height, out.width) == (src.height, src.width), "size differs from the scene"
    assert out.dtypes[0] == "uint8", f"dtype {out.dtypes[0]}, expected uint8"
    data = out.read(1)
    counts = np.bincount(data.ravel(), minlength=256)
    share = ", ".join(f"{i}:{counts[i] / data.size:.1%}" for i in np.flatnonzero(counts))
    print(f"classes.tif: {out.width}x{out.height} {out.dtypes[0]} {out.crs}, same grid as the scene; class shares {share}")
    if other:
        with rasterio.open(other) as ref:
            same = float((ref.read(1) == data).mean())
        print(f"inside vs outside the image: {same:.4%} of pixels identical")
        assert same > 0.999, "the image predicts differently from the local install"
PY
printf '== predict time: inside the image %.1f s' "$t_in"
[[ -n "$OUTSIDE" ]] && printf ', outside %.1f s' "$t_out"
printf '\n'

free_port() { "$PYTHON" -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])"; }

# --------------------------------------------------------------------------------------- s3://
if "$PYTHON" -c "import moto.server, boto3" 2>/dev/null; then
    S3_PORT=$(free_port)
    "$PYTHON" -m moto.server -H 127.0.0.1 -p "$S3_PORT" >"$SCRATCH/s3.log" 2>&1 &
    S3_PID=$!
    S3_ENV=(AWS_ACCESS_KEY_ID=check AWS_SECRET_ACCESS_KEY=check AWS_REGION=us-east-1
            AWS_S3_ENDPOINT="127.0.0.1:$S3_PORT" AWS_HTTPS=NO AWS_VIRTUAL_HOSTING=FALSE)
    "$PYTHON" - "$S3_PORT" "$SCENE" <<'PY'
import sys
import time

import boto3

port, scene = sys.argv[1:3]
s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", aws_access_key_id="check",
                  aws_secret_access_key="check", region_name="us-east-1")
for _ in range(100):
    try:
        s3.create_bucket(Bucket="geoseg-check")
        break
    except Exception:
        time.sleep(0.2)
s3.upload_file(scene, "geoseg-check", "scenes/rotterdam_ps_rgb.tif")
PY
    say "inside: geoseg info / predict s3://geoseg-check/scenes/rotterdam_ps_rgb.tif (local S3 server, AWS_* passed in)"
    inside env "${S3_ENV[@]}" geoseg info s3://geoseg-check/scenes/rotterdam_ps_rgb.tif | sed -n 1,3p
    inside env "${S3_ENV[@]}" geoseg predict s3://geoseg-check/scenes/rotterdam_ps_rgb.tif from_s3.tif
    cmp -s "$SCRATCH/data/from_s3.tif" "$SCRATCH/data/classes.tif" \
        || "$PYTHON" -c "import sys, rasterio; a, b = (rasterio.open(p).read() for p in sys.argv[1:]); assert (a == b).all(), 'the s3:// prediction differs from the local one'" \
            "$SCRATCH/data/from_s3.tif" "$SCRATCH/data/classes.tif"
    say "the s3:// prediction equals the local one"
    kill "$S3_PID"; wait "$S3_PID" 2>/dev/null || true
    S3_PID=""
else
    say "skipped the s3:// check: $PYTHON has no moto[server] and boto3 to serve a local S3"
fi

# ----------------------------------------------------------------------------------------- app
mapfile -t HC < <(podman image inspect --format '{{range .Config.Healthcheck.Test}}{{println .}}{{end}}' "$IMAGE" | sed '/^$/d')
case "${HC[0]:-}" in
    CMD) hc_cmd=("${HC[@]:1}") ;;
    CMD-SHELL) hc_cmd=(/bin/sh -c "${HC[*]:1}") ;;
    *) die "the image has no HEALTHCHECK (build with --format docker)" ;;
esac
if inside geoseg app --help >/dev/null 2>&1; then
    PORT=$(free_port)
    HEALTH_URL="http://127.0.0.1:$PORT/"
    say "inside: geoseg app --host 127.0.0.1 --port $PORT"
    start_inside "$SCRATCH/app.log" geoseg app --host 127.0.0.1 --port "$PORT"
    APP_PID=$STARTED
    code=000
    for _ in $(seq 180); do
        code=$(curl -s -o /dev/null -w '%{http_code}' "$HEALTH_URL" || true)
        [[ "$code" == 200 ]] && break
        kill -0 "$APP_PID" 2>/dev/null || break
        sleep 1
    done
    # The image's own HEALTHCHECK command, pointed at the test port.
    hc=$(inside env GEOSEG_HEALTH_URL="$HEALTH_URL" "${hc_cmd[@]}" >/dev/null 2>&1 && echo ok || echo failed)
    stop_groups "$APP_PID"
    APP_PID=""
    none_inside "geoseg app"
    [[ "$code" == 200 ]] || { tail -20 "$SCRATCH/app.log" >&2; die "the app did not answer 200 on $HEALTH_URL (got $code; log above)"; }
    say "app answered HTTP $code on $HEALTH_URL; the image's HEALTHCHECK command: $hc; app stopped"
    [[ "$hc" == ok ]] || die "the image's HEALTHCHECK failed against the running app"
else
    say "skipped the app check: this image has no 'geoseg app' command (the web app is not installed)"
fi

# ---------------------------------------------------------------------------------------- dask
if inside sh -c 'command -v dask' >/dev/null 2>&1; then
    SCHED_PORT=$(free_port)
    WORKER_HTTP=$(free_port)
    say "inside: dask scheduler on 127.0.0.1:$SCHED_PORT and dask worker (dashboard :$WORKER_HTTP)"
    start_inside "$SCRATCH/scheduler.log" dask scheduler --host 127.0.0.1 --port "$SCHED_PORT" \
        --dashboard-address "127.0.0.1:$(free_port)"
    DASK_PIDS=("$STARTED")
    start_inside "$SCRATCH/worker.log" env GEOSEG_HEALTH_URL="http://127.0.0.1:$WORKER_HTTP/health" \
        dask worker "tcp://127.0.0.1:$SCHED_PORT" --nthreads 1 --host 127.0.0.1 \
        --dashboard-address "127.0.0.1:$WORKER_HTTP"
    DASK_PIDS+=("$STARTED")
    inside python -c "
import sys
from distributed import Client
with Client('tcp://127.0.0.1:$SCHED_PORT', timeout=120) as client:
    client.wait_for_workers(1, timeout=120)
    print('a client inside the image sees', len(client.scheduler_info()['workers']), 'worker(s); geoseg', client.submit(lambda: __import__('geoseg').__version__).result(), 'on the worker')
" || { tail -20 "$SCRATCH/worker.log" >&2; die "the Dask worker did not join the scheduler"; }
    hc=$(inside env GEOSEG_HEALTH_URL="http://127.0.0.1:$WORKER_HTTP/health" "${hc_cmd[@]}" >/dev/null 2>&1 && echo ok || echo failed)
    stop_groups "${DASK_PIDS[@]}"
    DASK_PIDS=()
    none_inside "the Dask scheduler and worker"
    say "the image's HEALTHCHECK against the worker's /health: $hc; scheduler and worker stopped"
    [[ "$hc" == ok ]] || die "the image's HEALTHCHECK failed against the Dask worker"
else
    say "skipped the Dask check: this image has no 'dask' command (the distributed extra is not installed)"
fi

say "image check passed"
