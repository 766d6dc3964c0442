/*
 * Unit test of ngx_kubenova_yaml_to_json(), built without nginx by
 * t/020-yaml-unit.t:
 *
 *   gcc -I. t/unit/yaml_test.c ngx_kubenova_yaml.c -ljansson -lyaml
 *
 * Prints TAP.  Every case is YAML in and either the compact JSON out (keys
 * sorted) or a substring of the error.  Under ASan, LeakSanitizer checks
 * that no error path leaks.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_kubenova_yaml.h"


typedef struct {
    const char  *name;
    const char  *yaml;
    size_t       len;        /* 0: strlen(yaml) */
    const char  *json;       /* expected output, or NULL */
    const char  *error;      /* expected error substring, or NULL */
} yaml_case_t;


#define OK(name, yaml, json)       { name, yaml, 0, json, NULL }
#define ERR(name, yaml, error)     { name, yaml, 0, NULL, error }
#define BIN_OK(name, yaml, json)   { name, yaml, sizeof(yaml) - 1, json, NULL }
#define BIN_ERR(name, yaml, error) { name, yaml, sizeof(yaml) - 1, NULL, error }


static const char  kubevela_yaml[] =
    "# a KubeVela Application, as \"vela def\" users write them\n"
    "apiVersion: core.oam.dev/v1beta1\n"
    "kind: Application\n"
    "metadata:\n"
    "  name: website\n"
    "  namespace: default\n"
    "  labels:\n"
    "    team: web\n"
    "    tier: \"1\"\n"
    "  annotations:\n"
    "    description: >\n"
    "      The public website\n"
    "      and its worker.\n"
    "spec:\n"
    "  components:\n"
    "    - name: frontend\n"
    "      type: webservice\n"
    "      properties:\n"
    "        image: oamdev/testapp:v1\n"
    "        port: 8000\n"
    "        cpu: \"0.5\"\n"
    "        memory: 512Mi\n"
    "        cmd: [\"node\", \"server.js\"]\n"
    "        env:\n"
    "          - name: LOG_LEVEL\n"
    "            value: debug\n"
    "          - name: FEATURE_X\n"
    "            value: 'true'\n"
    "      traits:\n"
    "        - type: scaler\n"
    "          properties:\n"
    "            replicas: 3\n"
    "        - type: gateway\n"
    "          properties:\n"
    "            domain: testapp.example.com\n"
    "            classInSpec: true\n"
    "            http:\n"
    "              \"/\": 8000\n"
    "    - name: worker\n"
    "      type: worker\n"
    "      properties:\n"
    "        image: busybox\n"
    "        cmd:\n"
    "          - sh\n"
    "          - -c\n"
    "          - |\n"
    "            while true; do\n"
    "              sleep 1000\n"
    "            done\n"
    "      dependsOn: [frontend]\n"
    "  policies:\n"
    "    - name: target-default\n"
    "      type: topology\n"
    "      properties:\n"
    "        clusters: [local]\n"
    "        namespace: default\n"
    "    - name: ha\n"
    "      type: override\n"
    "      properties:\n"
    "        components:\n"
    "          - type: webservice\n"
    "            traits:\n"
    "              - type: scaler\n"
    "                properties:\n"
    "                  replicas: 5\n"
    "  workflow:\n"
    "    steps:\n"
    "      - name: deploy-default\n"
    "        type: deploy\n"
    "        properties:\n"
    "          policies: [target-default, ha]\n"
    "        timeout: ~\n";

