/*
 * The Manager's certificate authority for Operators (see the header).
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "ngx_kubenova_ca.h"


#define NGX_KUBENOVA_CA_VALIDITY_DEFAULT  86400
#define NGX_KUBENOVA_CA_BACKDATE          300     /* s, clock skew */
#define NGX_KUBENOVA_CA_RSA_MIN_BITS      2048


static void ngx_kubenova_ca_cleanup(void *data);
static ngx_int_t ngx_kubenova_ca_pem(ngx_pool_t *pool, X509 *cert,
    ngx_str_t *pem);
static ngx_int_t ngx_kubenova_ca_serial_hex(const ASN1_INTEGER *serial,
    u_char *hex, size_t size);
static ngx_int_t ngx_kubenova_ca_add_ext(X509 *cert, X509V3_CTX *ctx,
    int nid, const char *value);


char *
ngx_kubenova_ca_directive(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char  *p = conf;

    BIO                  *bio;
    time_t                validity;
    ngx_str_t            *value, s;
    ngx_uint_t            i;
    ngx_pool_cleanup_t   *cln;
    ngx_kubenova_ca_t   **field, *ca;

    field = (ngx_kubenova_ca_t **) (p + cmd->offset);

    if (*field != NULL) {
        return "is duplicate";
    }

    value = cf->args->elts;
    validity = NGX_KUBENOVA_CA_VALIDITY_DEFAULT;

    for (i = 3; i < cf->args->nelts; i++) {
        if (ngx_strncmp(value[i].data, "validity=", 9) == 0) {
            s.data = value[i].data + 9;
            s.len = value[i].len - 9;
            validity = ngx_parse_time(&s, 1);
            if (validity == (time_t) NGX_ERROR || validity < 60) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid \"%V\": a time of 60s or more",
                                   &value[i]);
                return NGX_CONF_ERROR;
            }
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\"", &value[i]);
        return NGX_CONF_ERROR;
    }

    ca = ngx_pcalloc(cf->pool, sizeof(ngx_kubenova_ca_t));
    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (ca == NULL || cln == NULL) {
        return NGX_CONF_ERROR;
    }

    cln->handler = ngx_kubenova_ca_cleanup;
    cln->data = ca;
    ca->validity = validity;

    for (i = 1; i <= 2; i++) {
        if (ngx_conf_full_name(cf->cycle, &value[i], 1) != NGX_OK) {
            return NGX_CONF_ERROR;
        }
    }

    bio = BIO_new_file((char *) value[1].data, "r");
    if (bio != NULL) {
        ca->cert = PEM_read_bio_X509(bio, NULL, NULL, NULL);
        BIO_free(bio);
    }

    if (ca->cert == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "kubenova_ca: cannot read a PEM certificate "
                           "from \"%V\"", &value[1]);
        ERR_clear_error();
        return NGX_CONF_ERROR;
    }

    bio = BIO_new_file((char *) value[2].data, "r");
    if (bio != NULL) {
        ca->key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
        BIO_free(bio);
    }

    if (ca->key == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "kubenova_ca: cannot read a PEM private key "
                           "(unencrypted) from \"%V\"", &value[2]);
        ERR_clear_error();
        return NGX_CONF_ERROR;
    }

    if (X509_check_private_key(ca->cert, ca->key) != 1) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "kubenova_ca: the key \"%V\" does not belong to "
                           "the certificate \"%V\"", &value[2], &value[1]);
        ERR_clear_error();
        return NGX_CONF_ERROR;
    }

    if (X509_check_ca(ca->cert) == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "kubenova_ca: \"%V\" is not a CA certificate",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    if (ngx_kubenova_ca_pem(cf->pool, ca->cert, &ca->cert_pem) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    *field = ca;

    return NGX_CONF_OK;
}


static void
ngx_kubenova_ca_cleanup(void *data)
{
    ngx_kubenova_ca_t  *ca = data;

    if (ca->cert) {
        X509_free(ca->cert);
    }

    if (ca->key) {
        EVP_PKEY_free(ca->key);
    }
}


static ngx_int_t
ngx_kubenova_ca_pem(ngx_pool_t *pool, X509 *cert, ngx_str_t *pem)
{
    BIO   *bio;
    char  *data;
    long   len;

    bio = BIO_new(BIO_s_mem());
    if (bio == NULL) {
        return NGX_ERROR;
    }

    if (PEM_write_bio_X509(bio, cert) != 1) {
        BIO_free(bio);
        return NGX_ERROR;
    }

    len = BIO_get_mem_data(bio, &data);

    pem->data = ngx_pnalloc(pool, len);
    if (pem->data == NULL) {
        BIO_free(bio);
        return NGX_ERROR;
    }

    ngx_memcpy(pem->data, data, len);
    pem->len = len;

    BIO_free(bio);

    return NGX_OK;
}


ngx_int_t
ngx_kubenova_ca_parse_csr(const u_char *pem, size_t len, X509_REQ **out,
    char *cn, char *err, size_t err_len)
{
    int             n, bits;
    BIO            *bio;
    X509_REQ       *req;
    EVP_PKEY       *key;
    X509_NAME      *name;
    unsigned char  *utf8;

    *out = NULL;
    req = NULL;
    key = NULL;

    if (len == 0 || len > 16384) {
        ngx_cpystrn((u_char *) err, (u_char *) "csr must be a PEM "
                    "certificate request of at most 16384 bytes", err_len);
        return NGX_DECLINED;
    }

    bio = BIO_new_mem_buf(pem, (int) len);
    if (bio == NULL) {
        return NGX_ERROR;
    }

    req = PEM_read_bio_X509_REQ(bio, NULL, NULL, NULL);
    BIO_free(bio);

    if (req == NULL) {
        ngx_cpystrn((u_char *) err, (u_char *) "csr is not a PEM "
                    "certificate request (-----BEGIN CERTIFICATE "
                    "REQUEST-----)", err_len);
        goto declined;
    }

    key = X509_REQ_get_pubkey(req);

    if (key == NULL || X509_REQ_verify(req, key) != 1) {
        ngx_cpystrn((u_char *) err, (u_char *) "csr: its signature does not "
                    "match its public key", err_len);
        goto declined;
    }

    if (EVP_PKEY_base_id(key) == EVP_PKEY_RSA) {
        bits = EVP_PKEY_bits(key);
        if (bits < NGX_KUBENOVA_CA_RSA_MIN_BITS) {
            ngx_cpystrn((u_char *) err, (u_char *) "csr: an RSA key needs "
                        "2048 bits or more", err_len);
            goto declined;
        }
    }

    name = X509_REQ_get_subject_name(req);

    if (X509_NAME_entry_count(name) != 1
        || OBJ_obj2nid(X509_NAME_ENTRY_get_object(X509_NAME_get_entry(name, 0)))
           != NID_commonName)
    {
        ngx_cpystrn((u_char *) err, (u_char *) "csr: the subject must be "
                    "exactly CN=<cluster name>", err_len);
        goto declined;
    }

    n = ASN1_STRING_to_UTF8(&utf8,
                            X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name,
                                                                         0)));
    if (n < 0) {
        ngx_cpystrn((u_char *) err, (u_char *) "csr: the subject's CN is "
                    "not a string", err_len);
        goto declined;
    }

    if (n == 0 || n >= NGX_KUBENOVA_CA_CN_LEN
        || ngx_strlen(utf8) != (size_t) n)
    {
        OPENSSL_free(utf8);
        ngx_cpystrn((u_char *) err, (u_char *) "csr: the subject's CN must "
                    "be a cluster name (1 to 63 characters)", err_len);
        goto declined;
    }

    ngx_memcpy(cn, utf8, n + 1);
    OPENSSL_free(utf8);
    EVP_PKEY_free(key);

    *out = req;

    return NGX_OK;

