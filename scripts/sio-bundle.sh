#!/bin/sh
# Copy socket.io-client's browser bundle from npm into the demo's public folder (app/public/vendor,
# git-ignored), where app/public/sio.html loads it. The package is tests/e2e's (its package.json
# pins the version the Socket.IO tests use); when it is not installed yet this installs it as
# scripts/deps.sh installs things: npm from apt-get if needed, then `npm install` there.
# Usage: scripts/sio-bundle.sh (from any directory). Exits non-zero, saying why, when it cannot.
set -eu
cd "$(dirname "$0")/.."
pkg=tests/e2e/node_modules/socket.io-client/dist
out=app/public/vendor
if [ ! -f "$pkg/socket.io.min.js" ]; then
    if [ "$(id -u)" != 0 ]; then SUDO=sudo; else SUDO=; fi
    if ! command -v npm >/dev/null; then
        echo "sio-bundle: installing npm" >&2
        $SUDO apt-get update -q >&2
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q nodejs npm >&2
    fi
    echo "sio-bundle: npm install in tests/e2e (socket.io-client)" >&2
    (cd tests/e2e && npm install --no-audit --no-fund >&2)
fi
mkdir -p "$out"
# Through a temporary name and rename, so that a page being served never gets half a file.
for f in socket.io.min.js socket.io.min.js.map; do
    cmp -s "$pkg/$f" "$out/$f" && continue
    cp "$pkg/$f" "$out/.$f.$$"
    mv -f "$out/.$f.$$" "$out/$f"
done
