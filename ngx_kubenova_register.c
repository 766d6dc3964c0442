/*
 * Cluster registration, nginx half (see the header).
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_kubenova_module.h"
#include "ngx_kubenova_register.h"
#include "ngx_kubenova_ca.h"
#include "ngx_kubenova_json.h"


#define NGX_KUBENOVA_INSTALL_MAX_FILES  64
#define NGX_KUBENOVA_INSTALL_MAX_SIZE   (1024 * 1024)


struct ngx_kubenova_join_s {
    ngx_uint_t           install;          /* else register */
    X509_REQ            *req;
    char                 cn[NGX_KUBENOVA_CA_CN_LEN];
    u_char               serial[NGX_KUBENOVA_CA_SERIAL_LEN + 1];
    time_t               not_after;
    ngx_str_t            token;            /* install: from the query */
};


static char *ngx_kubenova_install_read_dir(ngx_conf_t *cf, ngx_str_t *dir,
    ngx_array_t *out, ngx_uint_t required);
static int ngx_libc_cdecl ngx_kubenova_install_cmp(const void *a,
    const void *b);
static void ngx_kubenova_join_cleanup(void *data);
static ngx_int_t ngx_kubenova_install_send(ngx_http_request_t *r,
    ngx_kubenova_join_t *join, const char *cluster);
static ngx_int_t ngx_kubenova_register_send(ngx_http_request_t *r,
    ngx_kubenova_join_t *join, const char *not_after);
static char *ngx_kubenova_yaml_string(const char *s, size_t len);


/*
 * The static part of install.yaml, read once with the configuration:
 * operator/deploy's manifests (namespace, ServiceAccount, ClusterRole and
 * its binding) in name order, then its crds/, as one multi-document YAML.
 */