declined:

    ERR_clear_error();

    if (key) {
        EVP_PKEY_free(key);
    }

    if (req) {
        X509_REQ_free(req);
    }

    return NGX_DECLINED;
}


ngx_int_t
ngx_kubenova_ca_new_serial(u_char *hex)
{
    u_char  raw[NGX_KUBENOVA_CA_SERIAL_LEN / 2];

    if (RAND_bytes(raw, sizeof(raw)) != 1) {
        return NGX_ERROR;
    }

    /*
     * positive (RFC 5280) and without a leading zero byte, so that the
     * hex digits are always NGX_KUBENOVA_CA_SERIAL_LEN and read back the
     * same from a certificate
     */

    raw[0] = (raw[0] & 0x7f) | 0x40;

    ngx_hex_dump(hex, raw, sizeof(raw));
    hex[NGX_KUBENOVA_CA_SERIAL_LEN] = '\0';

    return NGX_OK;
}


ngx_int_t
ngx_kubenova_ca_sign(ngx_kubenova_ca_t *ca, X509_REQ *req, const char *cn,
    const u_char *serial_hex, time_t not_after, ngx_pool_t *pool,
    ngx_str_t *pem, ngx_log_t *log)
{
    X509            *cert;
    BIGNUM          *bn;
    EVP_PKEY        *key;
    X509_NAME       *subject;
    X509V3_CTX       v3;
    const EVP_MD    *md;
    ASN1_INTEGER    *serial;
    ngx_int_t        rc;

    rc = NGX_ERROR;
    bn = NULL;
    key = NULL;
    serial = NULL;
    subject = NULL;

    cert = X509_new();
    if (cert == NULL) {
        goto done;
    }

    if (BN_hex2bn(&bn, (const char *) serial_hex) == 0) {
        goto done;
    }

    serial = BN_to_ASN1_INTEGER(bn, NULL);
    key = X509_REQ_get_pubkey(req);
    subject = X509_NAME_new();

    if (serial == NULL || key == NULL || subject == NULL
        || X509_NAME_add_entry_by_NID(subject, NID_commonName, MBSTRING_UTF8,
                                      (const u_char *) cn, -1, -1, 0) != 1
        || X509_set_version(cert, 2) != 1
        || X509_set_serialNumber(cert, serial) != 1
        || X509_set_issuer_name(cert, X509_get_subject_name(ca->cert)) != 1
        || X509_set_subject_name(cert, subject) != 1
        || X509_gmtime_adj(X509_getm_notBefore(cert),
                           -NGX_KUBENOVA_CA_BACKDATE) == NULL
        || ASN1_TIME_set(X509_getm_notAfter(cert), not_after) == NULL
        || X509_set_pubkey(cert, key) != 1)
    {
        goto done;
    }

    X509V3_set_ctx(&v3, ca->cert, cert, NULL, NULL, 0);

    if (ngx_kubenova_ca_add_ext(cert, &v3, NID_basic_constraints,
                                "critical,CA:FALSE") != NGX_OK
        || ngx_kubenova_ca_add_ext(cert, &v3, NID_key_usage,
               EVP_PKEY_base_id(key) == EVP_PKEY_RSA
               ? "critical,digitalSignature,keyEncipherment"
               : "critical,digitalSignature") != NGX_OK
        || ngx_kubenova_ca_add_ext(cert, &v3, NID_ext_key_usage,
                                   "clientAuth") != NGX_OK
        || ngx_kubenova_ca_add_ext(cert, &v3, NID_subject_key_identifier,
                                   "hash") != NGX_OK
        || ngx_kubenova_ca_add_ext(cert, &v3, NID_authority_key_identifier,
                                   "keyid") != NGX_OK)
    {
        goto done;
    }

    /* Ed25519 and Ed448 CA keys sign without a separate digest */

    md = (EVP_PKEY_base_id(ca->key) == EVP_PKEY_ED25519
          || EVP_PKEY_base_id(ca->key) == EVP_PKEY_ED448)
         ? NULL : EVP_sha256();

    if (X509_sign(cert, ca->key, md) == 0) {
        goto done;
    }

    rc = ngx_kubenova_ca_pem(pool, cert, pem);

done:

    if (rc != NGX_OK) {
        ngx_ssl_error(NGX_LOG_ALERT, log, 0,
                      "kubenova: cannot sign a certificate for \"%s\"", cn);
    }

    if (cert) {
        X509_free(cert);
    }

    if (bn) {
        BN_free(bn);
    }

    if (serial) {
        ASN1_INTEGER_free(serial);
    }

    if (key) {
        EVP_PKEY_free(key);
    }

    if (subject) {
        X509_NAME_free(subject);
    }

    return rc;
}


