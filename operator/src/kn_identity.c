/*
 * The Operator's identity: key, CSR, certificate checks, and the
 * directory storage (see kn_identity.h).
 */

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "kn_identity.h"
#include "kn_kubeconfig.h"


static kn_rc kn_identity_pem_key(EVP_PKEY *key, char **pem, size_t *len);
static char *kn_identity_bio_string(BIO *bio, size_t *len);
static kn_rc kn_identity_write(const char *dir, const char *name,
    const char *data, size_t len, char *err, size_t err_size);
static void kn_identity_error(char *err, size_t err_size, const char *fmt,
    ...) __attribute__((format(printf, 3, 4)));


void
kn_identity_init(kn_identity_t *id)
{
    memset(id, 0, sizeof(kn_identity_t));
}


void
kn_identity_free(kn_identity_t *id)
{
    EVP_PKEY_free(id->key);

    if (id->key_pem != NULL) {
        explicit_bzero(id->key_pem, id->key_pem_len);
        free(id->key_pem);
    }

    free(id->cert_pem);
    free(id->ca_pem);

    memset(id, 0, sizeof(kn_identity_t));
}


kn_rc
kn_identity_generate(kn_identity_t *id, char *err, size_t err_size)
{
    char      *pem;
    size_t     len;
    EVP_PKEY  *key;

    key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    if (key == NULL) {
        kn_identity_error(err, err_size, "cannot generate an EC P-256 key");
        return KN_ERROR;
    }

    if (kn_identity_pem_key(key, &pem, &len) != KN_OK) {
        EVP_PKEY_free(key);
        kn_identity_error(err, err_size, "cannot encode the new key");
        return KN_ERROR;
    }

    kn_identity_free(id);

    id->key = key;
    id->key_pem = pem;
    id->key_pem_len = len;

    return KN_OK;
}


kn_rc
kn_identity_set_key(kn_identity_t *id, const char *pem, size_t len,
    char *err, size_t err_size)
{
    BIO       *bio;
    char      *copy;
    size_t     copy_len;
    EVP_PKEY  *key;

    bio = BIO_new_mem_buf(pem, (int) len);
    if (bio == NULL) {
        kn_identity_error(err, err_size, "out of memory");
        return KN_ERROR;
    }

    key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    BIO_free(bio);
    ERR_clear_error();

    if (key == NULL) {
        kn_identity_error(err, err_size, "the key is not a PEM private key");
        return KN_ERROR;
    }

    /* stored again as read: re-encoded, so that only the key is kept */
    if (kn_identity_pem_key(key, &copy, &copy_len) != KN_OK) {
        EVP_PKEY_free(key);
        kn_identity_error(err, err_size, "cannot encode the key");
        return KN_ERROR;
    }

    kn_identity_free(id);

    id->key = key;
    id->key_pem = copy;
    id->key_pem_len = copy_len;

    return KN_OK;
}


