/*
 * Per-tenant usage gauges (see the header).
 *
 * The zone holds a red-black tree of series keyed by a CRC32 of
 * (tenant, cluster) and a queue of the same series, most recently updated
 * first, so that making room is taking the queue's tail.  Every access
 * holds the slab pool's mutex: a report updates up to one series per
 * tenant at once, and /metrics sees whole reports.
 */

#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_kubenova_usage_metrics.h"


/* a series: at most 253 bytes of tenant and 63 of cluster */
#define NGX_KUBENOVA_USAGE_SERIES_BYTES  512


typedef struct {
    ngx_rbtree_node_t            node;          /* key: crc32 of the names */
    ngx_queue_t                  queue;
    int64_t                      window_end;
    int64_t                      figures[NGX_KUBENOVA_USAGE_FIGURES];
    u_short                      tenant_len;
    u_short                      cluster_len;
    u_char                       names[1];      /* tenant, then cluster */
} ngx_kubenova_usage_series_t;


typedef struct {
    ngx_rbtree_t                 rbtree;
    ngx_rbtree_node_t            sentinel;
    ngx_queue_t                  lru;           /* most recent first */
    ngx_uint_t                   series;
    ngx_uint_t                   max_series;
    ngx_uint_t                   evictions;
} ngx_kubenova_usage_shctx_t;


typedef struct {
    ngx_kubenova_usage_shctx_t  *sh;
    ngx_slab_pool_t             *shpool;
    ngx_uint_t                   max_series;
} ngx_kubenova_usage_ctx_t;


typedef struct {
    const char                  *name;
    const char                  *help;
} ngx_kubenova_usage_doc_t;


static ngx_int_t ngx_kubenova_usage_zone_init(ngx_shm_zone_t *zone,
    void *data);
static void ngx_kubenova_usage_rbtree_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);
static ngx_kubenova_usage_series_t *ngx_kubenova_usage_lookup(
    ngx_kubenova_usage_ctx_t *ctx, uint32_t hash, const u_char *tenant,
    size_t tenant_len, const u_char *cluster, size_t cluster_len);
static ngx_kubenova_usage_series_t *ngx_kubenova_usage_add(
    ngx_kubenova_usage_ctx_t *ctx, uint32_t hash, const u_char *tenant,
    size_t tenant_len, const u_char *cluster, size_t cluster_len);
static void ngx_kubenova_usage_evict(ngx_kubenova_usage_ctx_t *ctx);
static ngx_int_t ngx_kubenova_usage_cmp(ngx_kubenova_usage_series_t *s,
    const u_char *tenant, size_t tenant_len, const u_char *cluster,
    size_t cluster_len);
static uint32_t ngx_kubenova_usage_hash(const u_char *tenant,
    size_t tenant_len, const u_char *cluster, size_t cluster_len);
static u_char *ngx_kubenova_usage_label(u_char *p, const u_char *s,
    size_t len);


static ngx_str_t  ngx_kubenova_usage_zone_name =
    ngx_string("kubenova_usage_metrics");


/* the figures in proto order, then the window's end */

static ngx_kubenova_usage_doc_t  ngx_kubenova_usage_docs[] = {
    { "kubenova_tenant_cpu_request_millicores",
      "CPU requested by the tenant's pods, in millicores." },
    { "kubenova_tenant_memory_request_bytes",
      "Memory requested by the tenant's pods, in bytes." },
    { "kubenova_tenant_storage_request_bytes",
      "Storage requested by the tenant's persistent volume claims, in "
      "bytes." },
    { "kubenova_tenant_load_balancers",
      "The tenant's services of type LoadBalancer." },
    { "kubenova_tenant_pods",
      "The tenant's pods that are not terminated." },
    { "kubenova_tenant_namespaces",
      "The tenant's namespaces." },
    { "kubenova_tenant_applications",
      "The tenant's KubeVela Applications." },
    { "kubenova_tenant_gpu_requests",
      "GPUs requested by the tenant's pods." },
    { "kubenova_tenant_quota_violations",
      "Quota violations during the reported window." },
    { "kubenova_tenant_usage_window_end_seconds",
      "End of the window the tenant's figures are for, in seconds since "
      "1970 (with several Manager nodes, the latest one is current)." }
};

