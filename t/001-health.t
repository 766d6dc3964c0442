# /healthz, the API's JSON errors, and the module's directives.
use Test::Nginx::Socket 'no_plan';

no_shuffle();
run_tests();

__DATA__

=== TEST 1: healthz answers without any database
--- config
    location = /healthz { kubenova_healthz; }
--- request
GET /healthz
--- error_code: 200
--- response_headers
Content-Type: application/json
--- response_body
{"status":"alive"}
--- no_error_log
[alert]
[emerg]



=== TEST 2: healthz refuses POST with 405, Allow and a JSON error
--- config
    location = /healthz { kubenova_healthz; }
--- request
POST /healthz
{"x": 1}
--- error_code: 405
--- response_headers
Allow: GET, HEAD
Content-Type: application/json
--- response_body
{"error":{"status":405,"code":"method_not_allowed","message":"only GET and HEAD are allowed here"}}
--- no_error_log
[alert]
[emerg]



=== TEST 3: HEAD gets headers only
--- config
    location = /healthz { kubenova_healthz; }
--- request
HEAD /healthz
--- error_code: 200
--- response_headers
Content-Length: 19
--- response_body



=== TEST 4: the API root names itself
--- config
    location /api/ { kubenova_api; }
--- request
GET /api/v1
--- error_code: 200
--- response_body_like: ^\{"name":"kubenova","version":"\d+\.\d+\.\d+"\}$



=== TEST 5: an unknown API path is a JSON 404
--- config
    location /api/ { kubenova_api; }
--- request
GET /api/v1/no/such/thing
--- error_code: 404
--- response_headers
Content-Type: application/json
--- response_body
{"error":{"status":404,"code":"not_found","message":"no such API endpoint"}}



=== TEST 6: readyz without kubenova_postgres is a clear 503
--- config
    location = /readyz { kubenova_readyz; }
--- request
GET /readyz
--- error_code: 503
--- response_body
{"error":{"status":503,"code":"database_not_configured","message":"kubenova_postgres is not configured"}}
--- no_error_log
[alert]
[emerg]



=== TEST 7: handlers are not inherited by nested locations
--- config
    location /api/ {
        kubenova_api;
        location /api/static/ { return 200 "plain\n"; }
    }
--- request
GET /api/static/x
--- error_code: 200
--- response_body
plain



=== TEST 8: a bad pool size stops nginx from starting
--- http_config
    kubenova_postgres "host=127.0.0.1 dbname=kubenova" pool=0;
--- config
    location = /readyz { kubenova_readyz; }
--- must_die
--- error_log
invalid pool size "pool=0", expected 1 to 1024



=== TEST 9: an unknown kubenova_postgres parameter stops nginx
--- http_config
    kubenova_postgres "host=127.0.0.1 dbname=kubenova" pool=2 color=blue;
--- config
    location = /readyz { kubenova_readyz; }
--- must_die
--- error_log
unknown parameter "color=blue"



=== TEST 10: a malformed conninfo stops nginx with libpq's reason
--- http_config
    kubenova_postgres "host=127.0.0.1 nosuchoption=1";
--- config
    location = /readyz { kubenova_readyz; }
--- must_die
--- error_log
invalid PostgreSQL conninfo
