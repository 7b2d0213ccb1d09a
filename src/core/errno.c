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
        /* libuv knows every negated errno and its own codes; it answers "Unknown system error"
         * for anything else, never NULL. */
        return uv_strerror(err);
    }
}

const char *crest_version(void) {
    return CREST_VERSION_STRING;
}