#define NGX_KUBENOVA_USAGE_METRICS                                         \
    (sizeof(ngx_kubenova_usage_docs) / sizeof(ngx_kubenova_usage_docs[0]))


ngx_shm_zone_t *
ngx_kubenova_usage_metrics_zone_add(ngx_conf_t *cf, void *tag,
    ngx_uint_t series)
{
    size_t                     size;
    ngx_shm_zone_t            *zone;
    ngx_kubenova_usage_ctx_t  *ctx;

    ctx = ngx_pcalloc(cf->pool, sizeof(ngx_kubenova_usage_ctx_t));
    if (ctx == NULL) {
        return NULL;
    }

    ctx->max_series = series;

    /* the slab allocator's own pages and bookkeeping, then the series */

    size = 8 * ngx_pagesize + series * NGX_KUBENOVA_USAGE_SERIES_BYTES;

    zone = ngx_shared_memory_add(cf, &ngx_kubenova_usage_zone_name, size,
                                 tag);
    if (zone == NULL) {
        return NULL;
    }

    zone->init = ngx_kubenova_usage_zone_init;
    zone->data = ctx;

    return zone;
}


static ngx_int_t
ngx_kubenova_usage_zone_init(ngx_shm_zone_t *zone, void *data)
{
    ngx_kubenova_usage_ctx_t  *octx = data;

    ngx_kubenova_usage_ctx_t  *ctx;

    ctx = zone->data;

    if (octx) {
        /* a reload with the same size: the series stay */
        ctx->sh = octx->sh;
        ctx->shpool = octx->shpool;
        ctx->sh->max_series = ctx->max_series;
        return NGX_OK;
    }

    ctx->shpool = (ngx_slab_pool_t *) zone->shm.addr;

    if (zone->shm.exists) {
        ctx->sh = ctx->shpool->data;
        return NGX_OK;
    }

    ctx->sh = ngx_slab_alloc(ctx->shpool, sizeof(ngx_kubenova_usage_shctx_t));
    if (ctx->sh == NULL) {
        return NGX_ERROR;
    }

    ctx->shpool->data = ctx->sh;

    ngx_rbtree_init(&ctx->sh->rbtree, &ctx->sh->sentinel,
                    ngx_kubenova_usage_rbtree_insert);
    ngx_queue_init(&ctx->sh->lru);
    ctx->sh->series = 0;
    ctx->sh->max_series = ctx->max_series;
    ctx->sh->evictions = 0;

    /* no "no memory" alerts: running out only means making room */
    ctx->shpool->log_nomem = 0;

    return NGX_OK;
}


void
ngx_kubenova_usage_metrics_record(ngx_shm_zone_t *zone, const char *cluster,
    int64_t window_end, ngx_kubenova_usage_tenant_t *t, ngx_uint_t n)
{
    size_t                        tenant_len, cluster_len;
    uint32_t                      hash;
    ngx_uint_t                    i;
    ngx_kubenova_usage_ctx_t     *ctx;
    ngx_kubenova_usage_series_t  *s;

    if (zone == NULL) {
        return;
    }

    ctx = zone->data;
    cluster_len = ngx_strlen(cluster);

    ngx_shmtx_lock(&ctx->shpool->mutex);

    for (i = 0; i < n; i++) {
        tenant_len = ngx_strlen(t[i].tenant);

        hash = ngx_kubenova_usage_hash((u_char *) t[i].tenant, tenant_len,
                                       (u_char *) cluster, cluster_len);

        s = ngx_kubenova_usage_lookup(ctx, hash, (u_char *) t[i].tenant,
                                      tenant_len, (u_char *) cluster,
                                      cluster_len);

        if (s == NULL) {
            s = ngx_kubenova_usage_add(ctx, hash, (u_char *) t[i].tenant,
                                       tenant_len, (u_char *) cluster,
                                       cluster_len);
            if (s == NULL) {
                continue;
            }

        } else if (s->window_end > window_end) {
            continue;               /* a late resend of an older window */

        } else {
            ngx_queue_remove(&s->queue);
        }

        ngx_queue_insert_head(&ctx->sh->lru, &s->queue);

        s->window_end = window_end;
        ngx_memcpy(s->figures, t[i].figures, sizeof(s->figures));
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);
}


