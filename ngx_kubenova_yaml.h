/*
 * YAML documents (KubeVela Applications sent to the REST API) turned into
 * jansson values, so that the API handles a single representation.
 *
 * The input comes from clients, so the converter is strict and bounded:
 * exactly one document, YAML 1.2 core schema for plain scalars, no aliases
 * (no "billion laughs" expansion), duplicate keys refused, nesting depth and
 * node count capped.  The caller bounds the input length.
 *
 * Deliberately free of nginx headers: the converter is also built on its
 * own by the unit test (t/unit/yaml_test.c) and the fuzzer (fuzz/).
 */

#ifndef _NGX_KUBENOVA_YAML_H_INCLUDED_
#define _NGX_KUBENOVA_YAML_H_INCLUDED_


#include <stddef.h>
#include <jansson.h>


#define NGX_KUBENOVA_YAML_MAX_DEPTH  64
#define NGX_KUBENOVA_YAML_MAX_NODES  100000


/*
 * Returns a new reference (the caller json_decref()s it), or NULL with a
 * NUL-terminated, valid UTF-8 message in err, such as
 *   "line 3, column 5: mapping values are not allowed in this context".
 * err may be NULL when err_size is 0.
 */
json_t *ngx_kubenova_yaml_to_json(const unsigned char *data, size_t len,
    char *err, size_t err_size);


#endif /* _NGX_KUBENOVA_YAML_H_INCLUDED_ */
