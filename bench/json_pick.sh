#!/bin/sh
# The measurement behind crest's JSON library choice (see bench/json_pick.c): parse a todo body,
# check its fields' types, free it. Pinned to one CPU; run it twice to see the noise.
set -eu
cd "$(dirname "$0")/.."
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    libjansson-dev libjson-c-dev libcjson-dev >/dev/null 2>&1 || true
dir=$(mktemp -d /tmp/json_pick.XXXXXX)
echo "| library | ns per body (best of 5 x 300k) | all bodies accepted |"
echo "|---|---|---|"
for lib in JANSSON:-ljansson JSONC:-ljson-c CJSON:-lcjson; do
    cc -O2 -std=c11 -D_GNU_SOURCE -DPICK_${lib%%:*} -I/usr/include/cjson -o "$dir/pick" \
        bench/json_pick.c "${lib#*:}"
    taskset -c 0 "$dir/pick"
done
rm -rf "$dir"
