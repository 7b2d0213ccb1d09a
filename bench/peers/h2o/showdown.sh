#!/bin/sh
# h2o for the showdown (bench/peers/h2o/h2o.peer.json): cleartext HTTP/1.1 on PORT with WORKERS
# threads, the two bodies served by its static file handler (see h2o.conf for why), in a folder
# of its own under /tmp.
set -eu
dir=/tmp/crest-showdown-h2o-$PORT
rm -rf "$dir" && mkdir -p "$dir/www"
printf 'Hello, World!' >"$dir/www/plaintext.txt"
printf '{"message":"Hello, World!"}' >"$dir/www/json.json"
cat >"$dir/h2o.conf" <<CONF
num-threads: ${WORKERS:-1}
max-connections: 16384
http1-request-timeout: 120
error-log: $dir/error.log
listen:
  host: 127.0.0.1
  port: $PORT
hosts:
  default:
    paths:
      /plaintext:
        file.file: $dir/www/plaintext.txt
      /json:
        file.file: $dir/www/json.json
CONF
exec h2o -c "$dir/h2o.conf"
