#!/usr/bin/env bash
# Builds, once, the local stand-in for the image `sam local` runs `provided.al2023` functions
# in: public.ecr.aws/lambda/provided:al2023-<arch>. Nothing can be pulled from a registry here,
# so it is made from Debian packages: busybox-static (the /bin/sh, mv and chmod SAM CLI's own
# image build runs; SAM CLI then adds its runtime interface emulator) and the glibc the
# functions link (libc6, libgcc-s1). About 14 MB; the root filesystem tarball is reproducible
# (sorted, fixed owner and times) for the same package versions, which the image's labels name.
#
# Usage: lambda-base-image.sh ARCH [--force]   (ARCH: arm64 or x86_64)
# Needs a running Docker engine; packages come through apt-get with a private state
# directory (.local/lambda-base/), so the host's package database is left as it is.
set -euo pipefail
cd "$(dirname "$0")/../.."

ARCH=${1:?usage: lambda-base-image.sh arm64|x86_64 [--force]}
FORCE=${2:-}
case "$ARCH" in
    arm64) DEB_ARCH=arm64 ;;
    x86_64) DEB_ARCH=amd64 ;;
    *) echo "unknown architecture $ARCH" >&2; exit 1 ;;
esac
IMAGE=public.ecr.aws/lambda/provided:al2023-$ARCH
PACKAGES=(busybox-static libc6 libgcc-s1)
# Everything in the root filesystem gets this time, so the tarball only changes with the packages.
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1704067200}

say() { printf '==> %s\n' "$*" >&2; }

if [ -z "$FORCE" ] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
    say "$IMAGE is present ($(docker image inspect -f '{{index .Config.Labels "packages"}}' "$IMAGE"))"
    exit 0
fi

WORK=.local/lambda-base/$ARCH
rm -rf "$WORK/rootfs" "$WORK/debs" "$WORK/context"
mkdir -p "$WORK/state/lists/partial" "$WORK/cache/archives/partial" "$WORK/debs" "$WORK/rootfs" "$WORK/context"
: >"$WORK/status"
STATE=$(cd "$WORK" && pwd)
# The host's package sources, but this architecture's package lists in a state of our own.
apt_private() { # apt_private apt-get|apt-cache ARGS...
    local tool=$1
    shift
    "$tool" -q \
        -o "APT::Architecture=$DEB_ARCH" -o "APT::Architectures::=$DEB_ARCH" \
        -o "Dir::State=$STATE/state" -o "Dir::State::status=$STATE/status" \
        -o "Dir::Cache=$STATE/cache" -o "Debug::NoLocking=1" -o "APT::Sandbox::User=root" "$@"
}

started=$(date +%s)
say "package lists for $DEB_ARCH"
apt_private apt-get update >"$WORK/apt-update.log" 2>&1 || { cat "$WORK/apt-update.log" >&2; exit 1; }
versions=()
for package in "${PACKAGES[@]}"; do
    version=$(apt_private apt-cache show --no-all-versions "$package:$DEB_ARCH" 2>/dev/null \
        | awk '/^Version:/ {print $2}')
    [ -n "$version" ] || { say "no $package for $DEB_ARCH"; exit 1; }
    versions+=("$package=$version")
done
say "downloading ${versions[*]}"
(cd "$WORK/debs" && apt_private apt-get -qq download "${versions[@]}" >/dev/null)
for deb in "$WORK"/debs/*.deb; do
    dpkg-deb -x "$deb" "$WORK/rootfs"
done

root=$WORK/rootfs
rm -rf "$root/usr/share/doc" "$root/usr/share/lintian" "$root/usr/share/man" "$root/usr/share/locale" \
    "$root/usr/share/bug" "$root/usr/share/gcc" "$root/usr/lib/gconv" "$root"/usr/lib/*/gconv
# The applets the image build and the runtime use, as links to the one static /bin/busybox.
mkdir -p "$root/bin"
for applet in sh ash cat chmod cp env ln ls mkdir mv rm sleep test uname; do
    ln -sf busybox "$root/bin/$applet"
done
mkdir -p "$root/var/task" "$root/var/runtime" "$root/opt" "$root/etc" "$root/tmp"
chmod 1777 "$root/tmp"
printf 'root:x:0:0:root:/root:/bin/sh\nsbx_user1051:x:993:990::/home/sbx_user1051:/sbin/nologin\n' >"$root/etc/passwd"
printf 'root:x:0:\nsbx_user1051:x:990:\n' >"$root/etc/group"

tar --sort=name --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 --numeric-owner \
    --format=gnu -C "$root" -cf "$WORK/context/rootfs.tar" .
rootfs_sha=$(sha256sum "$WORK/context/rootfs.tar" | cut -d' ' -f1)

cat >"$WORK/context/Dockerfile" <<DOCKERFILE
FROM scratch
ADD rootfs.tar /
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    LANG=C.UTF-8 TZ=:/etc/localtime \\
    LAMBDA_TASK_ROOT=/var/task LAMBDA_RUNTIME_DIR=/var/runtime
WORKDIR /var/task
LABEL packages="${versions[*]}" rootfs.sha256="$rootfs_sha"
DOCKERFILE
say "building $IMAGE"
docker build --quiet --platform "linux/$ARCH" -t "$IMAGE" "$WORK/context" >"$WORK/build.log" 2>&1 \
    || { cat "$WORK/build.log" >&2; exit 1; }
rm -rf "$WORK/rootfs" "$WORK/debs" "$WORK/context"
size=$(docker image inspect -f '{{.Size}}' "$IMAGE")
say "built $IMAGE in $(( $(date +%s) - started )) s: $(( size / 1000000 )) MB, rootfs sha256 $rootfs_sha"
