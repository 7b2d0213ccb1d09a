/* crest's JSON error body: one shape for every error written in JSON (crest_res_error). */
#include <string.h>

#include "http/http.h"

int crest_res_error(crest_req_t *req, int status, const char *message) {
    if (message == NULL)
        message = crest_status_reason(status);
    char mem[512];
    crest_buf_t b = CREST_BUF_ON(mem);
    char num[24];
    char *d = crest__fmt_u64(num + sizeof(num), status > 0 ? (uint64_t)status : 0);
    crest_buf_puts(&b, "{\"status\":");
    crest_buf_append(&b, d, (size_t)(num + sizeof(num) - d));
    crest_buf_puts(&b, ",\"error\":");
    crest_buf_json_str(&b, message, strlen(message));
    crest_buf_puts(&b, "}");
    return crest_res_send_buf(req, status, "application/json", &b);
}
