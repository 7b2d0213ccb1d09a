/* Security headers (crest_app_security): the same few lines on every response, so they are
 * checked and formatted once here and each request appends the block with one copy (the issue's
 * budget for this and the access log is 5% of a /plaintext request's CPU time). HSTS is not in
 * the block: it must go only on answers over TLS, which the protocols know when they write the
 * head, so this drives the app's own Strict-Transport-Security line (app->hsts) instead. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/http.h"

typedef struct {
    size_t len;
    char text[];
} block_t;

void crest_security_opts_default(crest_security_opts_t *o) {
    memset(o, 0, sizeof(*o));
    o->content_security_policy = "frame-ancestors 'self'";
    o->frame_options = "SAMEORIGIN";
    o->referrer_policy = "strict-origin-when-cross-origin";
    o->opener_policy = "same-origin";
    o->nosniff = 1;
    o->hsts_max_age = 15552000;
    o->hsts_subdomains = 0;
}

/* A field value is visible ASCII, spaces and tabs (RFC 9110 5.5, without obs-text). */
static int valid_value(const char *s) {
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 ? *s != '\t' : (unsigned char)*s >= 0x7f)
            return 0;
    return 1;
}

static int on_security(crest_req_t *req, void *data) {
    const block_t *b = data;
    int rc = crest__res_header_block(req, b->text, b->len);
    return rc < 0 ? rc : CREST_NEXT;
}

int crest_app_security(crest_app_t *app, const char *prefix, const crest_security_opts_t *opts) {
    if (app->rt.running)
        return CREST_EBUSY;
    crest_security_opts_t defaults;
    if (opts == NULL) {
        crest_security_opts_default(&defaults);
        opts = &defaults;
    }
    const struct {
        const char *name, *value;
    } fields[] = {
        {"X-Content-Type-Options", opts->nosniff ? "nosniff" : NULL},
        {"Referrer-Policy", opts->referrer_policy},
        {"Content-Security-Policy", opts->content_security_policy},
        {"X-Frame-Options", opts->frame_options},
        {"Cross-Origin-Opener-Policy", opts->opener_policy},
    };
    size_t len = 0;
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        const char *v = fields[i].value;
        if (v == NULL || *v == '\0')
            continue;
        if (!valid_value(v))
            return CREST_EINVAL;
        len += strlen(fields[i].name) + 2 + strlen(v) + 2;
    }
    if (opts->hsts_max_age) {
        int n = snprintf(
            app->hsts, sizeof(app->hsts), "Strict-Transport-Security: max-age=%u%s\r\n",
            (unsigned)opts->hsts_max_age, opts->hsts_subdomains ? "; includeSubDomains" : "");
        app->hsts_len = n > 0 && (size_t)n < sizeof(app->hsts) ? (size_t)n : 0;
    }
    if (len == 0)
        return 0; /* nothing per request */
    block_t *b = malloc(sizeof(*b) + len + 1);
    if (b == NULL)
        return CREST_ENOMEM;
    char *o = b->text;
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        const char *v = fields[i].value;
        if (v != NULL && *v != '\0')
            o += sprintf(o, "%s: %s\r\n", fields[i].name, v);
    }
    b->len = (size_t)(o - b->text);
    int rc = crest__app_own(app, b, free);
    return rc != 0 ? rc : crest__app_use_every(app, prefix, on_security, b);
}