char *
ngx_kubenova_install_manifests(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char  *p = conf;

    u_char       *dst;
    size_t        size;
    ngx_str_t    *field, *value, crds, *files;
    ngx_uint_t    i;
    ngx_array_t   docs;

    field = (ngx_str_t *) (p + cmd->offset);

    if (field->data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_conf_full_name(cf->cycle, &value[1], 1) != NGX_OK
        || ngx_array_init(&docs, cf->temp_pool, 16, sizeof(ngx_str_t))
           != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    if (ngx_kubenova_install_read_dir(cf, &value[1], &docs, 1)
        != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    crds.len = value[1].len + sizeof("/crds") - 1;
    crds.data = ngx_pnalloc(cf->temp_pool, crds.len + 1);
    if (crds.data == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_sprintf(crds.data, "%V/crds%Z", &value[1]);

    if (ngx_kubenova_install_read_dir(cf, &crds, &docs, 0) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    files = docs.elts;
    size = 0;

    for (i = 0; i < docs.nelts; i++) {
        size += sizeof("---\n") - 1 + files[i].len + 1;
    }

    if (size > NGX_KUBENOVA_INSTALL_MAX_SIZE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "kubenova_install_manifests: \"%V\" holds more "
                           "than %uz bytes of YAML", &value[1],
                           (size_t) NGX_KUBENOVA_INSTALL_MAX_SIZE);
        return NGX_CONF_ERROR;
    }

    field->data = ngx_pnalloc(cf->pool, size + 1);
    if (field->data == NULL) {
        return NGX_CONF_ERROR;
    }

    dst = field->data;

    for (i = 0; i < docs.nelts; i++) {
        dst = ngx_cpymem(dst, "---\n", sizeof("---\n") - 1);
        dst = ngx_cpymem(dst, files[i].data, files[i].len);

        if (files[i].len && files[i].data[files[i].len - 1] != '\n') {
            *dst++ = '\n';
        }
    }

    field->len = dst - field->data;

    return NGX_CONF_OK;
}


static char *
ngx_kubenova_install_read_dir(ngx_conf_t *cf, ngx_str_t *dir,
    ngx_array_t *out, ngx_uint_t required)
{
    size_t        len;
    ssize_t       n;
    ngx_dir_t     d;
    ngx_str_t    *names, *name, *doc;
    ngx_uint_t    i, nnames;
    ngx_file_t    file;
    ngx_array_t   list;

    if (ngx_open_dir(dir, &d) == NGX_ERROR) {
        if (!required && ngx_errno == NGX_ENOENT) {
            return NGX_CONF_OK;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "kubenova_install_manifests: cannot open \"%V\"",
                           dir);
        return NGX_CONF_ERROR;
    }

    if (ngx_array_init(&list, cf->temp_pool, 16, sizeof(ngx_str_t))
        != NGX_OK)
    {
        ngx_close_dir(&d);
        return NGX_CONF_ERROR;
    }

    while (ngx_read_dir(&d) == NGX_OK) {
        len = ngx_de_namelen(&d);

        if (len < sizeof(".yaml") || ngx_de_name(&d)[0] == '.'
            || ngx_strncmp(ngx_de_name(&d) + len - 5, ".yaml", 5) != 0)
        {
            continue;
        }

        if (list.nelts == NGX_KUBENOVA_INSTALL_MAX_FILES) {
            ngx_close_dir(&d);
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "kubenova_install_manifests: more than %d "
                               "files in \"%V\"",
                               NGX_KUBENOVA_INSTALL_MAX_FILES, dir);
            return NGX_CONF_ERROR;
        }

        name = ngx_array_push(&list);
        if (name == NULL) {
            ngx_close_dir(&d);
            return NGX_CONF_ERROR;
        }

        name->len = dir->len + 1 + len;
        name->data = ngx_pnalloc(cf->temp_pool, name->len + 1);
        if (name->data == NULL) {
            ngx_close_dir(&d);
            return NGX_CONF_ERROR;
        }

        ngx_sprintf(name->data, "%V/%s%Z", dir, ngx_de_name(&d));
    }

    ngx_close_dir(&d);

    names = list.elts;
    nnames = list.nelts;

    if (required && nnames == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "kubenova_install_manifests: no *.yaml in \"%V\"",
                           dir);
        return NGX_CONF_ERROR;
    }

    ngx_qsort(names, nnames, sizeof(ngx_str_t), ngx_kubenova_install_cmp);

    for (i = 0; i < nnames; i++) {
        ngx_memzero(&file, sizeof(ngx_file_t));
        file.name = names[i];
        file.log = cf->log;

        file.fd = ngx_open_file(names[i].data, NGX_FILE_RDONLY,
                                NGX_FILE_OPEN, 0);
        if (file.fd == NGX_INVALID_FILE) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                               "kubenova_install_manifests: cannot open "
                               "\"%V\"", &names[i]);
            return NGX_CONF_ERROR;
        }

        if (ngx_fd_info(file.fd, &file.info) == NGX_FILE_ERROR
            || ngx_file_size(&file.info) > NGX_KUBENOVA_INSTALL_MAX_SIZE)
        {
            ngx_close_file(file.fd);
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "kubenova_install_manifests: \"%V\" cannot "
                               "be read or is too large", &names[i]);
            return NGX_CONF_ERROR;
        }

        doc = ngx_array_push(out);
        if (doc == NULL) {
            ngx_close_file(file.fd);
            return NGX_CONF_ERROR;
        }

        doc->len = (size_t) ngx_file_size(&file.info);
        doc->data = ngx_pnalloc(cf->temp_pool, doc->len + 1);
        if (doc->data == NULL) {
            ngx_close_file(file.fd);
            return NGX_CONF_ERROR;
        }

        n = ngx_read_file(&file, doc->data, doc->len, 0);
        ngx_close_file(file.fd);

        if (n != (ssize_t) doc->len) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "kubenova_install_manifests: cannot read "
                               "\"%V\"", &names[i]);
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


static int ngx_libc_cdecl
ngx_kubenova_install_cmp(const void *a, const void *b)
{
    const ngx_str_t  *x = a, *y = b;

    return ngx_strcmp(x->data, y->data);
}


