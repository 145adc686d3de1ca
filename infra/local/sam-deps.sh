#!/usr/bin/env bash
# Installs what `sam local` needs on top of `make deps`, when it is missing: a Docker engine
# (Debian's docker.io) and, to run arm64 functions on another CPU, qemu-user-static with its
# binfmt_misc handlers. Usage: sam-deps.sh ARCH (arm64 or x86_64, the functions' architecture).
# As root it installs with apt-get; otherwise it prints the exact commands to run and fails.
set -euo pipefail

ARCH=${1:-arm64}
say() { printf '==> %s\n' "$*" >&2; }
have() { command -v "$1" >/dev/null 2>&1; }
is_root() { [ "$(id -u)" = 0 ]; }

host_arch() {
    case "$(uname -m)" in
        aarch64 | arm64) echo arm64 ;;
        x86_64 | amd64) echo x86_64 ;;
        *) uname -m ;;
    esac
}

packages=()
# dockerd and its runtime (containerd, runc, iptables come as dependencies); dpkg-deb and
# apt-get build the base image (infra/local/lambda-base-image.sh).
have dockerd || packages+=(docker.io)
needs_qemu=false
if [ "$ARCH" != "$(host_arch)" ]; then
    needs_qemu=true
    have qemu-aarch64-static || have qemu-x86_64-static || packages+=(qemu-user-static)
fi

if [ "${#packages[@]}" -gt 0 ]; then
    if is_root && have apt-get; then
        say "apt-get install ${packages[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${packages[@]}" >/dev/null
    else
        say "missing prerequisites; run:"
        printf '    sudo apt-get install -y --no-install-recommends %s\n' "${packages[*]}" >&2
        exit 1
    fi
fi

if $needs_qemu; then
    # The handler must be registered with the F flag (the interpreter is opened at
    # registration), so it also runs binaries inside containers. Debian's package registers it
    # through systemd-binfmt, which does not run where systemd is not init: do it here.
    case "$ARCH" in
        arm64) name=qemu-aarch64 ;;
        x86_64) name=qemu-x86_64 ;;
        *) say "unknown architecture $ARCH"; exit 1 ;;
    esac
    binfmt=/proc/sys/fs/binfmt_misc
    if [ ! -e "$binfmt/register" ]; then
        is_root || { say "binfmt_misc is not mounted; as root: mount -t binfmt_misc binfmt_misc $binfmt"; exit 1; }
        mount -t binfmt_misc binfmt_misc "$binfmt"
    fi
    if [ ! -e "$binfmt/$name" ]; then
        is_root || { say "qemu's binfmt handler is not registered; run this script as root"; exit 1; }
        conf=/usr/lib/binfmt.d/$name.conf
        [ -f "$conf" ] || { say "$conf is missing (qemu-user-static not installed?)"; exit 1; }
        say "registering $name with binfmt_misc (from $conf)"
        grep -v '^#' "$conf" >"$binfmt/register"
    fi
    flags=$(awk '/^flags:/ {print $2}' "$binfmt/$name")
    case "$flags" in
        *F*) ;;
        *) say "$name is registered without the F flag ($flags); containers cannot use it"; exit 1 ;;
    esac
fi

hash -r
have dockerd || { say "dockerd is still not on PATH"; exit 1; }
have docker || { say "docker is still not on PATH"; exit 1; }
say "sam local prerequisites present: $(dockerd --version)"
