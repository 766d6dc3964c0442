/*
 * YAML to JSON (see the header).
 *
 * libyaml's event parser is driven by one loop with an explicit stack rather
 * than by recursion: the depth is capped anyway, but a loop keeps all the
 * cleanup in one place.  A collection is attached to its parent as soon as
 * it starts, so the root owns everything built so far and one json_decref()
 * releases a half-built document on any error.
 */

#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "ngx_kubenova_yaml.h"


#define NGX_KUBENOVA_YAML_TAG_PREFIX  "tag:yaml.org,2002:"

/*
 * how much of a key or a value an error message quotes; the buffer also
 * holds the "!!" of a tag name, "..." and the NUL
 */
#define NGX_KUBENOVA_YAML_QUOTE_LEN   64
#define NGX_KUBENOVA_YAML_QUOTE_SIZE  (NGX_KUBENOVA_YAML_QUOTE_LEN + 6)

#if JSON_INTEGER_IS_LONG_LONG
#define NGX_KUBENOVA_YAML_INT_MAX     LLONG_MAX
#else
#define NGX_KUBENOVA_YAML_INT_MAX     LONG_MAX
#endif


typedef enum {
    NGX_KUBENOVA_YAML_ANY = 0,
    NGX_KUBENOVA_YAML_STR,
    NGX_KUBENOVA_YAML_NULL,
    NGX_KUBENOVA_YAML_BOOL,
    NGX_KUBENOVA_YAML_INT,
    NGX_KUBENOVA_YAML_FLOAT,
    NGX_KUBENOVA_YAML_MAP,
    NGX_KUBENOVA_YAML_SEQ,
    NGX_KUBENOVA_YAML_UNKNOWN
} ngx_kubenova_yaml_type_e;


typedef struct {
    json_t                     *node;    /* the root's is owned by ctx */
    char                       *key;     /* mapping key waiting for a value */
} ngx_kubenova_yaml_frame_t;


typedef struct {
    ngx_kubenova_yaml_frame_t   stack[NGX_KUBENOVA_YAML_MAX_DEPTH];
    size_t                      depth;
    size_t                      nodes;
    json_t                     *root;
    char                       *err;
    size_t                      err_size;
} ngx_kubenova_yaml_ctx_t;


static int ngx_kubenova_yaml_scalar(ngx_kubenova_yaml_ctx_t *ctx,
    yaml_event_t *ev);
static int ngx_kubenova_yaml_start(ngx_kubenova_yaml_ctx_t *ctx,
    yaml_event_t *ev, ngx_kubenova_yaml_type_e type);
static int ngx_kubenova_yaml_count(ngx_kubenova_yaml_ctx_t *ctx,
    yaml_event_t *ev);
static int ngx_kubenova_yaml_attach(ngx_kubenova_yaml_ctx_t *ctx,
    yaml_event_t *ev, json_t *node);
static json_t *ngx_kubenova_yaml_value(ngx_kubenova_yaml_ctx_t *ctx,
    yaml_event_t *ev);
static ngx_kubenova_yaml_type_e ngx_kubenova_yaml_tag(const char *tag);
static int ngx_kubenova_yaml_word(const char *s, size_t len,
    const char *const *words);
static int ngx_kubenova_yaml_int(const char *s, size_t len, json_int_t *v);
static int ngx_kubenova_yaml_float(const char *s, size_t len);
static const char *ngx_kubenova_yaml_quote(char *buf, const char *s,
    size_t len);
static const char *ngx_kubenova_yaml_tag_name(char *buf, const char *tag);
static void ngx_kubenova_yaml_parser_error(ngx_kubenova_yaml_ctx_t *ctx,
    yaml_parser_t *parser, const unsigned char *data, size_t len);
static void ngx_kubenova_yaml_error(ngx_kubenova_yaml_ctx_t *ctx,
    yaml_mark_t *mark, const char *fmt, ...);


static const char *const  ngx_kubenova_yaml_nulls[] = {
    "", "~", "null", "Null", "NULL", NULL
};

static const char *const  ngx_kubenova_yaml_trues[] = {
    "true", "True", "TRUE", NULL
};

