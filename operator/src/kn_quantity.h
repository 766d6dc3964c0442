/*
 * Kubernetes quantities ("250m", "1.5Gi", "128M", "1e3"), exactly.
 *
 * The grammar is the API's own (resource.Quantity):
 *
 *   quantity  ::= [+|-] number suffix
 *   number    ::= digits | digits "." [digits] | "." digits
 *   suffix    ::= "" | n | u | m | k | M | G | T | P | E        (10^3k)
 *               | Ki | Mi | Gi | Ti | Pi | Ei                   (2^10k)
 *               | (e | E) [+|-] digits                          (10^digits)
 *
 * ("1E" is exa, "1E3" is 1000.)  A value is held in nano-units, rounded
 * up (towards +infinity) when it is finer than that, as Kubernetes itself
 * rounds a quantity to nano precision; kn_quantity_to() then scales it to
 * the unit wanted, again rounding up, as Quantity.MilliValue() and
 * Value() do.  Sums of nano-units are exact, so a total is converted once,
 * at the end.  Nothing here allocates.
 */

#ifndef KN_QUANTITY_H
#define KN_QUANTITY_H


#include "kn_core.h"


/* nano-units; |value| <= KN_QUANTITY_MAX */
typedef __int128  kn_quantity_t;

/* 10^38: about 10^29 units, far beyond any resource */
#define KN_QUANTITY_MAX                                                      \
    ((kn_quantity_t) 10000000000000000000ULL                                 \
     * (kn_quantity_t) 10000000000000000000ULL)

#define KN_QUANTITY_NANO   1                    /* kn_quantity_to() scales */
#define KN_QUANTITY_MILLI  1000000              /* millicores */
#define KN_QUANTITY_UNIT   1000000000           /* bytes, counts */


/*
 * KN_OK, or KN_ERROR when text is not a quantity or its magnitude exceeds
 * KN_QUANTITY_MAX nano-units; err (may be NULL) then says why.
 */
kn_rc kn_quantity_parse(const char *text, kn_quantity_t *q, const char **err);

/*
 * q in units of scale nano-units (KN_QUANTITY_MILLI, KN_QUANTITY_UNIT),
 * rounded up; KN_ERROR when it does not fit an int64_t.
 */
kn_rc kn_quantity_to(kn_quantity_t q, int64_t scale, int64_t *out);

/* a + b, or KN_ERROR past KN_QUANTITY_MAX */
kn_rc kn_quantity_add(kn_quantity_t *sum, kn_quantity_t q);


#endif /* KN_QUANTITY_H */
