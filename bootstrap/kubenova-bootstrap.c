/*
 * kubenova-bootstrap: the one-shot bootstrap of clusters created with a
 * bootstrap_kubeconfig (POST /api/v1/clusters, issue 6).  A process of its
 * own, beside the Manager: it blocks (PostgreSQL, HTTP, kubectl), which
 * nginx's workers never may.
 *
 * For each pending bootstrap (table cluster_bootstrap), one at a time:
 *
 *   1. in one transaction: the row is taken (FOR UPDATE SKIP LOCKED, so
 *      several helpers may run), a fresh join token is issued for the
 *      cluster (api.join_token_issue), the row is deleted (the kubeconfig
 *      is wiped from the database whatever happens next: it is used at
 *      most once) and an audit entry "cluster.bootstrap" with status 202
 *      is written;
 *   2. the kubeconfig is opened (AES-256-GCM, the key of the Manager's
 *      kubenova_secret_key_file; associated data "bootstrap\n<cluster>",
 *      as ngx_kubenova_crypto_bootstrap_aad() seals it);
 *   3. the cluster's install.yaml is fetched from the Manager with the join
 *      token and applied with kubectl and that kubeconfig (handed over in
 *      an anonymous memory file, never written to disk);
 *   4. a second audit entry "cluster.bootstrap" says how it ended: 200, or
 *      422 (the kubeconfig does not open), 502 (install.yaml could not be
 *      fetched), 500 (kubectl failed).  The plaintext is wiped from memory.
 *
 *   kubenova-bootstrap --postgres CONNINFO --secret-key-file FILE
 *                      --manager-url URL [--manager-ca FILE]
 *                      [--kubectl PATH] [--interval SECONDS] [--once]
 *
 * --once: what is pending, then exit (0, or 1 when one failed); otherwise
 * it looks again every --interval seconds (default 5).
 */

#define _GNU_SOURCE

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <curl/curl.h>
#include <libpq-fe.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>


#define KB_KEY_LEN         32
#define KB_NONCE_LEN       12
#define KB_TAG_LEN         16
#define KB_SEAL_VERSION    1
#define KB_SEAL_MAX        (1024 * 1024)
#define KB_INSTALL_MAX     (4 * 1024 * 1024)
#define KB_TOKEN_MAX       256


typedef struct {
    const char      *postgres;
    const char      *key_file;
    const char      *manager_url;
    const char      *manager_ca;
    const char      *kubectl;
    unsigned         interval;
    int              once;
    unsigned char    key[KB_KEY_LEN];
} kb_conf_t;


typedef struct {
    char            *data;
    size_t           len;
    size_t           max;
} kb_buf_t;


typedef enum {
    KB_NONE = 0,            /* nothing pending */
    KB_DONE,                /* one done, well */
    KB_FAILED,              /* one done, badly (audited) */
    KB_ERROR                /* the database failed: nothing changed */
} kb_rc;


static int kb_load_key(kb_conf_t *conf);
static kb_rc kb_one(kb_conf_t *conf, PGconn *pg);
static int kb_open(const unsigned char *key, const char *cluster,
    const unsigned char *in, size_t len, unsigned char *out);
static int kb_fetch(kb_conf_t *conf, const char *cluster, const char *token,
    kb_buf_t *out);
static size_t kb_write(char *p, size_t size, size_t n, void *data);
static int kb_apply(kb_conf_t *conf, const unsigned char *kubeconfig,
    size_t kc_len, const kb_buf_t *manifest);
static void kb_audit(PGconn *pg, const char *cluster, int status);
static int kb_hex(const char *hex, unsigned char *out, size_t max,
    size_t *len);