static const char *const  ngx_kubenova_yaml_falses[] = {
    "false", "False", "FALSE", NULL
};

static const char *const  ngx_kubenova_yaml_infnans[] = {
    ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF",
    "-.inf", "-.Inf", "-.INF", ".nan", ".NaN", ".NAN", NULL
};


json_t *
ngx_kubenova_yaml_to_json(const unsigned char *data, size_t len, char *err,
    size_t err_size)
{
    int                       rc, done, documents;
    size_t                    i;
    yaml_event_t              ev;
    yaml_parser_t             parser;
    ngx_kubenova_yaml_ctx_t   ctx;

    ctx.depth = 0;
    ctx.nodes = 0;
    ctx.root = NULL;
    ctx.err = err;
    ctx.err_size = err_size;

    if (err != NULL && err_size > 0) {
        err[0] = '\0';
    }

    if (!yaml_parser_initialize(&parser)) {
        ngx_kubenova_yaml_error(&ctx, NULL, "out of memory");
        return NULL;
    }

    /* libyaml asserts a non-NULL input even for an empty one */

    yaml_parser_set_input_string(&parser,
                                 data ? data : (const unsigned char *) "",
                                 data ? len : 0);

    documents = 0;
    done = 0;

    while (!done) {

        if (!yaml_parser_parse(&parser, &ev)) {
            ngx_kubenova_yaml_parser_error(&ctx, &parser, data, len);
            goto failed;
        }

        rc = 0;

        switch (ev.type) {

        case YAML_DOCUMENT_START_EVENT:
            /*
             * refused as soon as a second document starts, before any of
             * it is parsed
             */
            if (documents++ > 0) {
                ngx_kubenova_yaml_error(&ctx, &ev.start_mark,
                                       "expected exactly one YAML document");
                rc = -1;
            }
            break;

        case YAML_STREAM_END_EVENT:
            if (documents == 0) {
                ngx_kubenova_yaml_error(&ctx, &ev.start_mark,
                                       "expected exactly one YAML document");
                rc = -1;
            }
            done = 1;
            break;

        case YAML_ALIAS_EVENT:
            /* expanding aliases is how "billion laughs" documents explode */
            ngx_kubenova_yaml_error(&ctx, &ev.start_mark,
                                   "YAML aliases are not supported");
            rc = -1;
            break;

        case YAML_SCALAR_EVENT:
            rc = ngx_kubenova_yaml_scalar(&ctx, &ev);
            break;

        case YAML_SEQUENCE_START_EVENT:
            rc = ngx_kubenova_yaml_start(&ctx, &ev, NGX_KUBENOVA_YAML_SEQ);
            break;

        case YAML_MAPPING_START_EVENT:
            rc = ngx_kubenova_yaml_start(&ctx, &ev, NGX_KUBENOVA_YAML_MAP);
            break;

        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
            if (ctx.depth > 0) {
                ctx.depth--;
                free(ctx.stack[ctx.depth].key);
                ctx.stack[ctx.depth].key = NULL;
            }
            break;

        case YAML_NO_EVENT:
            /* libyaml returns it only after the end: never loop on it */
            ngx_kubenova_yaml_error(&ctx, &ev.start_mark,
                                   "unexpected end of YAML input");
            rc = -1;
            break;

        default: /* stream start, document end */
            break;
        }

        yaml_event_delete(&ev);

        if (rc != 0) {
            goto failed;
        }
    }

    yaml_parser_delete(&parser);

    return ctx.root;

failed:

    yaml_parser_delete(&parser);

    for (i = 0; i < ctx.depth; i++) {
        free(ctx.stack[i].key);
    }

    json_decref(ctx.root);

    return NULL;
}


