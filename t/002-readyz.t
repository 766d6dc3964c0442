# /readyz: one PostgreSQL round trip through the worker's pool.
use Test::Nginx::Socket 'no_plan';

no_shuffle();
run_tests();

__DATA__

=== TEST 1: ready when the database answers and the schema is migrated
--- http_config
    kubenova_postgres "$TEST_NGINX_PG_CONNINFO" pool=2;
--- config
    location = /readyz { kubenova_readyz; }
--- request
GET /readyz
--- error_code: 200
--- response_headers
Content-Type: application/json
--- response_body_like: ^\{"status":"ready","database":"ok","schema_version":[1-9]\d*\}$
--- no_error_log
[error]
[alert]
[emerg]



=== TEST 2: 503 with a JSON error when nothing listens on the database port
--- http_config
    kubenova_postgres "host=127.0.0.1 port=1 dbname=kubenova user=postgres" pool=2;
--- config
    location = /readyz { kubenova_readyz; }
--- request
GET /readyz
--- error_code: 503
--- response_body
{"error":{"status":503,"code":"database_unavailable","message":"the database is unavailable"}}
--- error_log
kubenova: postgres connection #0 failed
--- no_error_log
[alert]
[emerg]



=== TEST 3: 503 schema_missing on a database that was never migrated
--- http_config
    kubenova_postgres "host=127.0.0.1 port=$TEST_NGINX_PG_PORT dbname=postgres user=postgres" pool=1;
--- config
    location = /readyz { kubenova_readyz; }
--- request
GET /readyz
--- error_code: 503
--- response_body
{"error":{"status":503,"code":"schema_missing","message":"the database schema is not migrated"}}
--- error_log
kubenova: readiness query failed
--- no_error_log
[alert]
[emerg]



=== TEST 4: a host name is resolved at configuration time
--- http_config
    kubenova_postgres "host=localhost port=$TEST_NGINX_PG_PORT dbname=kubenova user=postgres" pool=1;
--- config
    location = /readyz { kubenova_readyz; }
--- request
GET /readyz
--- error_code: 200
--- response_body_like: "status":"ready"



=== TEST 5: a URI conninfo works too
--- http_config
    kubenova_postgres "postgresql://postgres@127.0.0.1:$TEST_NGINX_PG_PORT/kubenova" pool=1;
--- config
    location = /readyz { kubenova_readyz; }
--- request
GET /readyz
--- error_code: 200
--- response_body_like: "status":"ready"



=== TEST 6: readyz refuses POST
--- http_config
    kubenova_postgres "$TEST_NGINX_PG_CONNINFO" pool=1;
--- config
    location = /readyz { kubenova_readyz; }
--- request
POST /readyz
--- error_code: 405
--- response_body_like: "code":"method_not_allowed"