static const char  kubevela_json[] =
    "{\"apiVersion\":\"core.oam.dev/v1beta1\","
    "\"kind\":\"Application\","
    "\"metadata\":{"
        "\"annotations\":{"
            "\"description\":\"The public website and its worker.\\n\"},"
        "\"labels\":{\"team\":\"web\",\"tier\":\"1\"},"
        "\"name\":\"website\",\"namespace\":\"default\"},"
    "\"spec\":{"
        "\"components\":["
            "{\"name\":\"frontend\","
             "\"properties\":{"
                "\"cmd\":[\"node\",\"server.js\"],"
                "\"cpu\":\"0.5\","
                "\"env\":[{\"name\":\"LOG_LEVEL\",\"value\":\"debug\"},"
                         "{\"name\":\"FEATURE_X\",\"value\":\"true\"}],"
                "\"image\":\"oamdev/testapp:v1\","
                "\"memory\":\"512Mi\","
                "\"port\":8000},"
             "\"traits\":["
                "{\"properties\":{\"replicas\":3},\"type\":\"scaler\"},"
                "{\"properties\":{\"classInSpec\":true,"
                                 "\"domain\":\"testapp.example.com\","
                                 "\"http\":{\"/\":8000}},"
                 "\"type\":\"gateway\"}],"
             "\"type\":\"webservice\"},"
            "{\"dependsOn\":[\"frontend\"],"
             "\"name\":\"worker\","
             "\"properties\":{"
                "\"cmd\":[\"sh\",\"-c\","
                        "\"while true; do\\n  sleep 1000\\ndone\\n\"],"
                "\"image\":\"busybox\"},"
             "\"type\":\"worker\"}],"
        "\"policies\":["
            "{\"name\":\"target-default\","
             "\"properties\":{\"clusters\":[\"local\"],"
                             "\"namespace\":\"default\"},"
             "\"type\":\"topology\"},"
            "{\"name\":\"ha\","
             "\"properties\":{\"components\":["
                "{\"traits\":[{\"properties\":{\"replicas\":5},"
                              "\"type\":\"scaler\"}],"
                 "\"type\":\"webservice\"}]},"
             "\"type\":\"override\"}],"
        "\"workflow\":{\"steps\":["
            "{\"name\":\"deploy-default\","
             "\"properties\":{\"policies\":[\"target-default\",\"ha\"]},"
             "\"timeout\":null,"
             "\"type\":\"deploy\"}]}}}";