static int
ngx_kubenova_yaml_scalar(ngx_kubenova_yaml_ctx_t *ctx, yaml_event_t *ev)
{
    char                       *s, *key, *tag;
    char                        buf[NGX_KUBENOVA_YAML_QUOTE_SIZE];
    size_t                      len;
    json_t                     *value;
    ngx_kubenova_yaml_type_e    type;
    ngx_kubenova_yaml_frame_t  *frame;

    if (ngx_kubenova_yaml_count(ctx, ev) != 0) {
        return -1;
    }

    s = (char *) ev->data.scalar.value;
    len = ev->data.scalar.length;
    tag = (char *) ev->data.scalar.tag;

    /*
     * "\0" escapes would be cut short by everything that later reads the
     * strings as C strings; jansson refuses \u0000 by default for the same
     * reason
     */

    if (memchr(s, '\0', len) != NULL) {
        ngx_kubenova_yaml_error(ctx, &ev->start_mark,
                                "NUL characters are not supported");
        return -1;
    }

    frame = ctx->depth ? &ctx->stack[ctx->depth - 1] : NULL;

    if (frame == NULL || !json_is_object(frame->node) || frame->key != NULL) {

        value = ngx_kubenova_yaml_value(ctx, ev);
        if (value == NULL) {
            return -1;
        }

        return ngx_kubenova_yaml_attach(ctx, ev, value);
    }

    /*
     * a mapping key: JSON keys are strings, so the key is taken as written
     * ("1: x" gives "1", not a number); only tags meaning a string make sense
     */

    if (tag != NULL) {
        type = ngx_kubenova_yaml_tag(tag);

        if (type != NGX_KUBENOVA_YAML_STR) {
            ngx_kubenova_yaml_error(ctx, &ev->start_mark,
                                    "tag %s is not supported on a mapping key",
                                    ngx_kubenova_yaml_tag_name(buf, tag));
            return -1;
        }
    }

    if (json_object_get(frame->node, s) != NULL) {
        ngx_kubenova_yaml_error(ctx, &ev->start_mark,
                                "duplicate mapping key \"%s\"",
                                ngx_kubenova_yaml_quote(buf, s, len));
        return -1;
    }

    key = malloc(len + 1);
    if (key == NULL) {
        ngx_kubenova_yaml_error(ctx, NULL, "out of memory");
        return -1;
    }

    memcpy(key, s, len + 1);
    frame->key = key;

    return 0;
}


static int
ngx_kubenova_yaml_start(ngx_kubenova_yaml_ctx_t *ctx, yaml_event_t *ev,
    ngx_kubenova_yaml_type_e type)
{
    char                       *tag;
    char                        buf[NGX_KUBENOVA_YAML_QUOTE_SIZE];
    json_t                     *node;
    const char                 *what;
    ngx_kubenova_yaml_frame_t  *frame;

    if (ngx_kubenova_yaml_count(ctx, ev) != 0) {
        return -1;
    }

    if (type == NGX_KUBENOVA_YAML_MAP) {
        tag = (char *) ev->data.mapping_start.tag;
        what = "mapping";

    } else {
        tag = (char *) ev->data.sequence_start.tag;
        what = "sequence";
    }

    frame = ctx->depth ? &ctx->stack[ctx->depth - 1] : NULL;

    if (frame != NULL && json_is_object(frame->node) && frame->key == NULL) {
        ngx_kubenova_yaml_error(ctx, &ev->start_mark,
                                "mapping keys must be scalars");
        return -1;
    }

    /* "!" (non-specific) keeps the node what it is */

    if (tag != NULL && strcmp(tag, "!") != 0
        && ngx_kubenova_yaml_tag(tag) != type)
    {
        ngx_kubenova_yaml_error(ctx, &ev->start_mark,
                                "tag %s is not supported on a %s",
                                ngx_kubenova_yaml_tag_name(buf, tag), what);
        return -1;
    }

    if (ctx->depth == NGX_KUBENOVA_YAML_MAX_DEPTH) {
        ngx_kubenova_yaml_error(ctx, &ev->start_mark,
                                "YAML nesting is deeper than %d levels",
                                NGX_KUBENOVA_YAML_MAX_DEPTH);
        return -1;
    }

    node = (type == NGX_KUBENOVA_YAML_MAP) ? json_object() : json_array();
    if (node == NULL) {
        ngx_kubenova_yaml_error(ctx, NULL, "out of memory");
        return -1;
    }

    if (ngx_kubenova_yaml_attach(ctx, ev, node) != 0) {
        return -1;
    }

    /* the parent (or ctx->root) holds the reference; node stays valid */

    frame = &ctx->stack[ctx->depth++];
    frame->node = node;
    frame->key = NULL;

    return 0;
}


