/* crest: an HTTP/1.1 server runtime and framework on libuv. The whole public API; include only
 * this header. Functions return 0 or a negative CREST_E* code (crest/errno.h) unless their
 * comment says otherwise. */
#ifndef CREST_H
#define CREST_H

#ifdef __cplusplus
extern "C" {
#endif

#include "crest/app.h"
#include "crest/buf.h"
#include "crest/client.h"
#include "crest/db.h"
#include "crest/errno.h"
#include "crest/export.h"
#include "crest/http.h"
#include "crest/json.h"
#include "crest/middleware.h"
#include "crest/observe.h"
#include "crest/pubsub.h"
#include "crest/sio.h"
#include "crest/sse.h"
#include "crest/static.h"
#include "crest/testing.h"
#include "crest/web.h"
#include "crest/work.h"
#include "crest/ws.h"

#define CREST_VERSION_MAJOR 0
#define CREST_VERSION_MINOR 1
#define CREST_VERSION_PATCH 0

#ifdef __cplusplus
}
#endif

#endif