int
main(int argc, char **argv)
{
    int          c, failed;
    kb_rc        rc = KB_NONE;
    PGconn      *pg;
    kb_conf_t    conf;

    static const struct option  opts[] = {
        { "postgres", required_argument, NULL, 'p' },
        { "secret-key-file", required_argument, NULL, 'k' },
        { "manager-url", required_argument, NULL, 'm' },
        { "manager-ca", required_argument, NULL, 'c' },
        { "kubectl", required_argument, NULL, 'K' },
        { "interval", required_argument, NULL, 'i' },
        { "once", no_argument, NULL, 'o' },
        { NULL, 0, NULL, 0 }
    };

    memset(&conf, 0, sizeof(conf));
    conf.kubectl = "kubectl";
    conf.interval = 5;

    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'p': conf.postgres = optarg; break;
        case 'k': conf.key_file = optarg; break;
        case 'm': conf.manager_url = optarg; break;
        case 'c': conf.manager_ca = optarg; break;
        case 'K': conf.kubectl = optarg; break;
        case 'i': conf.interval = (unsigned) atoi(optarg); break;
        case 'o': conf.once = 1; break;
        default:
            fprintf(stderr, "usage: kubenova-bootstrap --postgres CONNINFO "
                    "--secret-key-file FILE --manager-url URL "
                    "[--manager-ca FILE] [--kubectl PATH] "
                    "[--interval SECONDS] [--once]\n");
            return 2;
        }
    }

    if (conf.postgres == NULL || conf.key_file == NULL
        || conf.manager_url == NULL || conf.interval == 0)
    {
        fprintf(stderr, "kubenova-bootstrap: --postgres, --secret-key-file "
                "and --manager-url are required (--interval at least 1)\n");
        return 2;
    }

    if (kb_load_key(&conf) != 0) {
        return 2;
    }

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "kubenova-bootstrap: curl_global_init() failed\n");
        return 1;
    }

    pg = NULL;
    failed = 0;

    for ( ;; ) {
        if (pg == NULL || PQstatus(pg) != CONNECTION_OK) {
            PQfinish(pg);
            pg = PQconnectdb(conf.postgres);

            if (PQstatus(pg) != CONNECTION_OK) {
                fprintf(stderr, "kubenova-bootstrap: PostgreSQL: %s",
                        PQerrorMessage(pg));
                if (conf.once) {
                    PQfinish(pg);
                    return 1;
                }
                sleep(conf.interval);
                continue;
            }
        }

        rc = kb_one(&conf, pg);

        if (rc == KB_FAILED) {
            failed = 1;
        }

        if (rc == KB_DONE || rc == KB_FAILED) {
            continue;
        }

        if (conf.once) {
            break;
        }

        sleep(conf.interval);
    }

    PQfinish(pg);
    OPENSSL_cleanse(conf.key, sizeof(conf.key));
    curl_global_cleanup();

    return failed || rc == KB_ERROR;
}


/* 32 raw bytes, 64 hex digits or base64 of 32 bytes, as the Manager's */

static int
kb_load_key(kb_conf_t *conf)
{
    FILE           *f;
    size_t          n, len;
    char            text[128];
    unsigned char   raw[96];

    f = fopen(conf->key_file, "r");
    if (f == NULL) {
        fprintf(stderr, "kubenova-bootstrap: %s: %s\n", conf->key_file,
                strerror(errno));
        return -1;
    }

    n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);

    if (n == KB_KEY_LEN) {
        memcpy(conf->key, text, KB_KEY_LEN);
        OPENSSL_cleanse(text, sizeof(text));
        return 0;
    }

    while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r'
                     || text[n - 1] == ' '))
    {
        n--;
    }

    text[n] = '\0';

    if (n == 2 * KB_KEY_LEN && kb_hex(text, conf->key, KB_KEY_LEN, &len) == 0
        && len == KB_KEY_LEN)
    {
        OPENSSL_cleanse(text, sizeof(text));
        return 0;
    }

    if (n == 44 && EVP_DecodeBlock(raw, (unsigned char *) text, 44) == 33
        && text[43] == '=' && text[42] != '=')
    {
        memcpy(conf->key, raw, KB_KEY_LEN);
        OPENSSL_cleanse(raw, sizeof(raw));
        OPENSSL_cleanse(text, sizeof(text));
        return 0;
    }

    OPENSSL_cleanse(text, sizeof(text));
    fprintf(stderr, "kubenova-bootstrap: %s: not a 256-bit key (32 raw "
            "bytes, 64 hex digits or base64)\n", conf->key_file);
    return -1;
}


