# /metrics in Prometheus text format.
use Test::Nginx::Socket 'no_plan';

repeat_each(2);
no_shuffle();
run_tests();

__DATA__

=== TEST 1: every family is present with HELP and TYPE
--- http_config
    kubenova_postgres "$TEST_NGINX_PG_CONNINFO" pool=3;
--- config
    location = /metrics { kubenova_metrics; }
--- request
GET /metrics
--- error_code: 200
--- response_headers
Content-Type: text/plain; version=0.0.4; charset=utf-8
--- response_body_like eval
qr/\Q# TYPE kubenova_http_requests_total counter\E\n.*\Q# TYPE kubenova_pg_queue_rejections_total counter\E\nkubenova_pg_queue_rejections_total 0\n.*\Q# TYPE kubenova_pg_reconnects_total counter\E\nkubenova_pg_reconnects_total 0\n.*\Q# TYPE kubenova_pg_pool_connections gauge\E\n\Qkubenova_pg_pool_connections{state="busy"} 0\E\n.*\Qkubenova_pg_pool_connections{state="down"} 0\E\n.*\Q# TYPE kubenova_pg_queued_requests gauge\E\nkubenova_pg_queued_requests 0\n.*kubenova_workers 1\n\z/s
--- no_error_log
[alert]
[emerg]



=== TEST 2: the pool's connections are counted
--- http_config
    kubenova_postgres "$TEST_NGINX_PG_CONNINFO" pool=3;
--- config
    location = /metrics { kubenova_metrics; }
--- request
GET /metrics
--- error_code: 200
--- response_body_like: kubenova_pg_pool_connections\{state="(?:idle|connecting)"\} [1-3]
