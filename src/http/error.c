/* crest_res_error(): the one JSON error body crest writes, {"status","error"} and, for a
 * validation's faults, "field" and "errors" after them (crest/http.h). Built in a stack buffer:
 * an error answer must not need the heap more than any other small answer does. */
#include <string.h>

#include "http/http.h"

int crest__res_error_list(crest_req_t *req, int status, const char *message,
                          const char *const *fields, const char *const *messages, size_t n) {
    if (message == NULL)
        message = crest_status_reason(status);
    char mem[1024];
    crest_buf_t b = CREST_BUF_ON(mem);
    crest_buf_printf(&b, "{\"status\":%d,\"error\":", status);
    crest_buf_json_str(&b, message, strlen(message));
    if (n > 0) {
        crest_buf_puts(&b, ",\"field\":");
        crest_buf_json_str(&b, fields[0], strlen(fields[0]));
        crest_buf_puts(&b, ",\"errors\":[");
        for (size_t i = 0; i < n; i++) {
            crest_buf_puts(&b, i ? ",{\"field\":" : "{\"field\":");
            crest_buf_json_str(&b, fields[i], strlen(fields[i]));
            crest_buf_puts(&b, ",\"message\":");
            crest_buf_json_str(&b, messages[i], strlen(messages[i]));
            crest_buf_puts(&b, "}");
        }
        crest_buf_puts(&b, "]");
    }
    crest_buf_puts(&b, "}");
    return crest_res_send_buf(req, status, "application/json", &b);
}

int crest_res_error(crest_req_t *req, int status, const char *message) {
    return crest__res_error_list(req, status, message, NULL, NULL, 0);
}