static int
ngx_kubenova_yaml_count(ngx_kubenova_yaml_ctx_t *ctx, yaml_event_t *ev)
{
    if (++ctx->nodes > NGX_KUBENOVA_YAML_MAX_NODES) {
        ngx_kubenova_yaml_error(ctx, &ev->start_mark,
                                "YAML document has more than %d nodes",
                                NGX_KUBENOVA_YAML_MAX_NODES);
        return -1;
    }

    return 0;
}


/* takes the reference to node, whatever happens */

static int
ngx_kubenova_yaml_attach(ngx_kubenova_yaml_ctx_t *ctx, yaml_event_t *ev,
    json_t *node)
{
    int                         rc;
    ngx_kubenova_yaml_frame_t  *frame;

    if (ctx->depth == 0) {

        if (ctx->root != NULL) {
            /* one document holds one root node: libyaml never gets here */
            json_decref(node);
            ngx_kubenova_yaml_error(ctx, &ev->start_mark,
                                    "expected exactly one YAML document");
            return -1;
        }

        ctx->root = node;
        return 0;
    }

    frame = &ctx->stack[ctx->depth - 1];

    if (json_is_array(frame->node)) {
        rc = json_array_append_new(frame->node, node);

    } else {
        /* jansson releases node on failure too */
        rc = json_object_set_new(frame->node, frame->key, node);
        free(frame->key);
        frame->key = NULL;
    }

    if (rc != 0) {
        ngx_kubenova_yaml_error(ctx, NULL, "out of memory");
        return -1;
    }

    return 0;
}


static json_t *
ngx_kubenova_yaml_value(ngx_kubenova_yaml_ctx_t *ctx, yaml_event_t *ev)
{
    int                        plain;
    char                      *s, *tag;
    char                       buf[NGX_KUBENOVA_YAML_QUOTE_SIZE];
    double                     d;
    size_t                     len;
    json_t                    *value;
    json_int_t                 i;
    const char                *name;
    ngx_kubenova_yaml_type_e   type;

    s = (char *) ev->data.scalar.value;
    len = ev->data.scalar.length;
    tag = (char *) ev->data.scalar.tag;

    if (tag == NULL) {
        /* only plain scalars are resolved; quoted and block ones are text */
        plain = (ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE);
        type = plain ? NGX_KUBENOVA_YAML_ANY : NGX_KUBENOVA_YAML_STR;

    } else {
        type = ngx_kubenova_yaml_tag(tag);
    }

    switch (type) {

    case NGX_KUBENOVA_YAML_STR:
        goto string;

    case NGX_KUBENOVA_YAML_MAP:
    case NGX_KUBENOVA_YAML_SEQ:
    case NGX_KUBENOVA_YAML_UNKNOWN:
        ngx_kubenova_yaml_error(ctx, &ev->start_mark,
                                "tag %s is not supported on a scalar",
                                ngx_kubenova_yaml_tag_name(buf, tag));
        return NULL;

    default:
        break;
    }

    if (type == NGX_KUBENOVA_YAML_ANY || type == NGX_KUBENOVA_YAML_NULL) {

        if (ngx_kubenova_yaml_word(s, len, ngx_kubenova_yaml_nulls)) {
            value = json_null();
            goto done;
        }

        if (type == NGX_KUBENOVA_YAML_NULL) {
            name = "!!null";
            goto invalid;
        }
    }

    if (type == NGX_KUBENOVA_YAML_ANY || type == NGX_KUBENOVA_YAML_BOOL) {

        if (ngx_kubenova_yaml_word(s, len, ngx_kubenova_yaml_trues)) {
            value = json_true();
            goto done;
        }

        if (ngx_kubenova_yaml_word(s, len, ngx_kubenova_yaml_falses)) {
            value = json_false();
            goto done;
        }

        if (type == NGX_KUBENOVA_YAML_BOOL) {
            name = "!!bool";
            goto invalid;
        }
    }

    if (type == NGX_KUBENOVA_YAML_ANY || type == NGX_KUBENOVA_YAML_INT) {

        switch (ngx_kubenova_yaml_int(s, len, &i)) {

        case 1:
            value = json_integer(i);
            goto done;

        case -1:
            ngx_kubenova_yaml_error(ctx, &ev->start_mark,
                                    "integer \"%s\" is out of range",
                                    ngx_kubenova_yaml_quote(buf, s, len));
            return NULL;

        default:
            break;
        }

        if (type == NGX_KUBENOVA_YAML_INT) {
            name = "!!int";
            goto invalid;
        }
    }

    /* ANY or FLOAT from here on */

    if (ngx_kubenova_yaml_word(s, len, ngx_kubenova_yaml_infnans)) {
        ngx_kubenova_yaml_error(ctx, &ev->start_mark,
                                "\"%s\": JSON cannot hold infinity or NaN",
                                ngx_kubenova_yaml_quote(buf, s, len));
        return NULL;
    }

    if (ngx_kubenova_yaml_float(s, len)) {

        /*
         * the syntax is checked above, so strtod() reads all of s; it uses
         * the C locale's decimal point, which nginx never changes
         */

        d = strtod(s, NULL);

        if (isinf(d) || isnan(d)) {
            ngx_kubenova_yaml_error(ctx, &ev->start_mark,
                                    "number \"%s\" is out of range",
                                    ngx_kubenova_yaml_quote(buf, s, len));
            return NULL;
        }

        value = json_real(d);
        goto done;
    }

    if (type == NGX_KUBENOVA_YAML_FLOAT) {
        name = "!!float";
        goto invalid;
    }

string:

    /* libyaml hands out valid UTF-8 only, as jansson requires */
    value = json_stringn(s, len);

done:

    if (value == NULL) {
        ngx_kubenova_yaml_error(ctx, NULL, "out of memory");
    }

    return value;

invalid:

    ngx_kubenova_yaml_error(ctx, &ev->start_mark, "invalid %s value \"%s\"",
                            name, ngx_kubenova_yaml_quote(buf, s, len));
    return NULL;
}