static const yaml_case_t  cases[] = {

    /* documents */

    OK("mapping document", "a: 1\nb: x\n", "{\"a\":1,\"b\":\"x\"}"),
    OK("explicit start and end markers", "%YAML 1.2\n---\na: 1\n...\n",
       "{\"a\":1}"),
    OK("document of only a start marker is null", "---\n", "null"),
    OK("scalar document", "hello\n", "\"hello\""),
    OK("comments are ignored", "# c\na: 1 # c\n# c\n", "{\"a\":1}"),
    BIN_OK("UTF-8 byte order mark", "\xef\xbb\xbf" "a: 1\n", "{\"a\":1}"),
    ERR("empty stream", "", "expected exactly one YAML document"),
    ERR("stream of only comments", "# nothing\n",
        "expected exactly one YAML document"),
    ERR("second document", "a: 1\n---\nb: 2\n",
        "line 2, column 1: expected exactly one YAML document"),
    ERR("second document after an end marker", "a: 1\n...\n---\nb: 2\n",
        "expected exactly one YAML document"),
    ERR("two empty documents", "---\n---\n",
        "expected exactly one YAML document"),

    /* collections */

    OK("nested block collections", "a:\n  - b: [1, {c: d}]\n  - []\n",
       "{\"a\":[{\"b\":[1,{\"c\":\"d\"}]},[]]}"),
    OK("flow mapping", "{a: 1, b: [x, y], c: {}}",
       "{\"a\":1,\"b\":[\"x\",\"y\"],\"c\":{}}"),
    OK("sequence of sequences", "- - 1\n  - 2\n- - 3\n", "[[1,2],[3]]"),
    OK("key without a value is null", "a:\nb: 1\n",
       "{\"a\":null,\"b\":1}"),
    OK("keys are taken as written", "1: a\ntrue: b\n~: c\n0x10: d\n",
       "{\"0x10\":\"d\",\"1\":\"a\",\"true\":\"b\",\"~\":\"c\"}"),
    OK("quoted and !!str keys", "\"a b\": 1\n'c': 2\n!!str d: 3\n",
       "{\"a b\":1,\"c\":2,\"d\":3}"),
    OK("empty key", "\"\": 1\n", "{\"\":1}"),
    OK("merge key is an ordinary key without aliases", "<<: {a: 1}\n",
       "{\"<<\":{\"a\":1}}"),
    ERR("duplicate key", "a: 1\nb: 2\na: 3\n",
        "line 3, column 1: duplicate mapping key \"a\""),
    ERR("duplicate key in a flow mapping", "x: {k: 1, k: 2}\n",
        "duplicate mapping key \"k\""),
    ERR("duplicate key after a nested value", "a:\n  b: [1]\n  b: 2\n",
        "line 3, column 3: duplicate mapping key \"b\""),
    ERR("duplicate key written differently", "a: 1\n\"a\": 2\n",
        "duplicate mapping key \"a\""),
    ERR("sequence as a key", "? [a, b]\n: c\n",
        "line 1, column 3: mapping keys must be scalars"),
    ERR("mapping as a key", "? {a: b}\n: c\n",
        "mapping keys must be scalars"),
    ERR("flow sequence as a key", "{[a]: b}\n",
        "mapping keys must be scalars"),
    ERR("!!int tag on a key", "!!int 1: a\n",
        "tag !!int is not supported on a mapping key"),

    /* scalars: strings */

    OK("double and single quoted",
       "a: \"1\"\nb: 'true'\nc: \"null\"\nd: 'it''s'\ne: \"t\\tab \\u00e9\"\n",
       "{\"a\":\"1\",\"b\":\"true\",\"c\":\"null\",\"d\":\"it's\","
       "\"e\":\"t\\tab \xc3\xa9\"}"),
    OK("quoted empty string", "a: ''\nb: \"\"\n", "{\"a\":\"\",\"b\":\"\"}"),
    OK("literal block", "a: |\n  x\n   y\n\n", "{\"a\":\"x\\n y\\n\"}"),
    OK("literal block, strip and keep",
       "a: |-\n  x\nb: |+\n  y\n\nc: 1\n",
       "{\"a\":\"x\",\"b\":\"y\\n\\n\",\"c\":1}"),
    OK("folded block", "a: >\n  x\n  y\n\n  z\n",
       "{\"a\":\"x y\\nz\\n\"}"),
    OK("block scalars that look like other types",
       "a: |\n  123\nb: >-\n  true\n",
       "{\"a\":\"123\\n\",\"b\":\"true\"}"),
    OK("multi-line plain scalar", "a: one\n  two\n", "{\"a\":\"one two\"}"),
    OK("YAML 1.1 booleans are strings in 1.2",
       "[yes, no, on, off, y, n, Yes]",
       "[\"yes\",\"no\",\"on\",\"off\",\"y\",\"n\",\"Yes\"]"),
    OK("almost special plain scalars are strings",
       "[tRue, nULL, 0x, 0o8, 0xg, 1_000, 1:20, +0x1, 1e, .e1, ., -, inf]",
       "[\"tRue\",\"nULL\",\"0x\",\"0o8\",\"0xg\",\"1_000\",\"1:20\","
       "\"+0x1\",\"1e\",\".e1\",\".\",\"-\",\"inf\"]"),
    OK("unicode", "name: \"\xe6\x97\xa5\xe6\x9c\xac\" \n",
       "{\"name\":\"\xe6\x97\xa5\xe6\x9c\xac\"}"),
    ERR("NUL escape", "a: \"x\\0y\"\n",
        "line 1, column 4: NUL characters are not supported"),
    ERR("NUL escape in a key", "\"k\\0\": 1\n",
        "NUL characters are not supported"),

    /* scalars: core schema */

    OK("nulls", "[null, Null, NULL, ~, ]",
       "[null,null,null,null]"),
    OK("empty plain scalar in a sequence is null", "- \n- 1\n",
       "[null,1]"),
    OK("booleans", "[true, True, TRUE, false, False, FALSE]",
       "[true,true,true,false,false,false]"),
    OK("decimal integers", "[0, 7, -7, +7, 007, -0]",
       "[0,7,-7,7,7,0]"),
    OK("octal and hex integers", "[0o17, 0o0, 0x1F, 0xff, 0xA]",
       "[15,0,31,255,10]"),
    OK("integer limits",
       "[9223372036854775807, -9223372036854775808, "
       "0x7fffffffffffffff, 0o777777777777777777777]",
       "[9223372036854775807,-9223372036854775808,"
       "9223372036854775807,9223372036854775807]"),
    ERR("integer too large", "a: 9223372036854775808\n",
        "line 1, column 4: integer \"9223372036854775808\" is out of range"),
    ERR("integer too small", "[-9223372036854775809]",
        "is out of range"),
    ERR("hex integer too large", "[0x10000000000000000]",
        "integer \"0x10000000000000000\" is out of range"),
    OK("floats", "[1.5, -2.25, .5, +.5, 1., 1e3, 2.5E-1, -1e+2, 0.0]",
       "[1.5,-2.25,0.5,0.5,1.0,1000.0,0.25,-100.0,0.0]"),
    ERR(".inf", "a: .inf\n",
        "line 1, column 4: \".inf\": JSON cannot hold infinity or NaN"),
    ERR("-.Inf", "[-.Inf]", "JSON cannot hold infinity or NaN"),
    ERR("+.INF", "[+.INF]", "JSON cannot hold infinity or NaN"),
    ERR(".nan", "[.nan]", "JSON cannot hold infinity or NaN"),
    ERR(".NaN", "[.NaN]", "JSON cannot hold infinity or NaN"),
    ERR("float overflow", "[1e400]", "number \"1e400\" is out of range"),
    OK("quoted .inf is a string", "a: '.inf'\n", "{\"a\":\".inf\"}"),

    /* tags */

    OK("!!str", "[!!str 12, !!str true, !!str null, !!str, !!str 1.5]",
       "[\"12\",\"true\",\"null\",\"\",\"1.5\"]"),
    OK("!!int", "[!!int 12, !!int \"-3\", !!int 0x10, !!int '0o7']",
       "[12,-3,16,7]"),
    OK("!!float", "[!!float 1, !!float \"2.5\", !!float -3e2]",
       "[1.0,2.5,-300.0]"),
    OK("!!bool", "[!!bool true, !!bool 'False']", "[true,false]"),
    OK("!!null", "- !!null null\n- !!null ''\n- !!null ~\n- !!null\n",
       "[null,null,null,null]"),
    OK("!!map and !!seq", "!!map {a: !!seq [1], b: !!map {}}",
       "{\"a\":[1],\"b\":{}}"),
    OK("verbatim tag", "!<tag:yaml.org,2002:str> 5", "\"5\""),
    OK("non-specific tag", "a: ! 12\nb: ! [1]\nc: ! {d: 1}\n",
       "{\"a\":\"12\",\"b\":[1],\"c\":{\"d\":1}}"),
    OK("tag handle directive for the standard prefix",
       "%TAG !x! tag:yaml.org,2002:\n--- !x!int \"5\"\n", "5"),
    ERR("invalid !!int", "a: !!int 1.5\n",
        "line 1, column 4: invalid !!int value \"1.5\""),
    ERR("invalid !!float", "[!!float abc]", "invalid !!float value \"abc\""),
    ERR("!!float .inf", "[!!float .inf]", "JSON cannot hold infinity"),
    ERR("invalid !!bool", "[!!bool yes]", "invalid !!bool value \"yes\""),
    ERR("invalid !!null", "[!!null 0]", "invalid !!null value \"0\""),
    ERR("!!int out of range", "[!!int 99999999999999999999]",
        "is out of range"),
    ERR("!!binary", "a: !!binary aGk=\n",
        "line 1, column 4: tag !!binary is not supported on a scalar"),
    ERR("!!timestamp", "[!!timestamp 2001-12-14]",
        "tag !!timestamp is not supported"),
    ERR("local tag", "a: !foo x\n", "tag !foo is not supported on a scalar"),
    ERR("local tag on a mapping", "!vela {a: 1}",
        "tag !vela is not supported on a mapping"),
    ERR("!!seq on a mapping", "!!seq {a: 1}",
        "tag !!seq is not supported on a mapping"),
    ERR("!!map on a sequence", "a: !!map [1]\n",
        "tag !!map is not supported on a sequence"),
    ERR("!!map on a scalar", "[!!map x]",
        "tag !!map is not supported on a scalar"),
    ERR("redefined !! handle", "%TAG !! tag:example.com:\n--- !!str a\n",
        "tag tag:example.com:str is not supported"),
    ERR("!!set", "!!set {a, b}", "tag !!set is not supported on a mapping"),

    /* anchors and aliases */

    OK("anchors alone are ignored", "a: &x 1\nb: &y [2]\nc: &z {d: 3}\n",
       "{\"a\":1,\"b\":[2],\"c\":{\"d\":3}}"),
    ERR("alias", "a: &x 1\nb: *x\n",
        "line 2, column 4: YAML aliases are not supported"),
    ERR("alias as a key", "a: &x k\n*x : 1\n",
        "YAML aliases are not supported"),
    ERR("merge key with an alias", "base: &b {x: 1}\nc:\n  <<: *b\n",
        "YAML aliases are not supported"),
    ERR("billion laughs",
        "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n"
        "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
        "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
        "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n",
        "line 2, column 8: YAML aliases are not supported"),
    ERR("undefined alias", "a: *nothing\n", "YAML aliases are not supported"),

    /* syntax errors from libyaml, with line and column */

    ERR("mapping value in a plain scalar", "a: 1\nb: 2\nc: d: e\n",
        "line 3, column 5: mapping values are not allowed in this context"),
    ERR("unclosed flow sequence", "a: [1, 2\nb: 3\n",
        "line 2, column 2: did not find expected ',' or ']' "
        "(while parsing a flow sequence at line 1, column 4)"),
    ERR("unterminated quote", "key: \"abc\n",
        "found unexpected end of stream"),
    ERR("bad indentation", "a:\n  b: 1\n c: 2\n",
        "line 3, column 2: did not find expected key"),
    ERR("tab indentation", "a:\n\tb: 1\n",
        "line 2, column 1: found character that cannot start any token"),
    ERR("invalid escape", "a: \"\\q\"\n",
        "found unknown escape character"),
    ERR("undefined tag handle", "a: !x!y 1\n", "found undefined tag handle"),
    BIN_ERR("invalid UTF-8", "a: 1\nb: \xff\n",
            "line 2, column 4: invalid leading UTF-8 octet (#xFF)"),
    BIN_ERR("NUL byte in the input", "a: 1\0\n",
            "line 1, column 5: control characters are not allowed"),
    ERR("control character", "a: \x01\n",
        "control characters are not allowed"),

    /* the real thing */

    OK("KubeVela Application", kubevela_yaml, kubevela_json),
};


