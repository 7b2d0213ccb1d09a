"""The showdown's Django peer (bench/peers/SHOWDOWN.md): Django's ORM on PostgreSQL (psycopg2),
served by gunicorn's sync workers (gunicorn.conf.py). Workloads: plaintext json db queries
fortunes updates todos hash.

- Every request runs start to end in one worker process, one request at a time (gunicorn's sync
  worker): the database calls block that worker, and /work/hash computes PBKDF2 inline, in the
  worker, as a sync Django view does (the other workers go on answering, /healthz too).
- Persistent connections (CONN_MAX_AGE None in settings.py): one PostgreSQL connection per
  worker process, kept for its life; the "pool" is the workers' connections.
- /updates: the N rows read through the ORM one by one, given new numbers, and written back
  with one bulk_update() (one UPDATE ... CASE statement in a transaction) of the rows sorted by
  id, so that concurrent updates lock rows in the same order; an id drawn twice keeps its last
  number.
- /fortunes renders a Django template (autoescaped).
- JSON: Django's JsonResponse (json.dumps with DjangoJSONEncoder). Errors are
  {"error": message, "field": name}, the shape crest's demo answers.
"""

import hashlib
import json
import random

from django.http import HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from .models import Fortune, Todo, World

EXTRA = "Additional fortune added at request time."
SALT = b"crest-work-hash"
MAX_ID = 1 << 53  # ids beyond this would not survive a JSON number as a double


def error(status, message, field=None):
    body = {"error": message}
    if field is not None:
        body["field"] = field
    return JsonResponse(body, status=status)


def whole(text, lo, hi):
    """text as an int when it is a plain decimal number in lo..hi, else None."""
    if not text or not text.isascii() or not text.isdigit() or len(text) > 16:
        return None
    n = int(text)
    return n if lo <= n <= hi else None


@require_GET
def healthz(request):
    return HttpResponse(b"ok\n", content_type="text/plain")


@require_GET
def plaintext(request):
    return HttpResponse(b"Hello, World!", content_type="text/plain")


@require_GET
def hello_json(request):
    return JsonResponse({"message": "Hello, World!"})


def random_id():
    return random.randint(1, 10000)


def queries_param(request):
    q = request.GET.get("queries", "")
    if not q.isascii() or not q.isdigit():
        return 1
    return min(max(int(q), 1), 500)


@require_GET
def single_query(request):
    w = World.objects.get(id=random_id())
    return JsonResponse({"id": w.id, "randomNumber": w.randomnumber})


@require_GET
def multiple_queries(request):
    worlds = [World.objects.get(id=random_id()) for _ in range(queries_param(request))]
    return JsonResponse([{"id": w.id, "randomNumber": w.randomnumber} for w in worlds],
                        safe=False)


@require_GET
def updates(request):
    worlds = [World.objects.get(id=random_id()) for _ in range(queries_param(request))]
    for w in worlds:
        w.randomnumber = random_id()
    last = {w.id: w for w in worlds}  # an id drawn twice keeps its last number
    World.objects.bulk_update(sorted(last.values(), key=lambda w: w.id), ["randomnumber"])
    return JsonResponse([{"id": w.id, "randomNumber": w.randomnumber} for w in worlds],
                        safe=False)


@require_GET
def fortunes(request):
    rows = list(Fortune.objects.all())
    rows.append(Fortune(id=0, message=EXTRA))
    rows.sort(key=lambda f: f.message)
    return render(request, "fortunes.html", {"fortunes": rows})


# ---- /api/todos ----


def todo_fields(request, partial):
    """(fields, None) from the request's body, or (None, an error response)."""
    try:
        obj = json.loads(request.body)
    except ValueError:
        return None, error(400, "body is not JSON")
    if not isinstance(obj, dict):
        return None, error(422, "body must be a JSON object")
    fields = {}
    for name in ("title", "done"):
        if name not in obj:
            if partial:
                continue
            return None, error(422, name + " is required", name)
        v = obj[name]
        if name == "title" and not (isinstance(v, str) and 1 <= len(v) <= 200):
            return None, error(422, "title must be a string of 1 to 200 characters", name)
        if name == "done" and not isinstance(v, bool):
            return None, error(422, "done must be a boolean", name)
        fields[name] = v
    return fields, None


@require_http_methods(["GET", "POST"])
def todos(request):
    if request.method == "POST":
        fields, bad = todo_fields(request, False)
        if bad is not None:
            return bad
        t = Todo.objects.create(title=fields["title"], done=int(fields["done"]))
        response = JsonResponse(t.as_json(), status=201)
        response["Location"] = "/api/todos/%d" % t.id
        return response
    limit = whole(request.GET.get("limit", "100"), 1, 1000)
    if limit is None:
        return error(400, "limit must be a whole number from 1 to 1000", "limit")
    after = whole(request.GET.get("after", "0"), 0, MAX_ID)
    if after is None:
        return error(400, "after must be a whole number", "after")
    rows = list(Todo.objects.filter(id__gt=after).order_by("id")[:limit + 1])
    response = JsonResponse([t.as_json() for t in rows[:limit]], safe=False)
    if len(rows) > limit:
        response["Link"] = '</api/todos?limit=%d&after=%d>; rel="next"' % (limit, rows[limit - 1].id)
    return response


@require_http_methods(["GET", "PATCH", "DELETE"])
def todo_item(request, tid):
    if tid < 1 or tid > MAX_ID:
        return error(404, "no such todo")
    if request.method == "DELETE":
        deleted, _ = Todo.objects.filter(id=tid).delete()
        return HttpResponse(status=204) if deleted else error(404, "no such todo")
    if request.method == "PATCH":
        fields, bad = todo_fields(request, True)
        if bad is not None:
            return bad
        if "done" in fields:
            fields["done"] = int(fields["done"])
        if fields and Todo.objects.filter(id=tid).update(**fields) == 0:
            return error(404, "no such todo")
    t = Todo.objects.filter(id=tid).first()
    if t is None:
        return error(404, "no such todo")
    return JsonResponse(t.as_json())


# ---- /work/hash ----


@require_POST
def work_hash(request):
    rounds = whole(request.GET.get("rounds", "1000"), 1, 1000000)
    if rounds is None:
        return error(400, "rounds must be a whole number from 1 to 1000000", "rounds")
    dk = hashlib.pbkdf2_hmac("sha256", request.body, SALT, rounds, 32)
    return JsonResponse({"algorithm": "PBKDF2-HMAC-SHA256", "rounds": rounds,
                         "salt": SALT.decode(), "length": 32, "digest": dk.hex()})