kn_rc
kn_identity_set_cert(kn_identity_t *id, const char *cert_pem,
    size_t cert_len, const char *ca_pem, size_t ca_len, const char *cluster,
    char *err, size_t err_size)
{
    BIO        *bio;
    X509       *x, *ca;
    char        cn[256], *hex, *cert_copy, *ca_copy;
    BIGNUM     *bn;
    struct tm   nb, na;

    if (id->key == NULL) {
        kn_identity_error(err, err_size, "no key for the certificate");
        return KN_ERROR;
    }

    if (cert_len == 0 || cert_len > KN_IDENTITY_PEM_MAX
        || ca_len > KN_IDENTITY_PEM_MAX)
    {
        kn_identity_error(err, err_size, "the certificate or CA is empty or "
                          "larger than %d bytes", KN_IDENTITY_PEM_MAX);
        return KN_ERROR;
    }

    bio = BIO_new_mem_buf(cert_pem, (int) cert_len);
    x = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);

    if (x == NULL) {
        ERR_clear_error();
        kn_identity_error(err, err_size, "the certificate is not PEM X.509");
        return KN_ERROR;
    }

    if (ca_pem != NULL && ca_len > 0) {
        bio = BIO_new_mem_buf(ca_pem, (int) ca_len);
        ca = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
        BIO_free(bio);

        if (ca == NULL) {
            ERR_clear_error();
            X509_free(x);
            kn_identity_error(err, err_size, "the CA is not PEM X.509");
            return KN_ERROR;
        }

        X509_free(ca);
    }

    if (X509_check_private_key(x, id->key) != 1) {
        ERR_clear_error();
        X509_free(x);
        kn_identity_error(err, err_size, "the certificate is not for this "
                          "key");
        return KN_ERROR;
    }

    if (X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName,
                                  cn, sizeof(cn)) < 0
        || strcmp(cn, cluster) != 0)
    {
        X509_free(x);
        kn_identity_error(err, err_size, "the certificate does not name "
                          "cluster \"%s\" (CN)", cluster);
        return KN_ERROR;
    }

    if (ASN1_TIME_to_tm(X509_get0_notBefore(x), &nb) != 1
        || ASN1_TIME_to_tm(X509_get0_notAfter(x), &na) != 1)
    {
        X509_free(x);
        kn_identity_error(err, err_size, "the certificate's validity "
                          "cannot be read");
        return KN_ERROR;
    }

    cert_copy = kn_memdup_str(cert_pem, cert_len);
    ca_copy = (ca_pem && ca_len) ? kn_memdup_str(ca_pem, ca_len) : NULL;
    bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    hex = bn ? BN_bn2hex(bn) : NULL;
    BN_free(bn);
    X509_free(x);

    if (cert_copy == NULL || hex == NULL
        || (ca_pem && ca_len && ca_copy == NULL))
    {
        free(cert_copy);
        free(ca_copy);
        OPENSSL_free(hex);
        kn_identity_error(err, err_size, "out of memory");
        return KN_ERROR;
    }

    free(id->cert_pem);
    free(id->ca_pem);

    id->cert_pem = cert_copy;
    id->cert_pem_len = cert_len;
    id->ca_pem = ca_copy;
    id->ca_pem_len = ca_copy ? ca_len : 0;
    id->not_before = timegm(&nb);
    id->not_after = timegm(&na);
    snprintf(id->serial, sizeof(id->serial), "%s", hex);
    OPENSSL_free(hex);

    return KN_OK;
}


kn_rc
kn_identity_csr(kn_identity_t *id, const char *cluster, char **pem,
    size_t *len, char *err, size_t err_size)
{
    BIO        *bio;
    X509_REQ   *req;
    X509_NAME  *name;

    *pem = NULL;
    bio = NULL;

    req = X509_REQ_new();
    if (req == NULL) {
        goto failed;
    }

    name = X509_REQ_get_subject_name(req);

    if (X509_REQ_set_version(req, 0) != 1
        || X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                      (const unsigned char *) cluster, -1,
                                      -1, 0) != 1
        || X509_REQ_set_pubkey(req, id->key) != 1
        || X509_REQ_sign(req, id->key, EVP_sha256()) <= 0)
    {
        goto failed;
    }

    bio = BIO_new(BIO_s_mem());
    if (bio == NULL || PEM_write_bio_X509_REQ(bio, req) != 1) {
        goto failed;
    }

    *pem = kn_identity_bio_string(bio, len);
    if (*pem == NULL) {
        goto failed;
    }

    BIO_free(bio);
    X509_REQ_free(req);

    return KN_OK;

failed:

    ERR_clear_error();
    BIO_free(bio);
    X509_REQ_free(req);
    kn_identity_error(err, err_size, "cannot make a certificate request");

    return KN_ERROR;
}


int
kn_identity_expired(const kn_identity_t *id, time_t now)
{
    return id->cert_pem == NULL || now >= id->not_after
           || now < id->not_before - 300;   /* some clock skew is fine */
}


time_t
kn_identity_renew_at(const kn_identity_t *id)
{
    return id->not_before + (id->not_after - id->not_before) * 2 / 3;
}


/* the directory */


