"""Node.js `ws` as the client (tests/it/ws_node_client.js): echo, fragments, ping/pong, close
codes and chat fan-out across two loop threads. `ws` is installed by tests/run.sh into
tests/e2e/node_modules (npm, git-ignored)."""

import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import *  # noqa: E402,F401,F403

T = Suite()
HERE = os.path.dirname(os.path.abspath(__file__))
MODULES = os.path.join(os.path.dirname(HERE), "e2e", "node_modules")


@T.case("Node.js ws client cases")
def _():
    check(os.path.isdir(os.path.join(MODULES, "ws")),
          "npm ws missing in %s (tests/run.sh installs it)" % MODULES)
    tmp = tempfile.mkdtemp(prefix="crest-ws-node.")
    try:
        with demo("--quiet", "--threads", "2", "--ws-max-message", "64k",
                  "--db", "sqlite:" + os.path.join(tmp, "demo.db")) as srv:
            env = dict(os.environ, NODE_PATH=MODULES)
            if srv.tls_cert:
                env["NODE_EXTRA_CA_CERTS"] = srv.tls_cert
            p = subprocess.run(["node", os.path.join(HERE, "ws_node_client.js"), srv.ws_url()],
                               env=env, capture_output=True, text=True, timeout=60)
            for line in p.stdout.splitlines():  # its TAP lines count as cases of their own
                print(line)
            check(p.returncode == 0 and "not ok" not in p.stdout,
                  "node client failed:\n%s\n%s" % (p.stdout, p.stderr[-2000:]))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    T.main(needs=("crest",))
