#!/usr/bin/env bash
# Installs the system packages the integration tests need (PostgreSQL server binaries,
# headless Chromium) when they are missing and we run as root. Never fails the build:
# a test that needs a missing program fails with a message that names it.
set -u
need=()
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need+=(postgresql)
command -v chromium >/dev/null || need+=(chromium)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
    echo "system-deps: missing ${need[*]} (not root: install them yourself)" >&2
    exit 0
fi
echo "system-deps: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq "${need[@]}" >/dev/null 2>&1 \
    || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq "${need[@]}" >/dev/null; } \
    || echo "system-deps: could not install ${need[*]}" >&2
exit 0