static ngx_kubenova_yaml_type_e
ngx_kubenova_yaml_tag(const char *tag)
{
    size_t       n;
    const char  *name;

    /* "!" is the non-specific tag: for a scalar, it means text */

    if (strcmp(tag, "!") == 0) {
        return NGX_KUBENOVA_YAML_STR;
    }

    n = sizeof(NGX_KUBENOVA_YAML_TAG_PREFIX) - 1;

    if (strncmp(tag, NGX_KUBENOVA_YAML_TAG_PREFIX, n) != 0) {
        return NGX_KUBENOVA_YAML_UNKNOWN;
    }

    name = tag + n;

    if (strcmp(name, "str") == 0) {
        return NGX_KUBENOVA_YAML_STR;
    }

    if (strcmp(name, "null") == 0) {
        return NGX_KUBENOVA_YAML_NULL;
    }

    if (strcmp(name, "bool") == 0) {
        return NGX_KUBENOVA_YAML_BOOL;
    }

    if (strcmp(name, "int") == 0) {
        return NGX_KUBENOVA_YAML_INT;
    }

    if (strcmp(name, "float") == 0) {
        return NGX_KUBENOVA_YAML_FLOAT;
    }

    if (strcmp(name, "map") == 0) {
        return NGX_KUBENOVA_YAML_MAP;
    }

    if (strcmp(name, "seq") == 0) {
        return NGX_KUBENOVA_YAML_SEQ;
    }

    return NGX_KUBENOVA_YAML_UNKNOWN;
}


static int
ngx_kubenova_yaml_word(const char *s, size_t len, const char *const *words)
{
    for ( /* void */ ; *words; words++) {
        if (strlen(*words) == len && memcmp(*words, s, len) == 0) {
            return 1;
        }
    }

    return 0;
}


