/*
 * One-shot bootstrap (issue 6): POST /api/v1/clusters may carry the new
 * cluster's kubeconfig as "bootstrap_kubeconfig".  It is sealed here, in
 * the worker, before the body goes to PostgreSQL (AES-256-GCM with the key
 * of kubenova_secret_key_file, bound to "bootstrap\n<cluster>"), and
 * replaced by "bootstrap_kubeconfig_sealed" (base64; false when no key is
 * configured, which the database refuses with 422).  The database keeps
 * it until kubenova-bootstrap (bootstrap/) takes it, applies the cluster's
 * install.yaml with it and wipes it.
 */

#ifndef _NGX_KUBENOVA_BOOTSTRAP_H_INCLUDED_
#define _NGX_KUBENOVA_BOOTSTRAP_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <jansson.h>


/* NGX_OK (body changed or left alone) or NGX_ERROR (out of memory) */
ngx_int_t ngx_kubenova_bootstrap_seal(ngx_http_request_t *r, json_t *body);


#endif /* _NGX_KUBENOVA_BOOTSTRAP_H_INCLUDED_ */
