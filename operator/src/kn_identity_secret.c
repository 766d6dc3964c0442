/*
 * The identity in a kubernetes.io/tls Secret (see kn_identity_secret.h).
 */

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "kn_identity_secret.h"


#define KN_IDENTITY_SECRET_ERROR_MAX  1024


struct kn_identity_secret_op_s {
    kn_kube_t              *kube;
    kn_kube_req_t          *req;         /* the request under way */
    char                   *ns;
    char                   *name;
    char                   *cluster;
    kn_identity_t          *id;          /* load */
    const kn_identity_t    *save;        /* save */
    kn_identity_secret_pt   done;
    void                   *data;
};


static kn_identity_secret_op_t *kn_identity_secret_op(kn_kube_t *kube,
    const char *ns, const char *name, kn_identity_secret_pt done,
    void *data);
static void kn_identity_secret_end(kn_identity_secret_op_t *op, kn_rc rc,
    const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static kn_rc kn_identity_secret_get(kn_identity_secret_op_t *op,
    kn_kube_done_pt done);
static void kn_identity_secret_free(kn_identity_secret_op_t *op);
static void kn_identity_secret_got(const kn_kube_result_t *res,
    void *data);
static kn_rc kn_identity_secret_parse(kn_identity_secret_op_t *op,
    json_t *secret, char *err, size_t err_size);
static char *kn_identity_secret_decode(json_t *data, const char *key,
    size_t *len);
static void kn_identity_secret_current(const kn_kube_result_t *res,
    void *data);
static json_t *kn_identity_secret_object(kn_identity_secret_op_t *op,
    const char *resource_version);
static kn_rc kn_identity_secret_put(json_t *data, const char *key,
    const char *value, size_t len);
static void kn_identity_secret_written(const kn_kube_result_t *res,
    void *data);


kn_rc
kn_identity_secret_load(kn_kube_t *kube, const char *ns, const char *name,
    const char *cluster, kn_identity_t *id, kn_identity_secret_pt done,
    void *data, kn_identity_secret_op_t **out)
{
    kn_identity_secret_op_t  *op;

    op = kn_identity_secret_op(kube, ns, name, done, data);
    if (op == NULL) {
        return KN_ERROR;
    }

    op->cluster = strdup(cluster);
    op->id = id;

    if (op->cluster == NULL) {
        kn_identity_secret_free(op);
        return KN_ERROR;
    }

    if (kn_identity_secret_get(op, kn_identity_secret_got) != KN_OK) {
        return KN_ERROR;
    }

    *out = op;

    return KN_OK;
}


static void
kn_identity_secret_got(const kn_kube_result_t *res, void *data)
{
    char                      err[KN_IDENTITY_SECRET_ERROR_MAX];
    kn_identity_secret_op_t  *op = data;

    op->req = NULL;

    if (res->status == 404) {
        kn_identity_secret_end(op, KN_DECLINED, "no Secret yet");
        return;
    }

    if (res->error != NULL) {
        kn_identity_secret_end(op, KN_ERROR, "identity: reading Secret "
                               "%s/%s: %s", op->ns, op->name, res->error);
        return;
    }

    if (kn_identity_secret_parse(op, res->body, err, sizeof(err))
        == KN_ERROR)
    {
        kn_identity_secret_end(op, KN_ERROR, "identity: Secret %s/%s: %s",
                               op->ns, op->name, err);
        return;
    }

    kn_identity_secret_end(op, op->id->key ? KN_OK : KN_DECLINED, "%s",
                           op->id->key ? "" : "the Secret holds no key");
}


static kn_rc
kn_identity_secret_parse(kn_identity_secret_op_t *op, json_t *secret,
    char *err, size_t err_size)
{
    char    *key, *cert, *ca;
    size_t   key_len, cert_len, ca_len;
    kn_rc    rc;
    json_t  *d;

    d = json_object_get(secret, "data");

    key = kn_identity_secret_decode(d, "tls.key", &key_len);
    if (key == NULL) {
        return KN_DECLINED;
    }

    rc = kn_identity_set_key(op->id, key, key_len, err, err_size);
    explicit_bzero(key, key_len);
    free(key);

    if (rc != KN_OK) {
        return KN_ERROR;
    }

    cert = kn_identity_secret_decode(d, "tls.crt", &cert_len);
    if (cert == NULL) {
        return KN_OK;               /* a key alone: not registered yet */
    }

    ca = kn_identity_secret_decode(d, "ca.crt", &ca_len);

    rc = kn_identity_set_cert(op->id, cert, cert_len, ca, ca ? ca_len : 0,
                              op->cluster, err, err_size);
    free(cert);
    free(ca);

    return rc;
}


/* a data value, base64-decoded; NULL when absent, empty or invalid */

static char *
kn_identity_secret_decode(json_t *data, const char *key, size_t *len)
{
    int          n;
    char        *out;
    size_t       in_len;
    const char  *in;

    in = json_string_value(json_object_get(data, key));
    if (in == NULL) {
        return NULL;
    }

    in_len = strlen(in);
    if (in_len == 0 || in_len % 4 != 0
        || in_len / 4 * 3 > KN_IDENTITY_PEM_MAX)
    {
        return NULL;
    }

    out = malloc(in_len / 4 * 3 + 1);
    if (out == NULL) {
        return NULL;
    }

    n = EVP_DecodeBlock((unsigned char *) out, (const unsigned char *) in,
                        (int) in_len);
    if (n < 0) {
        free(out);
        return NULL;
    }

    /* EVP_DecodeBlock counts the padding as zero bytes */
    if (in[in_len - 1] == '=') {
        n--;
        if (in[in_len - 2] == '=') {
            n--;
        }
    }

    out[n] = '\0';
    *len = (size_t) n;

    return out;
}


/* saving: GET for the resourceVersion, then PUT, or POST when missing */


kn_rc
kn_identity_secret_save(kn_kube_t *kube, const char *ns, const char *name,
    const kn_identity_t *id, kn_identity_secret_pt done, void *data,
    kn_identity_secret_op_t **out)
{
    kn_identity_secret_op_t  *op;

    op = kn_identity_secret_op(kube, ns, name, done, data);
    if (op == NULL) {
        return KN_ERROR;
    }

    op->save = id;

    if (kn_identity_secret_get(op, kn_identity_secret_current) != KN_OK) {
        return KN_ERROR;
    }

    *out = op;

    return KN_OK;
}


void
kn_identity_secret_cancel(kn_identity_secret_op_t *op)
{
    if (op == NULL) {
        return;
    }

    kn_kube_cancel(op->req);
    kn_identity_secret_free(op);
}


static void
kn_identity_secret_current(const kn_kube_result_t *res, void *data)
{
    char                      path[512];
    kn_rc                     rc;
    json_t                   *obj;
    kn_kube_ref_t             ref;
    const char               *rv;
    kn_identity_secret_op_t  *op = data;

    op->req = NULL;

    if (res->error != NULL && res->status != 404) {
        kn_identity_secret_end(op, KN_ERROR, "identity: reading Secret "
                               "%s/%s: %s", op->ns, op->name, res->error);
        return;
    }

    rv = NULL;
    if (res->status != 404) {
        rv = json_string_value(json_object_get(
                 json_object_get(res->body, "metadata"), "resourceVersion"));
    }

    obj = kn_identity_secret_object(op, rv);
    if (obj == NULL) {
        kn_identity_secret_end(op, KN_ERROR, "identity: out of memory");
        return;
    }

    memset(&ref, 0, sizeof(ref));
    ref.api_version = "v1";
    ref.resource = "secrets";
    ref.namespace = op->ns;
    ref.name = rv ? op->name : NULL;

    if (kn_kube_path(&ref, path, sizeof(path)) != KN_OK) {
        json_decref(obj);
        kn_identity_secret_end(op, KN_ERROR, "identity: invalid Secret "
                               "%s/%s", op->ns, op->name);
        return;
    }

    rc = kn_kube_request(op->kube, rv ? "PUT" : "POST", path, NULL, obj,
                         kn_identity_secret_written, op, &op->req);
    json_decref(obj);

    if (rc != KN_OK) {
        kn_identity_secret_end(op, KN_ERROR, "identity: cannot write Secret "
                               "%s/%s now", op->ns, op->name);
    }
}


static json_t *
kn_identity_secret_object(kn_identity_secret_op_t *op,
    const char *resource_version)
{
    json_t               *obj, *d;
    const kn_identity_t  *id = op->save;

    obj = json_pack("{s:s, s:s, s:{s:s, s:s, s:{s:s}}, s:s, s:{}}",
                    "apiVersion", "v1", "kind", "Secret",
                    "metadata", "name", op->name, "namespace", op->ns,
                    "labels", "app.kubernetes.io/name", "kubenova-operator",
                    "type", "kubernetes.io/tls", "data");
    if (obj == NULL) {
        return NULL;
    }

    if (resource_version != NULL
        && json_object_set_new(json_object_get(obj, "metadata"),
                               "resourceVersion",
                               json_string(resource_version)) != 0)
    {
        goto failed;
    }

    d = json_object_get(obj, "data");

    if (kn_identity_secret_put(d, "tls.key", id->key_pem, id->key_pem_len)
        != KN_OK
        || kn_identity_secret_put(d, "tls.crt",
                                  id->cert_pem ? id->cert_pem : "",
                                  id->cert_pem ? id->cert_pem_len : 0)
           != KN_OK
        || (id->ca_pem
            && kn_identity_secret_put(d, "ca.crt", id->ca_pem,
                                      id->ca_pem_len) != KN_OK))
    {
        goto failed;
    }

    return obj;

failed:

    json_decref(obj);
    return NULL;
}


static kn_rc
kn_identity_secret_put(json_t *data, const char *key, const char *value,
    size_t len)
{
    int    rc;
    char  *b64;

    b64 = malloc((len + 2) / 3 * 4 + 1);
    if (b64 == NULL) {
        return KN_ERROR;
    }

    EVP_EncodeBlock((unsigned char *) b64, (const unsigned char *) value,
                    (int) len);

    rc = json_object_set_new(data, key, json_string(b64));

    explicit_bzero(b64, (len + 2) / 3 * 4);
    free(b64);

    return rc == 0 ? KN_OK : KN_ERROR;
}


static void
kn_identity_secret_written(const kn_kube_result_t *res, void *data)
{
    kn_identity_secret_op_t  *op = data;

    op->req = NULL;

    if (res->error != NULL) {
        kn_identity_secret_end(op, KN_ERROR, "identity: writing Secret "
                               "%s/%s: %s", op->ns, op->name, res->error);
        return;
    }

    kn_identity_secret_end(op, KN_OK, "%s", "");
}


/* helpers */


static kn_identity_secret_op_t *
kn_identity_secret_op(kn_kube_t *kube, const char *ns, const char *name,
    kn_identity_secret_pt done, void *data)
{
    kn_identity_secret_op_t  *op;

    op = calloc(1, sizeof(kn_identity_secret_op_t));
    if (op == NULL) {
        return NULL;
    }

    op->kube = kube;
    op->ns = strdup(ns);
    op->name = strdup(name);
    op->done = done;
    op->data = data;

    if (op->ns == NULL || op->name == NULL) {
        kn_identity_secret_free(op);
        return NULL;
    }

    return op;
}


static void
kn_identity_secret_end(kn_identity_secret_op_t *op, kn_rc rc,
    const char *fmt, ...)
{
    char     err[KN_IDENTITY_SECRET_ERROR_MAX];
    va_list  args;

    va_start(args, fmt);
    vsnprintf(err, sizeof(err), fmt, args);
    va_end(args);

    op->done(op->data, rc, err);

    kn_identity_secret_free(op);
}


/* GET the Secret; op is freed when that cannot start (done never comes) */

static kn_rc
kn_identity_secret_get(kn_identity_secret_op_t *op, kn_kube_done_pt done)
{
    kn_kube_ref_t  ref;

    memset(&ref, 0, sizeof(ref));
    ref.api_version = "v1";
    ref.resource = "secrets";
    ref.namespace = op->ns;
    ref.name = op->name;

    if (kn_kube_get(op->kube, &ref, done, op, &op->req) != KN_OK) {
        kn_identity_secret_free(op);
        return KN_ERROR;
    }

    return KN_OK;
}


static void
kn_identity_secret_free(kn_identity_secret_op_t *op)
{
    free(op->cluster);
    free(op->ns);
    free(op->name);
    free(op);
}
