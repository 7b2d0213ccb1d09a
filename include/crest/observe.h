/* Observability: request ids, the access log, and the metrics crest measures itself.
 *
 * Set up on the app before crest_app_run(), from the thread that builds it. */
#ifndef CREST_OBSERVE_H
#define CREST_OBSERVE_H

#include <stddef.h>

#include "crest/app.h"
#include "crest/buf.h"
#include "crest/export.h"
#include "crest/http.h"

/* Give every request an id: the client's X-Request-Id when it is valid (1 to 128 characters of
 * letters, digits and "-_.:+/="), a new random one otherwise; it is echoed in the response's
 * X-Request-Id and written to the access log. Middleware for all paths; add it first. Returns as
 * crest_app_use(). */
CREST_API int crest_app_request_id(crest_app_t *app);
/* The request's id (above); empty when crest_app_request_id() is not in use. Valid for the
 * request's whole life. */
CREST_API crest_str_t crest_req_id(const crest_req_t *req);

/* Write one JSON object per finished request to `path` ("-" for standard output): time, remote
 * (crest_req_client()), method, path, route template, status, bytes, duration, request id, user
 * agent. The keys: "time" (UTC, "2026-01-31T12:00:00.123Z"), "remote", "method", "path" (as sent,
 * without the query), "route" (null when none matched), "status" (0 when the client left before
 * an answer), "bytes" (response body bytes), "duration_ms" (milliseconds, to the microsecond),
 * "request_id" and "user_agent" (null when absent); a request the parser rejected has null method
 * and path. Loop threads never block on it: lines go to a writer thread through a bounded buffer
 * (lines beyond it are counted as dropped, never half written); every line queued is written
 * before crest_app_run() returns. With handle_signals, SIGUSR1 reopens the file (logrotate).
 * Returns 0, or the error opening the file (CREST_EACCES, CREST_ENOENT, ...); CREST_EBUSY once
 * running; CREST_EEXIST for a second log. */
CREST_API int crest_app_access_log(crest_app_t *app, const char *path);

/* Append to `out` the metrics crest keeps, in Prometheus text format (HELP and TYPE lines
 * included): requests by status, connections, request duration histograms by method and route
 * template (OpenTelemetry's http.server.request.duration buckets, in seconds), event-loop lag per
 * loop thread, WebSocket messages in and out, the worker pool's queue and job time, database
 * query time and connections, the Redis bridge. Counters are kept per thread and summed here.
 * Names: crest_requests_total{status}, crest_http_server_request_duration_seconds{method,route}
 * (route="" when no route matched), crest_event_loop_lag_seconds{loop} and
 * crest_event_loop_lag_max_seconds{loop}, crest_ws_messages_{received,sent}_total,
 * crest_work_*, crest_db_query_duration_seconds, crest_pubsub_*, crest_redis_*,
 * crest_access_log_*. Any thread. Returns 0 or CREST_ENOMEM. */
CREST_API int crest_app_metrics(const crest_app_t *app, crest_buf_t *out);

#endif