static ngx_int_t
ngx_kubenova_ca_add_ext(X509 *cert, X509V3_CTX *ctx, int nid,
    const char *value)
{
    ngx_int_t         rc;
    X509_EXTENSION   *ext;

    ext = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
    if (ext == NULL) {
        return NGX_ERROR;
    }

    rc = X509_add_ext(cert, ext, -1) == 1 ? NGX_OK : NGX_ERROR;
    X509_EXTENSION_free(ext);

    return rc;
}


static ngx_int_t
ngx_kubenova_ca_serial_hex(const ASN1_INTEGER *serial, u_char *hex,
    size_t size)
{
    char    *s;
    BIGNUM  *bn;
    size_t   len;

    bn = ASN1_INTEGER_to_BN(serial, NULL);
    if (bn == NULL) {
        return NGX_ERROR;
    }

    s = BN_bn2hex(bn);
    BN_free(bn);

    if (s == NULL) {
        return NGX_ERROR;
    }

    len = ngx_strlen(s);

    if (len + 1 > size || s[0] == '-') {
        OPENSSL_free(s);
        return NGX_ERROR;
    }

    ngx_strlow(hex, (u_char *) s, len + 1);
    OPENSSL_free(s);

    return NGX_OK;
}


ngx_int_t
ngx_kubenova_ca_peer(ngx_connection_t *c, char *cn, u_char *serial,
    char *err, size_t err_len)
{
#if (NGX_HTTP_SSL)

    int             n;
    long            verified;
    X509           *cert;
    X509_NAME      *name;
    unsigned char  *utf8;

    if (c->ssl == NULL) {
        return NGX_DECLINED;
    }

#if OPENSSL_VERSION_NUMBER >= 0x30000000L
    cert = SSL_get1_peer_certificate(c->ssl->connection);
#else
    cert = SSL_get_peer_certificate(c->ssl->connection);
#endif

    if (cert == NULL) {
        return NGX_DECLINED;
    }

    verified = SSL_get_verify_result(c->ssl->connection);

    if (verified != X509_V_OK) {
        X509_free(cert);
        ngx_snprintf((u_char *) err, err_len, "the client certificate does "
                     "not verify against the KubeNova CA: %s%Z",
                     X509_verify_cert_error_string(verified));
        return NGX_ABORT;
    }

    name = X509_get_subject_name(cert);
    n = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
    utf8 = NULL;

    if (n < 0
        || ASN1_STRING_to_UTF8(&utf8,
               X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, n))) <= 0
        || ngx_strlen(utf8) >= NGX_KUBENOVA_CA_CN_LEN
        || ngx_kubenova_ca_serial_hex(X509_get0_serialNumber(cert), serial,
                                      NGX_KUBENOVA_CA_PEER_SERIAL_SIZE)
           != NGX_OK)
    {
        if (utf8) {
            OPENSSL_free(utf8);
        }
        X509_free(cert);
        ngx_cpystrn((u_char *) err, (u_char *) "the client certificate "
                    "names no cluster (CN) or has an unusable serial",
                    err_len);
        return NGX_ABORT;
    }

    ngx_cpystrn((u_char *) cn, utf8, NGX_KUBENOVA_CA_CN_LEN);
    OPENSSL_free(utf8);
    X509_free(cert);

    return NGX_OK;

#else

    return NGX_DECLINED;

#endif
}
