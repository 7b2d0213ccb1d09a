#!/bin/sh
# Install the Debian packages crest needs to build, test or benchmark, skipping those already
# present; for `test`, also the npm packages of the Express peers (bench/peers/express, from its
# package-lock.json) that tests/it/test_peers.py runs. Usage: scripts/deps.sh build|test|bench
set -eu
cd "$(dirname "$0")/.."
build="make gcc pkg-config scdoc libuv1-dev libsqlite3-dev libssl-dev zlib1g-dev libcjson-dev libnghttp2-dev libpq-dev libmsgpack-dev"
# The FastAPI peers and g++ (better-sqlite3, an Express peer's dependency, builds a native addon).
peers="python3-fastapi python3-uvicorn python3-pydantic python3-httpx g++"
test="$build groff-base clang libclang-rt-14-dev libcmocka-dev curl wrk python3 clang-format strace python3-websockets nodejs chromium openssl python3-h2 nghttp2-client postgresql redis-server $peers"
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
if [ "$(id -u)" != 0 ]; then SUDO=sudo; else SUDO=; fi
if [ -n "$missing" ]; then
    echo "deps: installing$missing" >&2
    $SUDO apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends $missing >&2
fi
[ "$want" = "$test" ] || exit 0
# npm ci again only when the lock file changed since the last install (a copy of it is kept in
# node_modules as the stamp). Debian's nodejs comes without npm; NodeSource's ships it (and
# conflicts with Debian's npm). node-gyp takes Node's headers from /usr/include/node (nodedir)
# instead of downloading them.
express=bench/peers/express
if ! cmp -s "$express/package-lock.json" "$express/node_modules/.crest-lock.json" 2>/dev/null ||
    [ ! -f "$express/node_modules/better-sqlite3/build/Release/better_sqlite3.node" ]; then
    command -v npm >/dev/null || DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q npm >&2
    echo "deps: npm ci in $express" >&2
    [ -f /usr/include/node/node.h ] && export npm_config_nodedir=/usr
    (cd "$express" && npm ci --no-audit --no-fund >&2 &&
        cp package-lock.json node_modules/.crest-lock.json)
fi
