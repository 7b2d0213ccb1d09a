"""crest/json.h against the real server (tests/it/json_app.c): a body validated into a struct
(201) or refused with crest's one error shape (400 malformed, 422 listing every fault with its
path), query strings and route parameters checked by the same tables, typed single accessors,
route parameters percent-decoded once as a path, and /openapi.json written from those tables
(checked structurally here, and by openapi-spec-validator when a Python that has it is found)."""

import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import *  # noqa: E402,F401,F403

T = Suite()
JSON_APP = os.environ.get("CREST_JSON_APP") or os.path.join(os.path.dirname(CREST_IT_APP),
                                                            "json_app")


def json_app():
    need_binary(JSON_APP)
    return Server([JSON_APP, "--host", "127.0.0.1", "--port", "0"])


def call(c, method, target, body=None, status=200, ctype="application/json"):
    headers = [("Content-Type", ctype)] if body is not None and ctype else None
    r = c.request(method, target, headers, body)
    eq(r.status, status, "%s %s %r: status (body %r)" % (method, target, body, r.body[:300]))
    eq(r.header("Content-Type"), "application/json", "%s %s: Content-Type" % (method, target))
    return json.loads(r.body.decode("utf-8"))


def error_shape(e, status):
    """crest_res_error's body: status and error; field and errors together, field the first's."""
    eq(e.get("status"), status, "status member of %r" % e)
    check(isinstance(e.get("error"), str) and e["error"], "error member of %r" % e)
    if "errors" in e:
        check(isinstance(e["errors"], list) and e["errors"], "errors of %r" % e)
        eq(e.get("field"), e["errors"][0]["field"], "field is the first fault's")
        eq(e["error"], e["errors"][0]["message"], "error is the first fault's message")
        for f in e["errors"]:
            eq(sorted(f), ["field", "message"], "a fault's members")
    else:
        check("field" not in e, "field without errors in %r" % e)


def faults(e):
    return [(f["field"], f["message"]) for f in e["errors"]]


@T.case("body: valid -> 201 with the values the handler got; absent optional fields keep defaults")
def _():
    with json_app() as srv, srv.connect() as c:
        got = call(c, "POST", "/items", '{"name":"caf\\u00e9","qty":99,"tags":["a","b"]}', 201)
        eq(got, {"name": "caf\u00e9", "qty": 99, "price": -1, "gift": -1, "size": None,
                 "tags": 2}, "echo")
        got = call(c, "POST", "/items", '{"name":"x","qty":1,"price":2.5,"gift":true,'
                   '"size":null}', 201)
        eq((got["price"], got["gift"], got["size"]), (2.5, 1, None), "optional fields")
        # The Content-Type is not checked: curl -d's default is form-encoded.
        call(c, "POST", "/items", '{"name":"x","qty":1}', 201,
             ctype="application/x-www-form-urlencoded")
        call(c, "POST", "/items", '{"name":"x","qty":1}', 201, ctype=None)


@T.case("body: malformed JSON -> 400 in crest's error shape, whatever the rest")
def _():
    with json_app() as srv, srv.connect() as c:
        for bad in [b"", b"{", b'{"name":"x",}', b'{"name":"x"} x', b"{'a':1}", b'{"qty":01}',
                    b'{"qty":1.}', b'{"name":"a\x01"}', b'{"name":"\xff"}', b"nul",
                    b'{"name":"\\u0000",}']:
            e = call(c, "POST", "/items", bad, 400)
            error_shape(e, 400)
            check("malformed JSON" in e["error"], "%r: %r" % (bad, e))


@T.case("body: 422 lists every fault with its path, in table order, then unknown members")
def _():
    with json_app() as srv, srv.connect() as c:
        e = call(c, "POST", "/items", '{"qty":0,"price":-1,"gift":1,"size":"XL",'
                 '"tags":["",5,"a","b"],"extra":1}', 422)
        error_shape(e, 422)
        eq(faults(e), [("name", "is required"), ("qty", "must be at least 1"),
                       ("price", "must be at least 0"), ("gift", "must be a boolean"),
                       ("size", "must be one of: S, M, L"),
                       ("tags[0]", "must be at least 1 character"),
                       ("tags[1]", "must be a string"), ("tags", "must be at most 3 items"),
                       ("extra", "is not allowed")], "faults")
        # Length in characters, not bytes: ten 2-byte characters fit, eleven do not.
        call(c, "POST", "/items", json.dumps({"name": "\u00e9" * 10, "qty": 1}), 201)
        e = call(c, "POST", "/items", json.dumps({"name": "\u00e9" * 11, "qty": 1}), 422)
        eq(faults(e), [("name", "must be at most 10 characters")], "length in characters")
        e = call(c, "POST", "/items", '{"name":"a\\u0000b","qty":1}', 422)
        eq(e.get("field"), "name", "U+0000 names its member")
        e = call(c, "POST", "/items", '[1,2]', 422)
        eq(faults(e), [("", "must be an object")], "a body that is not an object")
        e = call(c, "POST", "/items", '{"name":"x","qty":9007199254740993}', 422)
        eq(e["field"], "qty", "an integer beyond 2^53")


