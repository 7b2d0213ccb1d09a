"""The showdown's statistics: pure functions of lists of numbers (tests/it/test_showdown.py)."""


def median(xs):
    v = sorted(x for x in xs if x is not None)
    if not v:
        return None
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


def summary(xs):
    """{median, min, max, n} of the numbers (None ignored); None when there are none."""
    v = [x for x in xs if x is not None]
    if not v:
        return None
    return {"median": median(v), "min": min(v), "max": max(v), "n": len(v)}


def ratio(value, base, higher_is_better=True):
    """How many times better than base (crest) value is: > 1 better, < 1 worse; None when either
    is missing or zero."""
    if value is None or base is None or value == 0 or base == 0:
        return None
    return value / base if higher_is_better else base / value


def bottleneck(server_cpu_s, server_cores, client_cpu_s, seconds, busy=0.9):
    """Which side limited a run: "server" when its cores were at least `busy` used, "client"
    (the load generator) when its core was, "both", or "neither" (latency: the database, a
    sleep, a lock)."""
    if not seconds:
        return None
    s = server_cpu_s is not None and server_cpu_s / (seconds * server_cores) >= busy
    c = client_cpu_s is not None and client_cpu_s / seconds >= busy
    return "both" if s and c else "server" if s else "client" if c else "neither"
