"""crest's examples (examples/rest.c, downstream.c, chat.c, built into BUILD/examples/) answer
bench/peers/README.md, checked by the same cases as their Express and FastAPI twins
(tests/it/test_peers.py): each is started on a free loopback port and used as a client would.
Unlike the twins' file this one runs in the sanitizer passes too."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Suite, check, eq, tmp_dir  # noqa: E402
import test_peers  # noqa: E402

T = Suite()
for _app, _fn in (("rest", test_peers.check_rest), ("downstream", test_peers.check_downstream),
                  ("chat", test_peers.check_chat)):
    T.case("examples/%s.c answers bench/peers/README.md" % _app)(lambda fn=_fn: fn("crest"))



@T.case("examples/rest.c on PostgreSQL (DATABASE_URL) answers the same")
def _():
    import pgserver
    test_peers.check_rest("crest", {"DATABASE_URL": pgserver.shared().create_db("examples_rest")})


@T.case("examples/rest.c serves its OpenAPI document, from the tables that validate")
def _():
    import json
    with tmp_dir() as d, test_peers.Twin("crest", "rest",
                                         {"DB_PATH": os.path.join(d, "todos.db")}) as t:
        s, _, doc = t.request("GET", "/openapi.json")
        eq(s, 200, "/openapi.json")
        eq(doc["openapi"], "3.1.0", "version")
        post = doc["paths"]["/api/todos"]["post"]
        eq(post["requestBody"]["content"]["application/json"]["schema"]["$ref"],
           "#/components/schemas/TodoIn", "POST's body")
        title = doc["components"]["schemas"]["TodoIn"]["properties"]["title"]
        eq((title["minLength"], title["maxLength"]), (1, 200), "title's bounds")
        check("422" in post["responses"], "POST documents 422: %s" % json.dumps(post)[:300])
        check("/api/todos/{id}" in doc["paths"], "the :id path in {id} form")


if __name__ == "__main__":
    T.main()
