/* crest_res_error(): crest's JSON error body. A minimal version for the web basics (multipart's
 * 400 and 413); the helper building the error chain supersedes this file with its own. */
#include <string.h>

#include "http/http.h"

int crest_res_error(crest_req_t *req, int status, const char *message) {
    char mem[256];
    crest_buf_t b = CREST_BUF_ON(mem);
    if (message == NULL)
        message = crest_status_reason(status);
    crest_buf_printf(&b, "{\"status\":%d,\"error\":", status);
    crest_buf_json_str(&b, message, strlen(message));
    crest_buf_puts(&b, "}");
    int rc = b.err ? crest_res_status(req, 503) : crest_res_json(req, status, b.ptr, b.len);
    crest_buf_free(&b);
    return rc;
}