static ngx_kubenova_usage_series_t *
ngx_kubenova_usage_lookup(ngx_kubenova_usage_ctx_t *ctx, uint32_t hash,
    const u_char *tenant, size_t tenant_len, const u_char *cluster,
    size_t cluster_len)
{
    ngx_int_t                     rc;
    ngx_rbtree_node_t            *node, *sentinel;
    ngx_kubenova_usage_series_t  *s;

    node = ctx->sh->rbtree.root;
    sentinel = ctx->sh->rbtree.sentinel;

    while (node != sentinel) {

        if (hash != node->key) {
            node = (hash < node->key) ? node->left : node->right;
            continue;
        }

        /* the same hash: the names order the tree (as the insert does) */

        s = (ngx_kubenova_usage_series_t *) node;
        rc = ngx_kubenova_usage_cmp(s, tenant, tenant_len, cluster,
                                    cluster_len);

        if (rc == 0) {
            return s;
        }

        node = (rc > 0) ? node->left : node->right;
    }

    return NULL;
}


/* a new series, making room when the table (or the zone) is full */

static ngx_kubenova_usage_series_t *
ngx_kubenova_usage_add(ngx_kubenova_usage_ctx_t *ctx, uint32_t hash,
    const u_char *tenant, size_t tenant_len, const u_char *cluster,
    size_t cluster_len)
{
    size_t                        size;
    ngx_kubenova_usage_series_t  *s;

    if (ctx->sh->max_series == 0) {
        return NULL;
    }

    while (ctx->sh->series >= ctx->sh->max_series) {
        ngx_kubenova_usage_evict(ctx);
    }

    size = offsetof(ngx_kubenova_usage_series_t, names) + tenant_len
           + cluster_len;

    for ( ;; ) {
        s = ngx_slab_alloc_locked(ctx->shpool, size);
        if (s != NULL) {
            break;
        }

        if (ngx_queue_empty(&ctx->sh->lru)) {
            return NULL;
        }

        ngx_kubenova_usage_evict(ctx);
    }

    s->node.key = hash;
    s->tenant_len = (u_short) tenant_len;
    s->cluster_len = (u_short) cluster_len;
    ngx_memcpy(s->names, tenant, tenant_len);
    ngx_memcpy(s->names + tenant_len, cluster, cluster_len);
    s->window_end = 0;

    ngx_rbtree_insert(&ctx->sh->rbtree, &s->node);
    ctx->sh->series++;

    return s;
}


static void
ngx_kubenova_usage_evict(ngx_kubenova_usage_ctx_t *ctx)
{
    ngx_queue_t                  *q;
    ngx_kubenova_usage_series_t  *s;

    q = ngx_queue_last(&ctx->sh->lru);
    s = ngx_queue_data(q, ngx_kubenova_usage_series_t, queue);

    ngx_queue_remove(q);
    ngx_rbtree_delete(&ctx->sh->rbtree, &s->node);
    ngx_slab_free_locked(ctx->shpool, s);

    ctx->sh->series--;
    ctx->sh->evictions++;
}


static void
ngx_kubenova_usage_rbtree_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t            **p;
    ngx_kubenova_usage_series_t   *s, *t;

    s = (ngx_kubenova_usage_series_t *) node;

    for ( ;; ) {
        t = (ngx_kubenova_usage_series_t *) temp;

        if (node->key != temp->key) {
            p = (node->key < temp->key) ? &temp->left : &temp->right;

        } else {
            p = (ngx_kubenova_usage_cmp(t, s->names, s->tenant_len,
                                        s->names + s->tenant_len,
                                        s->cluster_len) > 0)
                ? &temp->left : &temp->right;
        }

        if (*p == sentinel) {
            break;
        }

        temp = *p;
    }

    *p = node;
    node->parent = temp;
    node->left = sentinel;
    node->right = sentinel;
    ngx_rbt_red(node);
}


/* s against (tenant, cluster): < 0, 0, > 0 */

static ngx_int_t
ngx_kubenova_usage_cmp(ngx_kubenova_usage_series_t *s, const u_char *tenant,
    size_t tenant_len, const u_char *cluster, size_t cluster_len)
{
    ngx_int_t  rc;

    rc = ngx_memn2cmp(s->names, (u_char *) tenant, s->tenant_len,
                      tenant_len);
    if (rc != 0) {
        return rc;
    }

    return ngx_memn2cmp(s->names + s->tenant_len, (u_char *) cluster,
                        s->cluster_len, cluster_len);
}


