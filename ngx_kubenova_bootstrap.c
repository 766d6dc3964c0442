/*
 * The bootstrap kubeconfig of a new cluster, sealed before it is stored
 * (see the header).
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_kubenova_module.h"
#include "ngx_kubenova_bootstrap.h"
#include "ngx_kubenova_crypto.h"


ngx_int_t
ngx_kubenova_bootstrap_seal(ngx_http_request_t *r, json_t *body)
{
    u_char                         *sealed;
    size_t                          len;
    json_t                         *kc, *value;
    ngx_str_t                       aad, raw, b64;
    const char                     *name;
    ngx_http_kubenova_main_conf_t  *kmcf;

    /* only this function writes the sealed form, never a client */

    if (json_is_object(body)) {
        (void) json_object_del(body, "bootstrap_kubeconfig_sealed");
    }

    kc = json_object_get(body, "bootstrap_kubeconfig");

    /* anything but a string is the database's to refuse, as given */

    if (!json_is_string(kc)) {
        return NGX_OK;
    }

    kmcf = ngx_http_get_module_main_conf(r, ngx_http_kubenova_module);

    if (!kmcf->has_secret_key) {
        value = json_false();

    } else {
        name = json_string_value(json_object_get(body, "name"));
        len = json_string_length(kc);

        if (ngx_kubenova_crypto_bootstrap_aad(r->pool, name ? name : "",
                                              &aad)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        sealed = ngx_pnalloc(r->pool, len + NGX_KUBENOVA_SEAL_OVERHEAD);
        b64.data = ngx_pnalloc(r->pool, ngx_base64_encoded_length(
                                            len + NGX_KUBENOVA_SEAL_OVERHEAD)
                                        + 1);

        if (sealed == NULL || b64.data == NULL
            || ngx_kubenova_crypto_seal(kmcf->secret_key, &aad,
                                        (u_char *) json_string_value(kc), len,
                                        sealed)
               != NGX_OK)
        {
            return NGX_ERROR;
        }

        raw.data = sealed;
        raw.len = len + NGX_KUBENOVA_SEAL_OVERHEAD;
        ngx_encode_base64(&b64, &raw);

        value = json_stringn((const char *) b64.data, b64.len);
        if (value == NULL) {
            return NGX_ERROR;
        }
    }

    /* the plaintext leaves the body (and the envelope) here */

    if (json_object_del(body, "bootstrap_kubeconfig") != 0
        || json_object_set_new(body, "bootstrap_kubeconfig_sealed", value)
           != 0)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}
