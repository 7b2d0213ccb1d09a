"""Runs every tests/it/test_*.py with /usr/bin/python3 (each under a hard time limit) and
prints their TAP output followed by a one-line summary per file. Exits non-zero if any failed.

Usage (from the repo root): /usr/bin/python3 tests/it/run_all.py [test_file_substring...]
Environment: CREST_BIN, CREST_IT_APP as for the single files."""

import glob
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
FILE_TIMEOUT = float(os.environ.get("CREST_IT_FILE_TIMEOUT", "120"))


def main():
    files = sorted(glob.glob(os.path.join(HERE, "test_*.py")))
    if sys.argv[1:]:
        files = [f for f in files if any(a in os.path.basename(f) for a in sys.argv[1:])]
    summary = []
    bad = 0
    t0 = time.monotonic()
    for f in files:
        name = os.path.basename(f)
        print("# --- %s" % name, flush=True)
        start = time.monotonic()
        try:
            p = subprocess.run(["/usr/bin/python3", f], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=FILE_TIMEOUT)
            out = p.stdout.decode("utf-8", "replace")
            rc = p.returncode
        except subprocess.TimeoutExpired as e:
            out = (e.stdout or b"").decode("utf-8", "replace")
            out += "\nnot ok - %s finished within %.0fs\n" % (name, FILE_TIMEOUT)
            rc = -1
        sys.stdout.write(out)
        passed = sum(1 for ln in out.splitlines() if ln.startswith("ok - "))
        failed = sum(1 for ln in out.splitlines() if ln.startswith("not ok - "))
        if rc != 0:
            bad += 1
        summary.append("# %-16s %3d ok %3d not ok  exit %s  %.1fs"
                       % (name, passed, failed, rc, time.monotonic() - start))
    print("# --- summary")
    for ln in summary:
        print(ln)
    print("# total %.1fs" % (time.monotonic() - t0))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