/*
 * YAML 1.2 core schema integers: [-+]?[0-9]+, 0o[0-7]+, 0x[0-9a-fA-F]+.
 * Returns 1 with *v set, 0 for "not an integer", -1 for "out of range":
 * a number that does not fit is refused rather than silently rounded.
 */

static int
ngx_kubenova_yaml_int(const char *s, size_t len, json_int_t *v)
{
    int                  neg, base, digit;
    const char          *p, *last;
    unsigned long long   n, max;

    p = s;
    last = s + len;
    neg = 0;
    base = 10;

    if (len > 2 && p[0] == '0' && (p[1] == 'o' || p[1] == 'x')) {
        base = (p[1] == 'o') ? 8 : 16;
        p += 2;

    } else if (len > 1 && (p[0] == '-' || p[0] == '+')) {
        neg = (p[0] == '-');
        p++;
    }

    if (p == last) {
        return 0;
    }

    /* the magnitude of the most negative value is one more than the max */

    max = (unsigned long long) NGX_KUBENOVA_YAML_INT_MAX + (neg ? 1 : 0);
    n = 0;

    for ( /* void */ ; p < last; p++) {

        if (*p >= '0' && *p <= '9') {
            digit = *p - '0';

        } else if (*p >= 'a' && *p <= 'f') {
            digit = *p - 'a' + 10;

        } else if (*p >= 'A' && *p <= 'F') {
            digit = *p - 'A' + 10;

        } else {
            return 0;
        }

        if (digit >= base) {
            return 0;
        }

        if (n > (max - digit) / base) {
            /* still report "not an integer" for junk after the overflow */
            while (++p < last) {
                if (!((*p >= '0' && *p <= '9')
                      || (base == 16 && ((*p >= 'a' && *p <= 'f')
                                         || (*p >= 'A' && *p <= 'F')))))
                {
                    return 0;
                }

                if (base == 8 && *p > '7') {
                    return 0;
                }
            }

            return -1;
        }

        n = n * base + digit;
    }

    if (neg) {
        *v = (n == max) ? -NGX_KUBENOVA_YAML_INT_MAX - 1
                        : -(json_int_t) n;

    } else {
        *v = (json_int_t) n;
    }

    return 1;
}


/* [-+]? ( \. [0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )? */

static int
ngx_kubenova_yaml_float(const char *s, size_t len)
{
    size_t       digits;
    const char  *p, *last;

    p = s;
    last = s + len;

    if (p < last && (*p == '-' || *p == '+')) {
        p++;
    }

    digits = 0;

    while (p < last && *p >= '0' && *p <= '9') {
        p++;
        digits++;
    }

    if (p < last && *p == '.') {
        p++;

        if (digits == 0 && (p == last || *p < '0' || *p > '9')) {
            return 0;
        }

        while (p < last && *p >= '0' && *p <= '9') {
            p++;
            digits++;
        }
    }

    if (digits == 0) {
        return 0;
    }

    if (p < last && (*p == 'e' || *p == 'E')) {
        p++;

        if (p < last && (*p == '-' || *p == '+')) {
            p++;
        }

        if (p == last) {
            return 0;
        }

        while (p < last && *p >= '0' && *p <= '9') {
            p++;
        }
    }

    return p == last;
}


/*
 * Up to NGX_KUBENOVA_YAML_QUOTE_LEN bytes of s for an error message: cut on
 * a character boundary, so that the message stays valid UTF-8 (it ends up in
 * a JSON answer), with control characters masked.  buf must have
 * NGX_KUBENOVA_YAML_QUOTE_SIZE bytes.
 */

static const char *
ngx_kubenova_yaml_quote(char *buf, const char *s, size_t len)
{
    size_t  n, i;

    n = len;

    if (n > NGX_KUBENOVA_YAML_QUOTE_LEN) {
        n = NGX_KUBENOVA_YAML_QUOTE_LEN;

        while (n > 0 && ((unsigned char) s[n] & 0xc0) == 0x80) {
            n--;
        }
    }

    for (i = 0; i < n; i++) {
        buf[i] = ((unsigned char) s[i] < 0x20 || s[i] == 0x7f) ? '?' : s[i];
    }

    if (n < len) {
        memcpy(&buf[i], "...", 3);
        i += 3;
    }

    buf[i] = '\0';

    return buf;
}