ngx_int_t
ngx_kubenova_register_envelope(ngx_http_request_t *r, json_t *env)
{
    json_t                         *reg;
    ngx_http_kubenova_main_conf_t  *kmcf;

    kmcf = ngx_http_get_module_main_conf(r, ngx_http_kubenova_module);

    reg = json_pack("{s:s%,s:I}",
                    "public_url", kmcf->public_url.data
                                  ? (char *) kmcf->public_url.data : "",
                    (size_t) kmcf->public_url.len,
                    "join_token_ttl", (json_int_t) kmcf->join_token_ttl);

    if (reg == NULL || json_object_set_new(env, "registration", reg) != 0) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


ngx_int_t
ngx_kubenova_register_prepare(ngx_http_request_t *r, const char *op,
    ngx_str_t *cluster, json_t *body, json_t *env, ngx_kubenova_join_t **out)
{
    u_char                         *dst, *src;
    json_t                         *csr, *cert;
    ngx_str_t                       arg;
    ngx_int_t                       rc;
    ngx_pool_cleanup_t             *cln;
    ngx_kubenova_join_t            *join;
    ngx_http_kubenova_main_conf_t  *kmcf;
    char                            err[160];
    u_char                          msg[256];

    kmcf = ngx_http_get_module_main_conf(r, ngx_http_kubenova_module);

    csr = body ? json_object_get(body, "csr") : NULL;

    if (ngx_strcmp(op, "cluster.register") == 0 && !json_is_string(csr)) {
        return NGX_DECLINED;     /* the database answers what is wrong */
    }

    if (kmcf->ca == NULL || kmcf->public_url.len == 0
        || kmcf->gateway_url.len == 0
        || (ngx_strcmp(op, "cluster.install") == 0
            && (kmcf->install_manifests.len == 0
                || kmcf->operator_image.len == 0)))
    {
        return ngx_kubenova_json_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                   "registration_unavailable",
                   "cluster registration is not configured on this Manager "
                   "(kubenova_ca, kubenova_public_url, kubenova_gateway_url, "
                   "kubenova_install_manifests, kubenova_operator_image)");
    }

    join = ngx_pcalloc(r->pool, sizeof(ngx_kubenova_join_t));
    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (join == NULL || cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_kubenova_join_cleanup;
    cln->data = join;

    if (ngx_strcmp(op, "cluster.install") == 0) {
        if (ngx_http_arg(r, (u_char *) "token", 5, &arg) == NGX_OK) {
            /* unescaped as the database sees it (the envelope's query) */
            dst = ngx_pnalloc(r->pool, arg.len);
            if (dst == NULL) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            join->token.data = dst;
            src = arg.data;
            ngx_unescape_uri(&dst, &src, arg.len, 0);
            join->token.len = dst - join->token.data;
        }

        join->install = 1;
        *out = join;
        return NGX_DECLINED;
    }

    /* the CSR, judged here so that a bad one costs no token */

    rc = ngx_kubenova_ca_parse_csr((u_char *) json_string_value(csr),
                                   json_string_length(csr), &join->req,
                                   join->cn, err, sizeof(err));
    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        ngx_snprintf(msg, sizeof(msg), "%s%Z", err);
        return ngx_kubenova_json_error(r, 422,
                                       "invalid_csr", (char *) msg);
    }

    if (ngx_strlen(join->cn) != cluster->len
        || ngx_strncmp(join->cn, cluster->data, cluster->len) != 0)
    {
        ngx_snprintf(msg, sizeof(msg), "the CSR is for cluster \"%s\", "
                     "not \"%V\": its subject must be CN=%V%Z",
                     join->cn, cluster, cluster);
        return ngx_kubenova_json_error(r, NGX_HTTP_FORBIDDEN,
                                       "csr_for_another_cluster",
                                       (char *) msg);
    }

    if (ngx_kubenova_ca_new_serial(join->serial) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    join->not_after = ngx_time() + kmcf->ca->validity;

    cert = json_pack("{s:s,s:s,s:I}", "cn", join->cn,
                     "serial", (char *) join->serial,
                     "not_after", (json_int_t) join->not_after);

    if (cert == NULL || json_object_set_new(env, "certificate", cert) != 0) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    *out = join;

    return NGX_DECLINED;
}


static void
ngx_kubenova_join_cleanup(void *data)
{
    ngx_kubenova_join_t  *join = data;

    if (join->req) {
        X509_REQ_free(join->req);
        join->req = NULL;
    }
}


ngx_int_t
ngx_kubenova_register_answer(ngx_http_request_t *r, ngx_kubenova_join_t *join,
    const char *body, size_t len)
{
    json_t      *json;
    ngx_int_t    rc;
    const char  *cluster, *not_after;

    json = json_loadb(body, len, 0, NULL);

    if (json == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cluster = json_string_value(json_object_get(json, "cluster"));
    not_after = json_string_value(json_object_get(json, "not_after"));

    if (cluster == NULL || (!join->install && not_after == NULL)) {
        json_decref(json);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = join->install ? ngx_kubenova_install_send(r, join, cluster)
                       : ngx_kubenova_register_send(r, join, not_after);

    json_decref(json);

    return rc;
}


static ngx_int_t
ngx_kubenova_register_send(ngx_http_request_t *r, ngx_kubenova_join_t *join,
    const char *not_after)
{
    json_t                         *answer;
    ngx_str_t                       pem;
    ngx_http_kubenova_main_conf_t  *kmcf;

    kmcf = ngx_http_get_module_main_conf(r, ngx_http_kubenova_module);

    if (join->req == NULL
        || ngx_kubenova_ca_sign(kmcf->ca, join->req, join->cn, join->serial,
                                join->not_after, r->pool, &pem,
                                r->connection->log)
           != NGX_OK)
    {
        return ngx_kubenova_json_error(r, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                       "internal_error",
                                       "the certificate could not be signed");
    }

    answer = json_pack("{s:s%,s:s%,s:s}",
                       "certificate", (char *) pem.data, pem.len,
                       "ca", (char *) kmcf->ca->cert_pem.data,
                       kmcf->ca->cert_pem.len,
                       "not_after", not_after);
    if (answer == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_kubenova_json_send(r, NGX_HTTP_CREATED, answer);
}


/*
 * install.yaml: the static manifests, then what this cluster needs: the
 * Operator's access to its identity Secret, the join Secret and the
 * Deployment.  Values that come from configuration or the database are
 * written as JSON strings (valid YAML double-quoted scalars), so nothing
 * in them can change the document's structure.
 */

static const char  ngx_kubenova_install_tail[] =
    "---\n"
    "# the Operator keeps its key and certificate in this one Secret\n"
    "apiVersion: rbac.authorization.k8s.io/v1\n"
    "kind: Role\n"
    "metadata:\n"
    "  name: kubenova-operator-identity\n"
    "  namespace: kubenova-system\n"
    "  labels:\n"
    "    app.kubernetes.io/name: kubenova-operator\n"
    "rules:\n"
    "- apiGroups: [\"\"]\n"
    "  resources: [secrets]\n"
    "  resourceNames: [kubenova-operator-identity]\n"
    "  verbs: [get, update, patch]\n"
    "# create cannot be limited to a name (the object does not exist yet)\n"
    "- apiGroups: [\"\"]\n"
    "  resources: [secrets]\n"
    "  verbs: [create]\n"
    "---\n"
    "apiVersion: rbac.authorization.k8s.io/v1\n"
    "kind: RoleBinding\n"
    "metadata:\n"
    "  name: kubenova-operator-identity\n"
    "  namespace: kubenova-system\n"
    "  labels:\n"
    "    app.kubernetes.io/name: kubenova-operator\n"
    "roleRef:\n"
    "  apiGroup: rbac.authorization.k8s.io\n"
    "  kind: Role\n"
    "  name: kubenova-operator-identity\n"
    "subjects:\n"
    "- kind: ServiceAccount\n"
    "  name: kubenova-operator\n"
    "  namespace: kubenova-system\n"
    "---\n"
    "apiVersion: v1\n"
    "kind: Secret\n"
    "metadata:\n"
    "  name: kubenova-join\n"
    "  namespace: kubenova-system\n"
    "  labels:\n"
    "    app.kubernetes.io/name: kubenova-operator\n"
    "type: Opaque\n"
    "stringData:\n"
    "  cluster: %s\n"
    "  join-token: %s\n"
    "  register-url: %s\n"
    "  gateway-url: %s\n"
    "  ca.crt: %s\n"
    "---\n"
    "apiVersion: apps/v1\n"
    "kind: Deployment\n"
    "metadata:\n"
    "  name: kubenova-operator\n"
    "  namespace: kubenova-system\n"
    "  labels:\n"
    "    app.kubernetes.io/name: kubenova-operator\n"
    "spec:\n"
    "  replicas: 1\n"
    "  strategy:\n"
    "    type: Recreate\n"
    "  selector:\n"
    "    matchLabels:\n"
    "      app.kubernetes.io/name: kubenova-operator\n"
    "  template:\n"
    "    metadata:\n"
    "      labels:\n"
    "        app.kubernetes.io/name: kubenova-operator\n"
    "    spec:\n"
    "      serviceAccountName: kubenova-operator\n"
    "      containers:\n"
    "      - name: operator\n"
    "        image: %s\n"
    "        command:\n"
    "        - kubenova-operator\n"
    "        - --join-dir\n"
    "        - /etc/kubenova/join\n"
    "        - --identity-secret\n"
    "        - kubenova-system/kubenova-operator-identity\n"
    "        volumeMounts:\n"
    "        - name: join\n"
    "          mountPath: /etc/kubenova/join\n"
    "          readOnly: true\n"
    "      volumes:\n"
    "      - name: join\n"
    "        secret:\n"
    "          secretName: kubenova-join\n";


static ngx_int_t
ngx_kubenova_install_send(ngx_http_request_t *r, ngx_kubenova_join_t *join,
    const char *cluster)
{
    u_char                         *p, *yaml;
    char                           *v[6];
    size_t                          len;
    ngx_int_t                       rc;
    ngx_uint_t                      i;
    ngx_str_t                       url;
    ngx_http_kubenova_main_conf_t  *kmcf;

    static ngx_str_t  type = ngx_string("application/yaml");

    kmcf = ngx_http_get_module_main_conf(r, ngx_http_kubenova_module);

    /* <public url>/api/v1/clusters/<name>/register */

    url = kmcf->public_url;

    while (url.len && url.data[url.len - 1] == '/') {
        url.len--;
    }

    len = url.len + sizeof("/api/v1/clusters//register") + ngx_strlen(cluster);
    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_snprintf(p, len, "%V/api/v1/clusters/%s/register%Z", &url, cluster);

    v[0] = ngx_kubenova_yaml_string(cluster, ngx_strlen(cluster));
    v[1] = ngx_kubenova_yaml_string((char *) join->token.data,
                                    join->token.len);
    v[2] = ngx_kubenova_yaml_string((char *) p, ngx_strlen(p));
    v[3] = ngx_kubenova_yaml_string((char *) kmcf->gateway_url.data,
                                    kmcf->gateway_url.len);
    v[4] = ngx_kubenova_yaml_string((char *) kmcf->ca->cert_pem.data,
                                    kmcf->ca->cert_pem.len);
    v[5] = ngx_kubenova_yaml_string((char *) kmcf->operator_image.data,
                                    kmcf->operator_image.len);

    rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
    len = kmcf->install_manifests.len + sizeof(ngx_kubenova_install_tail);

    for (i = 0; i < 6; i++) {
        if (v[i] == NULL) {
            goto done;
        }

        len += ngx_strlen(v[i]);
    }

    yaml = ngx_pnalloc(r->pool, len);
    if (yaml == NULL) {
        goto done;
    }

    p = ngx_cpymem(yaml, kmcf->install_manifests.data,
                   kmcf->install_manifests.len);
    p = ngx_snprintf(p, len - (p - yaml), ngx_kubenova_install_tail,
                     v[0], v[1], v[2], v[3], v[4], v[5]);

    if (ngx_kubenova_add_header(r, &r->headers_out.headers, "Cache-Control",
                                (u_char *) "no-store",
                                sizeof("no-store") - 1) != NGX_OK)
    {
        goto done;
    }

    rc = ngx_kubenova_send_body(r, NGX_HTTP_OK, &type, yaml, p - yaml);

done:

    for (i = 0; i < 6; i++) {
        if (v[i]) {
            free(v[i]);
        }
    }

    return rc;
}


/* a JSON string (malloc'ed), which YAML reads as a double-quoted scalar */

static char *
ngx_kubenova_yaml_string(const char *s, size_t len)
{
    char    *out;
    json_t  *json;

    json = json_stringn(s ? s : "", s ? len : 0);
    if (json == NULL) {
        return NULL;
    }

    out = json_dumps(json, JSON_ENCODE_ANY);
    json_decref(json);

    return out;
}
