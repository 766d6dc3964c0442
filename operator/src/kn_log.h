/*
 * Logging to stderr, one line per call, with a level.  The level lives in
 * a kn_log_t that the context owns and every module is handed.
 */

#ifndef KN_LOG_H
#define KN_LOG_H


#include "kn_core.h"


typedef enum {
    KN_LOG_ERROR = 0,
    KN_LOG_WARN,
    KN_LOG_INFO,
    KN_LOG_DEBUG
} kn_log_level_e;


typedef struct {
    kn_log_level_e  level;
} kn_log_t;


#define KN_LOG_LINE_MAX  4096           /* longer lines are truncated */


void kn_log(const kn_log_t *log, kn_log_level_e level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define kn_log_enabled(log, lvl)  ((lvl) <= (log)->level)

kn_rc kn_log_level_parse(const char *text, kn_log_level_e *level);


#endif /* KN_LOG_H */