static kb_rc
kb_one(kb_conf_t *conf, PGconn *pg)
{
    int              status;
    char             cluster[64], token[KB_TOKEN_MAX];
    size_t           sealed_len;
    kb_buf_t         manifest;
    PGresult        *res;
    const char      *params[1];
    unsigned char   *sealed, *plain;

    res = PQexec(pg, "BEGIN");
    PQclear(res);

    res = PQexec(pg, "SELECT cluster, encode(sealed, 'hex') "
                     "FROM cluster_bootstrap ORDER BY created_at, cluster "
                     "LIMIT 1 FOR UPDATE SKIP LOCKED");

    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        fprintf(stderr, "kubenova-bootstrap: %s", PQerrorMessage(pg));
        PQclear(res);
        PQclear(PQexec(pg, "ROLLBACK"));
        return KB_ERROR;
    }

    if (PQntuples(res) == 0) {
        PQclear(res);
        PQclear(PQexec(pg, "COMMIT"));
        return KB_NONE;
    }

    snprintf(cluster, sizeof(cluster), "%s", PQgetvalue(res, 0, 0));

    sealed = malloc(KB_SEAL_MAX);
    if (sealed == NULL
        || kb_hex(PQgetvalue(res, 0, 1), sealed, KB_SEAL_MAX, &sealed_len)
           != 0)
    {
        sealed_len = 0;
    }

    PQclear(res);

    /* a join token for install.yaml; the row goes, audited, at once */

    params[0] = cluster;

    res = PQexecParams(pg, "SELECT api.join_token_issue($1, NULL, "
                       "'{}'::jsonb) ->> 'join_token'", 1, NULL, params,
                       NULL, NULL, 0);

    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1
        || PQgetlength(res, 0, 0) >= KB_TOKEN_MAX)
    {
        fprintf(stderr, "kubenova-bootstrap: cluster \"%s\": no join token: "
                "%s", cluster, PQerrorMessage(pg));
        PQclear(res);
        PQclear(PQexec(pg, "ROLLBACK"));
        free(sealed);
        return KB_ERROR;
    }

    snprintf(token, sizeof(token), "%s", PQgetvalue(res, 0, 0));
    PQclear(res);

    res = PQexecParams(pg, "DELETE FROM cluster_bootstrap WHERE cluster = $1",
                       1, NULL, params, NULL, NULL, 0);
    PQclear(res);

    kb_audit(pg, cluster, 202);

    res = PQexec(pg, "COMMIT");

    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        fprintf(stderr, "kubenova-bootstrap: cluster \"%s\": %s", cluster,
                PQerrorMessage(pg));
        PQclear(res);
        free(sealed);
        return KB_ERROR;
    }

    PQclear(res);

    fprintf(stderr, "kubenova-bootstrap: cluster \"%s\": its bootstrap "
            "kubeconfig taken and wiped from the database\n", cluster);

    /* open, fetch, apply */

    memset(&manifest, 0, sizeof(manifest));
    plain = NULL;
    status = 200;

    if (sealed_len > 1 + KB_NONCE_LEN + KB_TAG_LEN) {
        plain = malloc(sealed_len);
    }

    if (plain == NULL
        || kb_open(conf->key, cluster, sealed, sealed_len, plain) != 0)
    {
        fprintf(stderr, "kubenova-bootstrap: cluster \"%s\": the kubeconfig "
                "does not open (another kubenova_secret_key_file?)\n",
                cluster);
        status = 422;

    } else if (kb_fetch(conf, cluster, token, &manifest) != 0) {
        status = 502;

    } else if (kb_apply(conf, plain,
                        sealed_len - (1 + KB_NONCE_LEN + KB_TAG_LEN),
                        &manifest) != 0)
    {
        status = 500;
    }

    if (plain != NULL) {
        OPENSSL_cleanse(plain, sealed_len);
        free(plain);
    }

    OPENSSL_cleanse(token, sizeof(token));
    free(sealed);
    free(manifest.data);

    kb_audit(pg, cluster, status);

    fprintf(stderr, "kubenova-bootstrap: cluster \"%s\": %s\n", cluster,
            status == 200 ? "install.yaml applied" : "bootstrap failed");

    return status == 200 ? KB_DONE : KB_FAILED;
}


/* 0x01 | nonce | ciphertext | tag, associated data "bootstrap\n<cluster>" */

static int
kb_open(const unsigned char *key, const char *cluster, const unsigned char *in,
    size_t len, unsigned char *out)
{
    int              n, ok;
    char             aad[96];
    size_t           clen;
    EVP_CIPHER_CTX  *ctx;

    if (len < 1 + KB_NONCE_LEN + KB_TAG_LEN || in[0] != KB_SEAL_VERSION) {
        return -1;
    }

    snprintf(aad, sizeof(aad), "bootstrap\n%s", cluster);
    clen = len - 1 - KB_NONCE_LEN - KB_TAG_LEN;

    ctx = EVP_CIPHER_CTX_new();
    if (ctx == NULL) {
        return -1;
    }

    ok = EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) == 1
         && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, KB_NONCE_LEN,
                                NULL) == 1
         && EVP_DecryptInit_ex(ctx, NULL, NULL, key, in + 1) == 1
         && EVP_DecryptUpdate(ctx, NULL, &n, (unsigned char *) aad,
                              (int) strlen(aad)) == 1
         && EVP_DecryptUpdate(ctx, out, &n, in + 1 + KB_NONCE_LEN,
                              (int) clen) == 1
         && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, KB_TAG_LEN,
                                (void *) (in + len - KB_TAG_LEN)) == 1
         && EVP_DecryptFinal_ex(ctx, out + n, &n) == 1;

    EVP_CIPHER_CTX_free(ctx);

    return ok ? 0 : -1;
}


