# Two workers under a master process, each with its own pool.
use Test::Nginx::Socket 'no_plan';

workers(2);
master_on();
repeat_each(3);
no_shuffle();
run_tests();

__DATA__

=== TEST 1: readyz is served by either worker
--- http_config
    kubenova_postgres "$TEST_NGINX_PG_CONNINFO" pool=2;
--- config
    location = /readyz { kubenova_readyz; }
--- request
GET /readyz
--- error_code: 200
--- response_body_like: "status":"ready"
--- no_error_log
[alert]
[emerg]
