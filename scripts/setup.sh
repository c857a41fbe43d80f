#!/usr/bin/env bash
# Installs the Debian 12 packages the build, the tests and the platform need.
# Safe to repeat: apt runs only when a package is missing.
set -eu
cd "$(dirname "$0")/.."

packages=(
    build-essential cmake pkg-config clang libclang-rt-14-dev
    libzmq3-dev libczmq-dev libmsgpack-dev libsqlite3-dev libwebsockets-dev
    libwebsockets-evlib-uv libuv1-dev
    libjansson-dev libcurl4-openssl-dev dpkg-dev binutils
    sqlite3 curl supervisor systemd procps
    python3 python3-pytest python3-zmq python3-msgpack python3-websockets
    python3-fastapi python3-uvicorn python3-httpx
    chromium chromium-driver python3-selenium
)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "setup: installing ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "setup: not root and no sudo: install ${missing[*]}" >&2; exit 1; }
    sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq "${missing[@]}" >/dev/null
