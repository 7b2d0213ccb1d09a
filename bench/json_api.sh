#!/bin/sh
# The cost of crest's JSON layer (crest/json.h) over cJSON alone: see bench/json_api.c. Needs
# `make` first (build/libcrest.a). Pinned to one CPU; run it twice to see the noise.
set -eu
cd "$(dirname "$0")/.."
dir=$(mktemp -d /tmp/json_api.XXXXXX)
cc -O2 -std=c11 -D_GNU_SOURCE -Iinclude $(pkg-config --cflags libcjson) -o "$dir/json_api" \
    bench/json_api.c build/libcrest.a $(pkg-config --libs libuv libcjson sqlite3 libssl zlib \
    libnghttp2) -ldl -lpthread -lm
taskset -c 0 "$dir/json_api"
rm -rf "$dir"