/* "!!int" for the standard tags, the tag as written otherwise */

static const char *
ngx_kubenova_yaml_tag_name(char *buf, const char *tag)
{
    size_t  n;

    n = sizeof(NGX_KUBENOVA_YAML_TAG_PREFIX) - 1;

    if (strncmp(tag, NGX_KUBENOVA_YAML_TAG_PREFIX, n) == 0) {
        buf[0] = '!';
        buf[1] = '!';
        ngx_kubenova_yaml_quote(buf + 2, tag + n, strlen(tag + n));

        return buf;
    }

    return ngx_kubenova_yaml_quote(buf, tag, strlen(tag));
}


static void
ngx_kubenova_yaml_parser_error(ngx_kubenova_yaml_ctx_t *ctx,
    yaml_parser_t *parser, const unsigned char *data, size_t len)
{
    size_t        i;
    yaml_mark_t   mark;
    const char   *problem;

    problem = parser->problem ? parser->problem : "invalid YAML";

    switch (parser->error) {

    case YAML_MEMORY_ERROR:
        ngx_kubenova_yaml_error(ctx, NULL, "out of memory");
        return;

    case YAML_READER_ERROR:
        /*
         * the reader knows only the byte offset of the bad input;
         * line and column are counted here the way the scanner counts them
         */
        mark.index = parser->problem_offset;
        mark.line = 0;
        mark.column = 0;

        for (i = 0; data != NULL && i < len && i < parser->problem_offset;
             i++)
        {
            if (data[i] == '\n'
                || (data[i] == '\r' && (i + 1 == len || data[i + 1] != '\n')))
            {
                mark.line++;
                mark.column = 0;

            } else if ((data[i] & 0xc0) != 0x80 && data[i] != '\r') {
                mark.column++;
            }
        }

        if (parser->problem_value != -1) {
            ngx_kubenova_yaml_error(ctx, &mark, "%s (#x%X)", problem,
                                    (unsigned int) parser->problem_value);

        } else {
            ngx_kubenova_yaml_error(ctx, &mark, "%s", problem);
        }

        return;

    default: /* scanner and parser errors */

        if (parser->context != NULL) {
            ngx_kubenova_yaml_error(ctx, &parser->problem_mark,
                                    "%s (%s at line %zu, column %zu)",
                                    problem, parser->context,
                                    parser->context_mark.line + 1,
                                    parser->context_mark.column + 1);

        } else {
            ngx_kubenova_yaml_error(ctx, &parser->problem_mark, "%s",
                                    problem);
        }
    }
}


static void
ngx_kubenova_yaml_error(ngx_kubenova_yaml_ctx_t *ctx, yaml_mark_t *mark,
    const char *fmt, ...)
{
    int       n;
    size_t    len, lead;
    va_list   args;

    if (ctx->err == NULL || ctx->err_size == 0) {
        return;
    }

    n = 0;

    if (mark != NULL) {
        n = snprintf(ctx->err, ctx->err_size, "line %zu, column %zu: ",
                     mark->line + 1, mark->column + 1);

        if (n < 0) {
            n = 0;
        }
    }

    if ((size_t) n < ctx->err_size) {
        va_start(args, fmt);
        (void) vsnprintf(ctx->err + n, ctx->err_size - n, fmt, args);
        va_end(args);
    }

    /* a message cut by a small buffer must not end inside a character */

    len = strlen(ctx->err);

    if (len > 0 && ((unsigned char) ctx->err[len - 1] & 0x80)) {
        lead = len - 1;

        while (lead > 0 && ((unsigned char) ctx->err[lead] & 0xc0) == 0x80) {
            lead--;
        }

        /* the lead byte says how long its sequence must be */

        switch ((unsigned char) ctx->err[lead] & 0xf0) {
        case 0xf0:
            n = 4;
            break;
        case 0xe0:
            n = 3;
            break;
        default:
            n = 2;
        }

        if (len - lead != (size_t) n) {
            ctx->err[lead] = '\0';
        }
    }
}
