/*
 * Kubernetes quantities (see kn_quantity.h).  The digits are gathered into
 * one exact integer mantissa (trailing zeros kept aside as a power of ten,
 * so that "1.5000000000000000000000000000000000000000" is no overflow),
 * then scaled by the suffix to nano-units with one multiplication or one
 * division rounded up.
 */

#include <stdint.h>

#include "kn_quantity.h"


#define KN_QUANTITY_EXP_MAX  1000       /* |e-notation exponent| */
#define KN_QUANTITY_POW_MAX  38         /* 10^38 < 2^127 */


typedef unsigned __int128  kn_quantity_mag_t;

#define KN_QUANTITY_MAG_MAX  ((kn_quantity_mag_t) KN_QUANTITY_MAX)


static int kn_quantity_suffix(const char *p, int *exp10, unsigned *shift);
static int kn_quantity_mul10(kn_quantity_mag_t *v, int times);


kn_rc
kn_quantity_parse(const char *text, kn_quantity_t *q, const char **err)
{
    int                 neg, point, digits, frac, pending, exp10, exp;
    unsigned            shift, d;
    const char         *p, *why;
    kn_quantity_mag_t   mant, div, rem;

    p = text;
    neg = 0;
    point = 0;
    digits = 0;
    frac = 0;
    pending = 0;
    mant = 0;

    if (p == NULL) {
        why = "no quantity";
        goto invalid;
    }

    if (*p == '+' || *p == '-') {
        neg = (*p == '-');
        p++;
    }

    /* digits, with at most one point among them */

    for ( ;; p++) {
        if (*p == '.' && !point) {
            point = 1;
            continue;
        }

        if (*p < '0' || *p > '9') {
            break;
        }

        d = (unsigned) (*p - '0');
        digits++;
        frac += point;

        if (d == 0) {
            pending += (mant != 0);     /* leading zeros are nothing */
            continue;
        }

        if (!kn_quantity_mul10(&mant, pending + 1)
            || mant > KN_QUANTITY_MAG_MAX - d)
        {
            why = "too many significant digits";
            goto invalid;
        }

        mant += d;
        pending = 0;
    }

    if (digits == 0) {
        why = "no digits";
        goto invalid;
    }

    if (!kn_quantity_suffix(p, &exp10, &shift)) {
        why = "an unknown suffix (n, u, m, k, M, G, T, P, E, Ki, Mi, Gi, "
              "Ti, Pi, Ei or an exponent such as e3)";
        goto invalid;
    }

    if (exp10 < -KN_QUANTITY_EXP_MAX || exp10 > KN_QUANTITY_EXP_MAX) {
        why = "an exponent out of range";
        goto invalid;
    }

    /* mant * 10^pending * 10^-frac * 10^exp10 * 2^shift, in nano-units */

    exp = pending - frac + exp10 + 9;

    if (mant != 0 && shift > 0) {
        if (mant > (KN_QUANTITY_MAG_MAX >> shift)) {
            goto range;
        }
        mant <<= shift;
    }

    if (mant != 0 && exp > 0) {
        if (!kn_quantity_mul10(&mant, exp)) {
            goto range;
        }

    } else if (mant != 0 && exp < 0) {
        if (-exp > KN_QUANTITY_POW_MAX) {
            mant = neg ? 0 : 1;         /* finer than a nano-unit */

        } else {
            div = 1;
            (void) kn_quantity_mul10(&div, -exp);
            rem = mant % div;
            mant /= div;
            mant += (rem != 0 && !neg); /* rounded up */
        }
    }

    *q = neg ? -(kn_quantity_t) mant : (kn_quantity_t) mant;

    return KN_OK;

range:

    why = "out of range";

invalid:

    if (err != NULL) {
        *err = why;
    }

    return KN_ERROR;
}


/* 1: p is a whole suffix; exp10 and shift say what it multiplies by */

static int
kn_quantity_suffix(const char *p, int *exp10, unsigned *shift)
{
    int          sign, e;
    size_t       i;
    static const struct { char c; int exp10; }  decimal[] = {
        { 'n', -9 }, { 'u', -6 }, { 'm', -3 }, { 'k', 3 }, { 'M', 6 },
        { 'G', 9 }, { 'T', 12 }, { 'P', 15 }, { 'E', 18 }
    };
    static const char  binary[] = "KMGTPE";         /* 2^10, 2^20 … */

    *exp10 = 0;
    *shift = 0;

    if (p[0] == '\0') {
        return 1;
    }

    if (p[1] == '\0') {
        for (i = 0; i < KN_NELEMS(decimal); i++) {
            if (decimal[i].c == p[0]) {
                *exp10 = decimal[i].exp10;
                return 1;
            }
        }
    }

    if (p[1] == 'i' && p[2] == '\0') {
        for (i = 0; binary[i] != '\0'; i++) {
            if (binary[i] == p[0]) {
                *shift = 10 * (unsigned) (i + 1);
                return 1;
            }
        }
        return 0;
    }

    if (p[0] != 'e' && p[0] != 'E') {
        return 0;
    }

    p++;
    sign = 1;

    if (*p == '+' || *p == '-') {
        sign = (*p == '-') ? -1 : 1;
        p++;
    }

    if (*p < '0' || *p > '9') {
        return 0;
    }

    for (e = 0; *p >= '0' && *p <= '9'; p++) {
        if (e <= KN_QUANTITY_EXP_MAX) {
            e = e * 10 + (*p - '0');
        }
    }

    if (*p != '\0') {
        return 0;
    }

    *exp10 = sign * e;
    return 1;
}


/* v *= 10^times; 0 when it would exceed KN_QUANTITY_MAX */

static int
kn_quantity_mul10(kn_quantity_mag_t *v, int times)
{
    for ( ; times > 0; times--) {
        if (*v > KN_QUANTITY_MAG_MAX / 10) {
            return 0;
        }
        *v *= 10;
    }

    return 1;
}


kn_rc
kn_quantity_to(kn_quantity_t q, int64_t scale, int64_t *out)
{
    kn_quantity_t  v;

    if (scale <= 0) {
        return KN_ERROR;
    }

    /* rounded up: towards +infinity */
    v = (q >= 0) ? (q + scale - 1) / scale : -((-q) / scale);

    if (v > INT64_MAX || v < INT64_MIN) {
        return KN_ERROR;
    }

    *out = (int64_t) v;
    return KN_OK;
}


kn_rc
kn_quantity_add(kn_quantity_t *sum, kn_quantity_t q)
{
    kn_quantity_t  s;

    s = *sum + q;       /* both within 10^38: no __int128 overflow */

    if (s > KN_QUANTITY_MAX || s < -KN_QUANTITY_MAX) {
        return KN_ERROR;
    }

    *sum = s;
    return KN_OK;
}
