#!/bin/sh
# nginx for the showdown (bench/peers/nginx/nginx.peer.json): bench/peers/nginx/nginx.conf with
# the port and WORKERS worker processes, in a prefix folder of its own under /tmp.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
dir=/tmp/crest-showdown-nginx-$PORT
rm -rf "$dir" && mkdir -p "$dir"
sed -e "s/@PORT@/$PORT/" -e "s/^worker_processes 1;/worker_processes ${WORKERS:-1};/" \
    "$here/nginx.conf" >"$dir/nginx.conf"
exec nginx -p "$dir/" -c "$dir/nginx.conf" -e "$dir/error.log"