static int  tests;
static int  failures;
static int  allocs_left;


static void
result(int ok, const char *name)
{
    tests++;

    if (!ok) {
        failures++;
    }

    printf("%sok %d - %s\n", ok ? "" : "not ", tests, name);
}


/* err must stay valid UTF-8: the API sends it inside a JSON answer */

static int
valid_utf8(const char *s)
{
    json_t  *j;

    j = json_string(s);
    if (j == NULL) {
        return 0;
    }

    json_decref(j);
    return 1;
}


static void
run_case(const yaml_case_t *c)
{
    int      ok;
    char     err[256], *out;
    size_t   len;
    json_t  *json;

    len = c->len ? c->len : strlen(c->yaml);

    memset(err, 'X', sizeof(err));
    json = ngx_kubenova_yaml_to_json((const unsigned char *) c->yaml, len,
                                     err, sizeof(err));

    if (json == NULL) {
        ok = c->error != NULL && strstr(err, c->error) != NULL
             && valid_utf8(err);
        result(ok, c->name);

        if (!ok) {
            printf("#      got error: %s\n", err);
            printf("#       expected: %s\n",
                   c->error ? c->error : c->json);
        }

        return;
    }

    out = json_dumps(json, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    json_decref(json);

    ok = c->json != NULL && out != NULL && strcmp(out, c->json) == 0
         && err[0] == '\0';
    result(ok, c->name);

    if (!ok) {
        printf("#            got: %s\n", out ? out : "(dump failed)");
        printf("#       expected: %s%s\n", c->json ? "" : "error ",
               c->json ? c->json : c->error);
    }

    free(out);
}


/* a generated document: the expected outcome is checked by the caller */

static json_t *
convert(const char *yaml, char *err, size_t err_size)
{
    return ngx_kubenova_yaml_to_json((const unsigned char *) yaml,
                                     strlen(yaml), err, err_size);
}


static char *
repeat(const char *head, const char *unit, size_t n, const char *between,
    const char *tail)
{
    char    *s, *p;
    size_t   i, size;

    size = strlen(head) + n * (strlen(unit) + strlen(between))
           + strlen(tail) + 1;

    s = malloc(size);
    if (s == NULL) {
        printf("Bail out! out of memory\n");
        exit(1);
    }

    p = stpcpy(s, head);

    for (i = 0; i < n; i++) {
        p = stpcpy(p, unit);

        if (i + 1 < n) {
            p = stpcpy(p, between);
        }
    }

    stpcpy(p, tail);

    return s;
}


static void
check_generated(const char *name, char *yaml, const char *error)
{
    int      ok;
    char     err[256];
    json_t  *json;

    json = convert(yaml, err, sizeof(err));

    if (error == NULL) {
        ok = (json != NULL);

    } else {
        ok = (json == NULL && strstr(err, error) != NULL);
    }

    result(ok, name);

    if (!ok) {
        printf("#      got: %s\n", json ? "a document" : err);
    }

    json_decref(json);
    free(yaml);
}


static void
run_limits(void)
{
    char    *s, *p, err[256];
    size_t   i;
    json_t  *json, *j;

    /* depth: 64 nested collections are fine, 65 are not */

    s = repeat("", "[", 64, "", "");
    p = repeat(s, "]", 64, "", "");
    free(s);

    json = convert(p, err, sizeof(err));
    free(p);

    j = json;
    for (i = 1; j != NULL && i < 64; i++) {
        j = json_array_get(j, 0);
    }

    result(j != NULL && json_is_array(j) && json_array_size(j) == 0,
           "64 nested flow sequences");
    json_decref(json);

    s = repeat("", "[", 65, "", "");
    p = repeat(s, "]", 65, "", "");
    free(s);
    check_generated("65 nested flow sequences", p,
                    "line 1, column 65: YAML nesting is deeper than 64 levels");

    /* block mappings, "a:" indented one level more on every line */

    p = malloc(65 * (2 * 65 + 4) + 1);
    if (p == NULL) {
        printf("Bail out! out of memory\n");
        exit(1);
    }

    s = p;
    for (i = 0; i < 65; i++) {
        memset(s, ' ', 2 * i);
        s += 2 * i;
        s = stpcpy(s, "a:\n");
    }
    *s = '\0';

    check_generated("65 nested block mappings", p,
                    "line 65, column 129: YAML nesting is deeper than 64");

    /* nodes: the sequence itself plus its items, keys count too */

    check_generated("100000 nodes", repeat("[", "0", 99999, ",", "]"),
                    NULL);
    check_generated("100001 nodes", repeat("[", "0", 100000, ",", "]"),
                    "YAML document has more than 100000 nodes");

    s = malloc(50000 * 16 + 3);
    if (s == NULL) {
        printf("Bail out! out of memory\n");
        exit(1);
    }

    p = stpcpy(s, "{");
    for (i = 0; i < 50000; i++) {
        p += sprintf(p, "%sk%zu: 0", i ? ", " : "", i);
    }
    stpcpy(p, "}");

    check_generated("50000 keys and their values are 100001 nodes", s,
                    "YAML document has more than 100000 nodes");
}


static void
run_api(void)
{
    int      ok;
    char     err[256], small[12], *yaml;
    size_t   n;
    json_t  *json;

    json = ngx_kubenova_yaml_to_json(NULL, 0, err, sizeof(err));
    result(json == NULL && strstr(err, "expected exactly one YAML document"),
           "NULL input is an empty stream");

    json = ngx_kubenova_yaml_to_json((const unsigned char *) "a: [", 4,
                                     NULL, 0);
    result(json == NULL, "no error buffer");

    /* only len bytes are read, whatever follows them */

    json = ngx_kubenova_yaml_to_json((const unsigned char *) "a: 1\nb: *x",
                                     5, err, sizeof(err));
    ok = json != NULL && json_integer_value(json_object_get(json, "a")) == 1
         && json_object_size(json) == 1;
    result(ok, "input is bounded by len");
    json_decref(json);

    /* a message cut by a small buffer does not end inside a character */

    json = convert("\xc3\xa9: 1\n\xc3\xa9: 2\n", small, sizeof(small));
    ok = json == NULL && strlen(small) < sizeof(small) && valid_utf8(small);
    result(ok, "error cut by a small buffer stays valid UTF-8");

    json = convert("x: [\n\xc3\xa9: 1\n", err, 1);
    result(json == NULL && err[0] == '\0', "one-byte error buffer");

    /* long keys are quoted in part, cut on a character boundary */

    yaml = repeat("", "\xc3\xa9", 40, "", ": 1\n");
    n = strlen(yaml);
    yaml = realloc(yaml, 2 * n + 1);
    if (yaml == NULL) {
        printf("Bail out! out of memory\n");
        exit(1);
    }
    memcpy(yaml + n, yaml, n);
    yaml[2 * n] = '\0';

    json = convert(yaml, err, sizeof(err));
    ok = json == NULL && strstr(err, "duplicate mapping key \"\xc3\xa9")
         && strstr(err, "\xc3\xa9...\"") && valid_utf8(err);
    result(ok, "long duplicate key is shortened");

    if (!ok) {
        printf("#      got: %s\n", err);
    }

    free(yaml);
}


/* jansson's allocator, failing once allocs_left runs out */

static void *
failing_malloc(size_t size)
{
    if (allocs_left == 0) {
        return NULL;
    }

    allocs_left--;

    return malloc(size);
}


/*
 * Every jansson allocation of the conversion fails in turn: each run must
 * end in "out of memory" (LeakSanitizer checks what was built is freed)
 * until enough allocations are allowed for the document to come through.
 */

static void
run_out_of_memory(void)
{
    int      n, ok;
    char     err[256];
    json_t  *json;

    ok = 1;

    for (n = 0; n < 10000; n++) {
        allocs_left = n;
        json_set_alloc_funcs(failing_malloc, free);

        json = convert(kubevela_yaml, err, sizeof(err));

        json_set_alloc_funcs(malloc, free);

        if (json != NULL) {
            json_decref(json);
            break;
        }

        if (strcmp(err, "out of memory") != 0) {
            printf("# after %d allocations: %s\n", n, err);
            ok = 0;
            break;
        }
    }

    result(ok && n > 10 && n < 10000,
           "jansson allocation failures end in \"out of memory\"");
}


int
main(void)
{
    size_t  i, n;

    /*
     * stdout is a pipe: without line buffering, a sanitizer that ends the
     * process would take the results printed so far with it
     */
    setvbuf(stdout, NULL, _IOLBF, 0);

    n = sizeof(cases) / sizeof(cases[0]);

    for (i = 0; i < n; i++) {
        run_case(&cases[i]);
    }

    run_limits();
    run_api();
    run_out_of_memory();

    /* a plan at the end: a crash before it shows as a missing plan */

    printf("1..%d\n", tests);

    return failures ? 1 : 0;
}