@T.case("crest_req_json: parsed once per request, any JSON value")
def _():
    with json_app() as srv, srv.connect() as c:
        eq(call(c, "POST", "/json", "[1,2,3]"), {"type": 5, "same": 1, "len": 3}, "array")
        eq(call(c, "POST", "/json", " 7 "), {"type": 3, "same": 1, "len": 0}, "number")
        error_shape(call(c, "POST", "/json", "[1,", 400), 400)


@T.case("query: coerced from text, repeated keys, defaults, 422 with the same shape")
def _():
    with json_app() as srv, srv.connect() as c:
        eq(call(c, "GET", "/items"), {"limit": 10, "desc": 0, "q": None, "tag": []}, "defaults")
        eq(call(c, "GET", "/items?limit=5&desc=true&q=a+b%21&tag=3&tag=-1&other=x"),
           {"limit": 5, "desc": 1, "q": "a b!", "tag": [3, -1]}, "values")
        eq(call(c, "GET", "/items?desc=0&limit=100")["desc"], 0, "0 is false")
        e = call(c, "GET", "/items?limit=0&desc=yes&q=toolong&tag=1&tag=x", status=422)
        error_shape(e, 422)
        eq(faults(e), [("limit", "must be at least 1"), ("desc", "must be a boolean"),
                       ("q", "must be at most 5 characters"), ("tag[1]", "must be an integer")],
           "faults")
        for bad in ["limit=1.5", "limit=0x10", "limit=+5", "limit=", "limit=%201"]:
            e = call(c, "GET", "/items?" + bad, status=422)
            eq(e["field"], "limit", bad)
        e = call(c, "GET", "/items?q=%FF", status=422)
        eq(faults(e), [("q", "must be UTF-8 text")], "not UTF-8")
        e = call(c, "GET", "/items?q=a%00", status=422)
        eq(e["field"], "q", "U+0000")


@T.case("query: single typed accessors (int with bounds, bool, decoded string, every value)")
def _():
    with json_app() as srv, srv.connect() as c:
        eq(call(c, "GET", "/single"), {"n": 3, "on": 0, "s": None, "count": 0, "r": []},
           "defaults")
        eq(call(c, "GET", "/single?n=5&on=true&s=%C3%A9+x&r=a&r=b+c&r=&n=1"),
           {"n": 5, "on": 1, "s": "\u00e9 x", "count": 3, "r": ["a", "b c", ""]}, "values")
        eq(call(c, "GET", "/single?r=1&r=2&r=3&r=4&r=5")["count"], 5, "count beyond max")
        for q, field in [("n=6", "n"), ("n=-1", "n"), ("n=x", "n"), ("on=2", "on")]:
            e = call(c, "GET", "/single?" + q, status=422)
            error_shape(e, 422)
            eq(e["field"], field, q)


@T.case("route parameters: percent-decoded once as a path; malformed escapes are not values")
def _():
    with json_app() as srv, srv.connect() as c:
        for raw, want in [("plain", "plain"), ("a%2Fb", "a/b"), ("a%2fb", "a/b"), ("a+b", "a+b"),
                          ("a%20b", "a b"), ("%2525", "%25"), ("caf%C3%A9", "caf\u00e9"),
                          ("%41%42", "AB")]:
            got = call(c, "GET", "/p/" + raw)
            eq(got["v"], want, raw)
            eq(got["len"], len(want.encode()), raw + " length")
        eq(call(c, "GET", "/files/a/b%20c/d")["v"], "a/b c/d", "wildcard decoded")
        for raw in ["%", "a%4", "%zz", "a%00b", "%G1"]:
            e = call(c, "GET", "/p/" + raw, status=404)
            error_shape(e, 404)
        eq(call(c, "GET", "/items/12"), {"id": 12}, "params_valid")
        eq(call(c, "GET", "/items/%31%32"), {"id": 12}, "params_valid decodes")
        e = call(c, "GET", "/items/0", status=422)
        eq(faults(e), [("id", "must be at least 1")], "bound")
        eq(call(c, "GET", "/items/abc", status=422)["errors"][0]["message"],
           "must be an integer", "not an integer")
        e = call(c, "GET", "/items/%zz", status=400)
        error_shape(e, 400)
        eq(e["field"], "id", "400 names the parameter")
        e = call(c, "GET", "/items/5000", status=422)  # crest_req_param_int's own bound
        eq(faults(e), [("id", "must be at most 1000")], "param_int bound")


