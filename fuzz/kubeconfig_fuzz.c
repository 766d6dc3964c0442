/*
 * libFuzzer target for kubeconfig files (kn_kubeconfig_parse): YAML through
 * the shared converter, then contexts, clusters, users, base64 data.  No
 * directory is given, so file references are refused, never opened.  See
 * fuzz/README.md.
 */

#include <stddef.h>
#include <stdint.h>

#include "kn_kubeconfig.h"


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char             err[256];
    kn_kubeconfig_t  cfg;

    if (kn_kubeconfig_parse(&cfg, (const char *) data, size, "fuzz", NULL,
                            NULL, err, sizeof(err)) == KN_OK)
    {
        kn_kubeconfig_free(&cfg);
    }

    return 0;
}
