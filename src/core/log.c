#include <stdarg.h>
#include <stdio.h>

#include "internal.h"

void crest__log(const crest_app_t *app, crest_log_level_t level, const char *fmt, ...) {
    if (app == NULL || app->opts.log == NULL)
        return;
    /* Formatted on the stack: logging must work when memory has run out. */
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    app->opts.log(app->opts.log_data, level, line);
}
