#include <stdarg.h>
#include <stdio.h>

#include "internal.h"

void crest__log(const crest__rt_t *rt, crest_log_level_t level, const char *fmt, ...) {
    if (rt == NULL || rt->opts->log == NULL)
        return;
    /* Formatted on the stack: logging must work when memory has run out. */
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    rt->opts->log(rt->opts->log_data, level, line);
}

void crest__log_limited(const crest__rt_t *rt, crest__ratelimit_t *rl, crest_log_level_t level,
                        const char *fmt, ...) {
    if (rt == NULL || rt->opts->log == NULL)
        return;
    uint64_t now = uv_hrtime() / 1000000;
    if (now < rl->next_ms) {
        rl->suppressed++;
        return;
    }
    rl->next_ms = now + 1000;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (rl->suppressed > 0 && n >= 0 && (size_t)n < sizeof(line))
        snprintf(line + n, sizeof(line) - (size_t)n, " (%llu more like it in the last second)",
                 (unsigned long long)rl->suppressed);
    rl->suppressed = 0;
    rt->opts->log(rt->opts->log_data, level, line);
}
