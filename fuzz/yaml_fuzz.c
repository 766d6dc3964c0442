/*
 * libFuzzer target for ngx_kubenova_yaml_to_json(); see fuzz/README.md.
 *
 * Besides crashes, leaks and undefined behaviour, it checks the promises
 * of the API: a NULL result always comes with a message, the message is
 * valid UTF-8 (the REST API puts it into a JSON answer), and a result is
 * a tree jansson can serialize.  Memory does not run out here, so a bare
 * "out of memory" (the only message without a position) means a jansson
 * call failed for another reason, such as a string from libyaml that
 * jansson finds invalid.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_kubenova_yaml.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char     err[256], *out;
    json_t  *json, *msg;

    json = ngx_kubenova_yaml_to_json(data, size, err, sizeof(err));

    if (json == NULL) {
        if (err[0] == '\0' || strcmp(err, "out of memory") == 0) {
            abort();
        }

        msg = json_string(err);
        if (msg == NULL) {
            abort();
        }

        json_decref(msg);
        return 0;
    }

    if (err[0] != '\0') {
        abort();
    }

    out = json_dumps(json, JSON_COMPACT | JSON_ENCODE_ANY);
    if (out == NULL) {
        abort();
    }

    free(out);
    json_decref(json);

    return 0;
}