static int
kb_fetch(kb_conf_t *conf, const char *cluster, const char *token,
    kb_buf_t *out)
{
    long        code;
    char        url[2048];
    CURL       *curl;
    CURLcode    rc;

    if (snprintf(url, sizeof(url), "%s/api/v1/clusters/%s/install.yaml"
                 "?token=%s", conf->manager_url, cluster, token)
        >= (int) sizeof(url))
    {
        fprintf(stderr, "kubenova-bootstrap: too long a --manager-url\n");
        return -1;
    }

    curl = curl_easy_init();
    if (curl == NULL) {
        return -1;
    }

    out->max = KB_INSTALL_MAX;

    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, kb_write);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);

    if (conf->manager_ca) {
        curl_easy_setopt(curl, CURLOPT_CAINFO, conf->manager_ca);
    }

    rc = curl_easy_perform(curl);
    code = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(curl);

    /* the URL holds the token: never printed */

    if (rc != CURLE_OK || code != 200) {
        fprintf(stderr, "kubenova-bootstrap: cluster \"%s\": install.yaml: "
                "%s (HTTP %ld)\n", cluster,
                rc != CURLE_OK ? curl_easy_strerror(rc) : "refused", code);
        return -1;
    }

    return 0;
}


static size_t
kb_write(char *p, size_t size, size_t n, void *data)
{
    kb_buf_t  *b = data;
    char      *np;

    n *= size;

    if (b->len + n > b->max) {
        return 0;       /* too large: the transfer fails */
    }

    np = realloc(b->data, b->len + n + 1);
    if (np == NULL) {
        return 0;
    }

    b->data = np;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';

    return n;
}


/*
 * kubectl apply -f - with the manifest on its standard input and the
 * kubeconfig in a memory file it reads as /proc/self/fd/N.
 */

static int
kb_apply(kb_conf_t *conf, const unsigned char *kubeconfig, size_t kc_len,
    const kb_buf_t *manifest)
{
    int      kc, in[2], status;
    char     path[64];
    pid_t    pid;
    size_t   off;
    ssize_t  n;

    kc = memfd_create("kubeconfig", 0);
    if (kc < 0) {
        fprintf(stderr, "kubenova-bootstrap: memfd_create: %s\n",
                strerror(errno));
        return -1;
    }

    for (off = 0; off < kc_len; off += (size_t) n) {
        n = write(kc, kubeconfig + off, kc_len - off);
        if (n <= 0) {
            close(kc);
            return -1;
        }
    }

    if (pipe(in) != 0) {
        close(kc);
        return -1;
    }

    snprintf(path, sizeof(path), "/proc/self/fd/%d", kc);

    pid = fork();

    if (pid == 0) {
        dup2(in[0], 0);
        close(in[0]);
        close(in[1]);
        dup2(2, 1);
        execlp(conf->kubectl, conf->kubectl, "--kubeconfig", path,
               "apply", "-f", "-", (char *) NULL);
        fprintf(stderr, "kubenova-bootstrap: %s: %s\n", conf->kubectl,
                strerror(errno));
        _exit(127);
    }

    close(in[0]);
    close(kc);

    if (pid < 0) {
        close(in[1]);
        return -1;
    }

    for (off = 0; off < manifest->len; off += (size_t) n) {
        n = write(in[1], manifest->data + off, manifest->len - off);
        if (n <= 0) {
            break;
        }
    }

    close(in[1]);

    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status)
        || WEXITSTATUS(status) != 0)
    {
        fprintf(stderr, "kubenova-bootstrap: kubectl apply failed\n");
        return -1;
    }

    return 0;
}


static void
kb_audit(PGconn *pg, const char *cluster, int status)
{
    char         st[16], resource[96];
    PGresult    *res;
    const char  *params[2];

    snprintf(st, sizeof(st), "%d", status);
    snprintf(resource, sizeof(resource), "clusters/%s/bootstrap", cluster);
    params[0] = resource;
    params[1] = st;

    res = PQexecParams(pg, "INSERT INTO audit_log (principal, action, "
                       "resource, status) VALUES ('kubenova-bootstrap', "
                       "'cluster.bootstrap', $1, $2::integer)", 2, NULL,
                       params, NULL, NULL, 0);

    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        fprintf(stderr, "kubenova-bootstrap: the audit entry of cluster "
                "\"%s\": %s", cluster, PQerrorMessage(pg));
    }

    PQclear(res);
}


static int
kb_hex(const char *hex, unsigned char *out, size_t max, size_t *len)
{
    size_t        i, n;
    unsigned int  v;

    n = strlen(hex);

    if (n % 2 != 0 || n / 2 > max) {
        return -1;
    }

    for (i = 0; i < n / 2; i++) {
        if (sscanf(hex + 2 * i, "%2x", &v) != 1) {
            return -1;
        }
        out[i] = (unsigned char) v;
    }

    *len = n / 2;
    return 0;
}