def check_openapi(doc):
    eq(doc.get("openapi"), "3.1.0", "openapi version")
    eq(doc["info"], {"title": "json_app", "version": "1.2.3"}, "info")
    paths = doc["paths"]
    eq(sorted(paths), ["/files/{wildcard}", "/items", "/items/{id}", "/p/{v}"], "paths")
    eq(sorted(paths["/items"]), ["get", "post"], "one path item, two operations")
    post = paths["/items"]["post"]
    eq(post["summary"], "Create an item", "summary")
    eq(post["tags"], ["items", "write"], "tags")
    eq(post["requestBody"]["content"]["application/json"]["schema"],
       {"$ref": "#/components/schemas/Item"}, "request body")
    eq(sorted(post["responses"]), ["201", "400", "422"], "responses of POST")
    get = paths["/items"]["get"]
    eq([(p["name"], p["in"], p["required"]) for p in get["parameters"]],
       [("limit", "query", False), ("desc", "query", False), ("q", "query", False),
        ("tag", "query", False)], "query parameters")
    eq(get["parameters"][0]["schema"], {"type": "integer", "minimum": 1, "maximum": 100},
       "limit's schema")
    eq(get["parameters"][3]["schema"], {"type": "array", "items": {"type": "integer"}},
       "a repeated key")
    eq(sorted(get["responses"]), ["200", "422"], "responses of GET with a query")
    one = paths["/items/{id}"]["get"]["parameters"]
    eq(one, [{"name": "id", "in": "path", "required": True,
              "schema": {"type": "integer", "minimum": 1}}], "path parameter from the table")
    eq(paths["/p/{v}"]["get"]["parameters"][0]["schema"], {"type": "string"},
       "undocumented route parameter")
    item = doc["components"]["schemas"]["Item"]
    eq(item["required"], ["name", "qty"], "required")
    eq(item["additionalProperties"], False, "strict")
    eq(item["properties"]["name"], {"description": "what it is", "type": "string",
                                    "minLength": 1, "maxLength": 10}, "name")
    eq(item["properties"]["size"], {"type": ["string", "null"], "enum": ["S", "M", "L", None]},
       "nullable enum")
    eq(item["properties"]["tags"], {"type": "array", "maxItems": 3,
                                    "items": {"type": "string", "minLength": 1}}, "tags")
    ids = [op["operationId"] for p in paths.values() for op in p.values()]
    eq(len(ids), len(set(ids)), "operationIds unique")
    # Every $ref resolves.
    def refs(v):
        if isinstance(v, dict):
            for k, x in v.items():
                if k == "$ref":
                    yield x
                else:
                    yield from refs(x)
        elif isinstance(v, list):
            for x in v:
                yield from refs(x)
    for r in refs(doc):
        check(r.startswith("#/components/schemas/"), "ref %s" % r)
        check(r.split("/")[-1] in doc["components"]["schemas"], "ref %s resolves" % r)


VALIDATE = ("import json,sys\nfrom openapi_spec_validator import validate\n"
            "validate(json.load(sys.stdin))\nprint('valid')\n")


@T.case("/openapi.json: OpenAPI 3.1 from the validation tables, the same bytes on every thread")
def _():
    with json_app() as srv:
        bodies = set()
        for _ in range(4):  # new connections: likely more than one loop thread
            with srv.connect() as c:
                r = c.request("GET", "/openapi.json")
                eq(r.status, 200, "status")
                eq(r.header("Content-Type"), "application/json", "Content-Type")
                bodies.add(r.body)
        eq(len(bodies), 1, "one document")
        text = bodies.pop()
        doc = json.loads(text.decode("utf-8"))
        check_openapi(doc)
        try:
            from openapi_spec_validator import validate  # noqa: F401
            py = sys.executable
        except ImportError:
            py = shutil.which("python3.11") or shutil.which("python3")
        out = subprocess.run([py, "-c", VALIDATE], input=text, capture_output=True,
                             timeout=60) if py else None
        if out is None or b"No module named" in out.stderr:
            print("# openapi-spec-validator not found: structural checks only", flush=True)
        else:
            eq(out.returncode, 0, "openapi-spec-validator: %s" % out.stderr.decode()[-800:])
            eq(out.stdout.strip(), b"valid", "validator's verdict")


if __name__ == "__main__":
    T.main(needs=("it_app",))