static uint32_t
ngx_kubenova_usage_hash(const u_char *tenant, size_t tenant_len,
    const u_char *cluster, size_t cluster_len)
{
    uint32_t  crc;

    ngx_crc32_init(crc);
    ngx_crc32_update(&crc, (u_char *) tenant, tenant_len);
    ngx_crc32_update(&crc, (u_char *) "", 1);
    ngx_crc32_update(&crc, (u_char *) cluster, cluster_len);
    ngx_crc32_final(crc);

    return crc;
}


ngx_int_t
ngx_kubenova_usage_metrics_render(ngx_shm_zone_t *zone, ngx_pool_t *pool,
    ngx_str_t *out)
{
    u_char                       *p, *last;
    size_t                        size, labels;
    int64_t                       v;
    ngx_uint_t                    m;
    ngx_queue_t                  *q;
    ngx_kubenova_usage_ctx_t     *ctx;
    ngx_kubenova_usage_series_t  *s;

    ctx = zone->data;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    /*
     * the bound first: every label byte may double when escaped; the rest
     * of a line (name, braces, value) is under 128 bytes
     */

    labels = 0;

    for (q = ngx_queue_head(&ctx->sh->lru);
         q != ngx_queue_sentinel(&ctx->sh->lru);
         q = ngx_queue_next(q))
    {
        s = ngx_queue_data(q, ngx_kubenova_usage_series_t, queue);
        labels += 2 * (s->tenant_len + s->cluster_len);
    }

    size = 1024
           + NGX_KUBENOVA_USAGE_METRICS
             * (512 + labels + ctx->sh->series * 128);

    p = ngx_pnalloc(pool, size);
    if (p == NULL) {
        ngx_shmtx_unlock(&ctx->shpool->mutex);
        return NGX_ERROR;
    }

    out->data = p;
    last = p + size;

    p = ngx_slprintf(p, last,
            "# HELP kubenova_tenant_usage_series Series (tenant, cluster) of "
            "the kubenova_tenant_* gauges, at most %ui.\n"
            "# TYPE kubenova_tenant_usage_series gauge\n"
            "kubenova_tenant_usage_series %ui\n"
            "# HELP kubenova_tenant_usage_evictions_total Series dropped to "
            "make room for new ones.\n"
            "# TYPE kubenova_tenant_usage_evictions_total counter\n"
            "kubenova_tenant_usage_evictions_total %ui\n",
            ctx->sh->max_series, ctx->sh->series, ctx->sh->evictions);

    for (m = 0; m < NGX_KUBENOVA_USAGE_METRICS; m++) {
        p = ngx_slprintf(p, last, "# HELP %s %s\n# TYPE %s gauge\n",
                         ngx_kubenova_usage_docs[m].name,
                         ngx_kubenova_usage_docs[m].help,
                         ngx_kubenova_usage_docs[m].name);

        for (q = ngx_queue_head(&ctx->sh->lru);
             q != ngx_queue_sentinel(&ctx->sh->lru);
             q = ngx_queue_next(q))
        {
            s = ngx_queue_data(q, ngx_kubenova_usage_series_t, queue);

            v = (m < NGX_KUBENOVA_USAGE_FIGURES) ? s->figures[m]
                                                 : s->window_end;

            p = ngx_slprintf(p, last, "%s{tenant=\"",
                             ngx_kubenova_usage_docs[m].name);
            p = ngx_kubenova_usage_label(p, s->names, s->tenant_len);
            p = ngx_slprintf(p, last, "\",cluster=\"");
            p = ngx_kubenova_usage_label(p, s->names + s->tenant_len,
                                         s->cluster_len);
            p = ngx_slprintf(p, last, "\"} %L\n", v);
        }
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    out->len = p - out->data;

    return NGX_OK;
}


/* a label value: backslash, double quote and line feed escaped */

static u_char *
ngx_kubenova_usage_label(u_char *p, const u_char *s, size_t len)
{
    size_t  i;

    for (i = 0; i < len; i++) {
        switch (s[i]) {

        case '\\':
        case '"':
            *p++ = '\\';
            *p++ = s[i];
            break;

        case '\n':
            *p++ = '\\';
            *p++ = 'n';
            break;

        default:
            *p++ = s[i];
        }
    }

    return p;
}