kn_rc
kn_identity_load_dir(kn_identity_t *id, const char *dir, const char *cluster,
    char *err, size_t err_size)
{
    char    path[PATH_MAX], why[512], *key, *cert, *ca;
    size_t  key_len, cert_len, ca_len;
    kn_rc   rc;

    snprintf(path, sizeof(path), "%s/tls.key", dir);

    if (access(path, F_OK) != 0 && errno == ENOENT) {
        return KN_DECLINED;
    }

    key = kn_kubeconfig_read_file(path, KN_IDENTITY_PEM_MAX, &key_len, why,
                                  sizeof(why));
    if (key == NULL) {
        kn_identity_error(err, err_size, "identity: %s", why);
        return KN_ERROR;
    }

    rc = kn_identity_set_key(id, key, key_len, why, sizeof(why));
    explicit_bzero(key, key_len);
    free(key);

    if (rc != KN_OK) {
        kn_identity_error(err, err_size, "identity: %s: %s", path, why);
        return KN_ERROR;
    }

    /* a key without a certificate: registration did not finish */
    snprintf(path, sizeof(path), "%s/tls.crt", dir);

    if (access(path, F_OK) != 0 && errno == ENOENT) {
        return KN_OK;
    }

    cert = kn_kubeconfig_read_file(path, KN_IDENTITY_PEM_MAX, &cert_len, why,
                                   sizeof(why));
    if (cert == NULL) {
        kn_identity_error(err, err_size, "identity: %s", why);
        return KN_ERROR;
    }

    snprintf(path, sizeof(path), "%s/ca.crt", dir);
    ca = kn_kubeconfig_read_file(path, KN_IDENTITY_PEM_MAX, &ca_len, why,
                                 sizeof(why));

    rc = kn_identity_set_cert(id, cert, cert_len, ca, ca ? ca_len : 0,
                              cluster, why, sizeof(why));
    free(cert);
    free(ca);

    if (rc != KN_OK) {
        kn_identity_error(err, err_size, "identity: %s/tls.crt: %s", dir,
                          why);
        return KN_ERROR;
    }

    return KN_OK;
}


kn_rc
kn_identity_save_dir(const kn_identity_t *id, const char *dir, char *err,
    size_t err_size)
{
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        kn_identity_error(err, err_size, "identity: cannot create \"%s\": %s",
                          dir, strerror(errno));
        return KN_ERROR;
    }

    /* the key first: a certificate is never stored without its key */
    if (kn_identity_write(dir, "tls.key", id->key_pem, id->key_pem_len, err,
                          err_size) != KN_OK)
    {
        return KN_ERROR;
    }

    if (id->ca_pem != NULL
        && kn_identity_write(dir, "ca.crt", id->ca_pem, id->ca_pem_len, err,
                             err_size) != KN_OK)
    {
        return KN_ERROR;
    }

    if (id->cert_pem != NULL
        && kn_identity_write(dir, "tls.crt", id->cert_pem, id->cert_pem_len,
                             err, err_size) != KN_OK)
    {
        return KN_ERROR;
    }

    return KN_OK;
}


static kn_rc
kn_identity_write(const char *dir, const char *name, const char *data,
    size_t len, char *err, size_t err_size)
{
    int      fd;
    char     tmp[PATH_MAX], path[PATH_MAX];
    size_t   off;
    ssize_t  n;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", dir, name);

    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        goto failed;
    }

    for (off = 0; off < len; off += (size_t) n) {
        n = write(fd, data + off, len - off);
        if (n < 0) {
            if (errno == EINTR) {
                n = 0;
                continue;
            }

            close(fd);
            goto failed;
        }
    }

    if (fsync(fd) != 0 || close(fd) != 0 || rename(tmp, path) != 0) {
        goto failed;
    }

    return KN_OK;

failed:

    kn_identity_error(err, err_size, "identity: cannot write \"%s\": %s",
                      path, strerror(errno));
    (void) unlink(tmp);

    return KN_ERROR;
}


/* helpers */


static kn_rc
kn_identity_pem_key(EVP_PKEY *key, char **pem, size_t *len)
{
    BIO  *bio;

    bio = BIO_new(BIO_s_mem());
    if (bio == NULL
        || PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL)
           != 1)
    {
        BIO_free(bio);
        ERR_clear_error();
        return KN_ERROR;
    }

    *pem = kn_identity_bio_string(bio, len);
    BIO_free(bio);

    return *pem ? KN_OK : KN_ERROR;
}


/* a memory BIO's contents as a malloc'd NUL-terminated string */

static char *
kn_identity_bio_string(BIO *bio, size_t *len)
{
    char  *data, *s;
    long   n;

    n = BIO_get_mem_data(bio, &data);
    if (n <= 0) {
        return NULL;
    }

    s = malloc((size_t) n + 1);
    if (s == NULL) {
        return NULL;
    }

    memcpy(s, data, (size_t) n);
    s[n] = '\0';
    *len = (size_t) n;

    /* the memory BIO held the key: wipe it before it is freed */
    explicit_bzero(data, (size_t) n);

    return s;
}


static void
kn_identity_error(char *err, size_t err_size, const char *fmt, ...)
{
    va_list  args;

    va_start(args, fmt);
    vsnprintf(err, err_size, fmt, args);
    va_end(args);
}
