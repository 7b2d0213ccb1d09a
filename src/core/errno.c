#include "internal.h"

const char *crest_strerror(int err) {
    switch (err) {
    case 0: /* libuv would say "Unknown system error 0" */
        return "success";
#define CREST_ERRNO_CASE(name, msg)                                                                \
    case CREST_##name:                                                                             \
        return msg;
        CREST_ERRNO_MAP(CREST_ERRNO_CASE)
#undef CREST_ERRNO_CASE
    default:
        break;
    }
    /* libuv's own table, not uv_strerror(): for a code it does not know, uv_strerror() returns
     * a malloc'd "Unknown system error N" that nobody frees, a leak per call where a static
     * string is promised. */
    switch (err) {
#define CREST_UV_CASE(name, msg)                                                                   \
    case UV_##name:                                                                                \
        return msg;
        UV_ERRNO_MAP(CREST_UV_CASE)
#undef CREST_UV_CASE
    default:
        return "unknown error";
    }
}

const char *crest_version(void) {
    return CREST_VERSION_STRING;
}
