"""The man pages: crest(1) and crest(3), rendered from doc/*.scd by the build into BUILD/man/
(the files `make install` copies), render without warnings, and crest(1) names every flag and
topic that `crest demo --help` lists, so that the page cannot fall behind the flag table."""

import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import *  # noqa: E402,F401,F403

T = Suite()
MAN_DIR = os.path.join(os.path.dirname(CREST_BIN), "man")


def render(page):
    """The page as plain text, one paragraph per line (no wrapping, no hyphenation)."""
    path = os.path.join(MAN_DIR, page)
    check(os.path.isfile(path), "%s missing: the build renders it with scdoc (make man)" % path)
    with open(path, "rb") as f:
        roff = f.read()
    check(roff.startswith(b".") or roff.startswith(b"'\\\""), "%s is not roff: %r"
          % (page, roff[:60]))
    if shutil.which("groff"):
        p = subprocess.run(["groff", "-man", "-Tutf8", "-P-cbou", "-rLL=300n", "-rHY=0", "-ww",
                            path], capture_output=True, timeout=20)
        eq(p.returncode, 0, "groff exit status (stderr %r)" % p.stderr)
        eq(p.stderr.decode(errors="replace"), "", "groff warnings for %s" % page)
        text = p.stdout.decode()
    else:  # no formatter: the roff source itself, with its font escapes removed
        text = re.sub(r"\\f[BIRP]", "", roff.decode()).replace("\\-", "-").replace("\\&", "")
    check(len(text) > 2000, "%s renders to %d characters" % (page, len(text)))
    return text


def help_text():
    rc, out, err = run_cli([CREST_BIN, "demo", "--help"])
    eq(rc, 0, "crest demo --help (stderr %r)" % err)
    return out


@T.case("crest(1) renders and names every flag and topic of `crest demo --help`")
def _():
    text = render("crest.1")
    out = help_text()
    flags = re.findall(r"^  (--[a-z][a-z0-9-]*)", out, re.M)
    check(len(flags) > 40, "only %d flags found in --help" % len(flags))
    words = set(re.findall(r"--[a-z][a-z0-9-]*", text))
    missing = [f for f in flags if f not in words]
    eq(missing, [], "flags of --help that crest(1) does not name")
    stray = sorted(w for w in words if w.startswith("--") and w not in flags
                   and w not in ("--help", "--version", "--flag", "--now"))
    eq(stray, [], "flags crest(1) names that --help does not list")
    topics = re.findall(r"^([A-Z][A-Za-z /]*):$", out, re.M)
    for t in topics:
        if t != "Other":
            check(t.upper() in text, "crest(1) has no section %s" % t.upper())
    for section in ("ENVIRONMENT", "SIGNALS", "SYSTEMD", "EXIT STATUS", "FILES", "EXAMPLES"):
        check("\n%s\n" % section in text, "crest(1) has no %s section" % section)
    for word in ("CREST_MAX_BODY", "SIGTERM", "SIGINT", "SIGHUP", "SIGUSR1", "LISTEN_FDS",
                 "NOTIFY_SOCKET", "WATCHDOG_USEC", "READY=1", "STOPPING=1", "WATCHDOG=1"):
        check(word in text, "crest(1) does not mention %s" % word)


@T.case("crest(3) renders: the headers, the main calls, lifetimes, threading, an example")
def _():
    text = render("crest.3")
    for word in ("crest/app.h", "crest/http.h", "crest/ws.h", "crest/db.h", "crest/work.h",
                 "crest_app_new()", "crest_app_route(", "crest_app_run()", "crest_res_send()",
                 "crest_loop_post()", "LIFETIMES", "THREADING", "EXAMPLE", "#include <crest.h>",
                 'Hello, %.*s!\\n'):
        check(word in text, "crest(3) does not mention %r" % word)


@T.case("make install puts both pages under PREFIX/share/man")
def _():
    make = shutil.which("make")
    if make is None:
        fail("make not found")
    build = os.path.relpath(os.path.dirname(CREST_BIN), ROOT)
    p = subprocess.run([make, "-n", "-C", ROOT, "install", "DESTDIR=/nonexistent",
                        "PREFIX=/usr/local", "BUILD=" + build], capture_output=True, timeout=60)
    eq(p.returncode, 0, "make -n install (stderr %r)" % p.stderr[-500:])
    out = p.stdout.decode()
    for page, sect in (("crest.1", "man1"), ("crest.3", "man3")):
        check(re.search(r"%s/man/%s \S*/usr/local/share/man/%s/%s"
                        % (re.escape(build), page, sect, page), out),
              "make install does not install %s into share/man/%s" % (page, sect))
    check("/usr/local/lib/systemd/system/crest.service" in out and
          "lib/systemd/system/crest.socket" in out, "make install leaves out the systemd units")


if __name__ == "__main__":
    T.main(needs=("crest",))
