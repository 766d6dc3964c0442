/*
 * What every Operator module shares: the one error convention and the
 * version.  A function that can fail returns kn_rc and its caller checks
 * it on the next line.
 */

#ifndef KN_CORE_H
#define KN_CORE_H


#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>


#define KN_VERSION  "0.1.0"


typedef enum {
    KN_OK = 0,
    KN_ERROR = -1,      /* failed; the callee logged or reported why */
    KN_AGAIN = -2,      /* not now: a bound is reached, retry later */
    KN_DECLINED = -3,   /* not applicable in this state (e.g. not connected) */
    KN_DONE = -4        /* finished: nothing more will happen */
} kn_rc;


#define KN_NELEMS(a)  (sizeof(a) / sizeof((a)[0]))


/*
 * A NUL-terminated copy of len bytes that need not be terminated (protobuf
 * bytes, libcurl header lines): strndup() would look for a NUL past them.
 * NULL when out of memory; free() it.
 */
static inline char *
kn_memdup_str(const void *p, size_t len)
{
    char  *s;

    s = malloc(len + 1);
    if (s == NULL) {
        return NULL;
    }

    memcpy(s, p, len);
    s[len] = '\0';

    return s;
}


#endif /* KN_CORE_H */
