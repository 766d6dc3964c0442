/*
 * One write(2) per line, so that lines from this process never interleave
 * in a shared stderr; a bounded line buffer, truncated with "...".
 */

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "kn_log.h"


static const char  *kn_log_names[] = { "error", "warn", "info", "debug" };


void
kn_log(const kn_log_t *log, kn_log_level_e level, const char *fmt, ...)
{
    int              n;
    char             line[KN_LOG_LINE_MAX];
    size_t           len;
    va_list          args;
    struct tm        tm;
    struct timespec  ts;

    if (!kn_log_enabled(log, level)) {
        return;
    }

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);

    n = snprintf(line, sizeof(line),
                 "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ [%s] ",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                 tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
                 kn_log_names[level]);
    len = (n > 0) ? (size_t) n : 0;

    va_start(args, fmt);
    n = vsnprintf(line + len, sizeof(line) - len - 1, fmt, args);
    va_end(args);

    if (n < 0) {
        n = 0;
    }

    if ((size_t) n >= sizeof(line) - len - 1) {
        len = sizeof(line) - 5;
        memcpy(line + len, "...", 3);
        len += 3;

    } else {
        len += (size_t) n;
    }

    line[len++] = '\n';

    /* stderr is the log: a failed write has nowhere else to go */
    if (write(STDERR_FILENO, line, len) < 0) {
        return;
    }
}


kn_rc
kn_log_level_parse(const char *text, kn_log_level_e *level)
{
    size_t  i;

    for (i = 0; i < KN_NELEMS(kn_log_names); i++) {
        if (strcasecmp(text, kn_log_names[i]) == 0) {
            *level = (kn_log_level_e) i;
            return KN_OK;
        }
    }

    if (strcasecmp(text, "warning") == 0) {
        *level = KN_LOG_WARN;
        return KN_OK;
    }

    return KN_ERROR;
}
