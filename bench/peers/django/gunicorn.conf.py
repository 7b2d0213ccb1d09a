"""gunicorn's settings for the showdown's Django peer (see showdown/views.py). gunicorn reads
this file from its folder (the peer's start runs in bench/peers/django)."""

import os

bind = "%s:%s" % (os.environ.get("HOST", "127.0.0.1"), os.environ.get("PORT", "8000"))
wsgi_app = "showdown.wsgi:application"
# Sync workers (gunicorn's default, Django's documented deployment): one process per request in
# flight, each blocking on PostgreSQL and computing /work/hash inline. gunicorn's documentation
# starts from (2 x cores) + 1 workers, so that a core has a worker to run while another waits
# on the database; WORKERS is the cores the showdown grants (1 or 2): 3 or 5 workers.
worker_class = "sync"
workers = 2 * int(os.environ.get("WORKERS", "1")) + 1
# gunicorn's defaults kept: no access log (accesslog None), errors at info to stderr,
# timeout 30 s, backlog 2048. Sync workers do not keep connections alive: every response closes
# its connection (gunicorn expects a buffering proxy such as nginx in front).
loglevel = "warning"
