#!/usr/bin/env bash
# bench/lines.sh: the code lines of each example app in crest (examples/APP.c) and in its Express
# and FastAPI twins (bench/peers/express/APP.js, bench/peers/fastapi/APP.py; bench/peers/README.md
# says what the apps do), as a markdown table with the ratio crest/Express (the target: at most
# 2). Code lines are counted by cloc (Debian's; installed if missing): blank lines and comments
# do not count, and Python docstrings are comments. An app crest has no example for yet shows "-".
# Usage: bench/lines.sh              (env: APPS, default "rest downstream chat")
set -euo pipefail
BENCH=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$BENCH")
# shellcheck source=bench/lib.sh
source "$BENCH/lib.sh"
APPS=${APPS:-rest downstream chat}

command -v cloc >/dev/null || apt_install cloc

count() { # FILE -> its code lines, or "-" when there is no such file
    [[ -f $1 ]] || { echo "-"; return 0; }
    local n
    n=$(cloc --quiet --csv --by-file "$1" | awk -F, '$1 != "language" && $1 != "SUM" && NF >= 5 {
        print $5; exit }')
    echo "${n:-0}"
}

ratio() { # CREST EXPRESS -> CREST/EXPRESS to two decimals, or "-"
    [[ $1 == - || $2 == - || $2 == 0 ]] && { echo "-"; return 0; }
    awk -v c="$1" -v e="$2" 'BEGIN { printf "%.2f%s", c / e, (c > 2 * e ? " (over 2)" : "") }'
}

echo "| app | crest | Express | FastAPI | crest / Express |"
echo "| --- | ---: | ---: | ---: | ---: |"
for app in $APPS; do
    c=$(count "$REPO/examples/$app.c")
    e=$(count "$BENCH/peers/express/$app.js")
    f=$(count "$BENCH/peers/fastapi/$app.py")
    echo "| $app | $c | $e | $f | $(ratio "$c" "$e") |"
done
echo
echo "Code lines (cloc $(cloc --version), no blank lines or comments; Python docstrings are" \
    "comments) of examples/APP.c, bench/peers/express/APP.js and bench/peers/fastapi/APP.py."
