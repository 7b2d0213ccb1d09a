#!/bin/sh
# Install the Debian packages crest needs to build, test or benchmark, skipping those already
# present. Usage: scripts/deps.sh build|test|bench
set -eu
build="make gcc pkg-config scdoc libuv1-dev libsqlite3-dev libssl-dev zlib1g-dev libcjson-dev libnghttp2-dev libpq-dev"
test="$build groff-base clang libclang-rt-14-dev libcmocka-dev curl wrk python3 clang-format strace python3-websockets nodejs chromium openssl python3-h2 nghttp2-client postgresql redis-server"
bench="$build wrk nginx-light nodejs procps python3-websockets"
case "${1:-build}" in
build) want=$build ;;
test) want=$test ;;
bench) want=$bench ;;
*) echo "usage: $0 build|test|bench" >&2; exit 2 ;;
esac
missing=""
for p in $want; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "deps: installing$missing" >&2
if [ "$(id -u)" != 0 ]; then SUDO=sudo; else SUDO=; fi
$SUDO apt-get update -q >&2
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends $missing >&2
