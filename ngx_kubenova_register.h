/*
 * Cluster registration, nginx half (issue 6; docs/api-design.md,
 * "Registration"): the install manifest a join token serves, and the CSR a
 * join token gets signed.  The REST API routes both (no bearer token: the
 * join token authorizes them) and calls in here before and after its one
 * statement; the database judges the token (sql/functions/25_registration.sql).
 */

#ifndef _NGX_KUBENOVA_REGISTER_H_INCLUDED_
#define _NGX_KUBENOVA_REGISTER_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <jansson.h>


typedef struct ngx_kubenova_join_s  ngx_kubenova_join_t;


/* kubenova_install_manifests <dir>: its YAML files, then those of crds */
char *ngx_kubenova_install_manifests(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

/* "registration" of the envelope: public URL and join token TTL */
ngx_int_t ngx_kubenova_register_envelope(ngx_http_request_t *r, json_t *env);

/*
 * Before the statement of cluster.install or cluster.register: checks
 * the configuration, and for register the CSR, whose serial and expiry go
 * into the envelope as "certificate".  NGX_DECLINED to go on (*join set),
 * else the answer sent.
 */
ngx_int_t ngx_kubenova_register_prepare(ngx_http_request_t *r,
    const char *op, ngx_str_t *cluster, json_t *body, json_t *env,
    ngx_kubenova_join_t **join);

/* after a 200/201 of the database: the manifest, or the signed certificate */
ngx_int_t ngx_kubenova_register_answer(ngx_http_request_t *r,
    ngx_kubenova_join_t *join, const char *body, size_t len);


#endif /* _NGX_KUBENOVA_REGISTER_H_INCLUDED_ */
