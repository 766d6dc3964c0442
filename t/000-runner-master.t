# Runner tests with a master process and two workers (settings are per
# file). Stock nginx directives only; also valid under the real Test::Nginx.

use Test::Nginx::Socket 'no_plan';

workers(2);
master_on();
no_shuffle();
worker_connections(128);

run_tests();

__DATA__

=== TEST 1: two workers are started by the master
--- config
    location = /t {
        return 200 "pid ok\n";
    }
--- request
GET /t
--- response_body
pid ok
--- grep_error_log eval
qr/start worker process(?= \d)/
--- grep_error_log_out
start worker process
start worker process



=== TEST 2: the master logs the worker start
--- config
    location = /t {
        return 200 "two\n";
    }
--- request
GET /t
--- response_body
two
--- error_log
start worker processes
--- no_error_log
[error]



=== TEST 3: a block without config reuses the running nginx
--- request
GET /t
--- response_body
two



=== TEST 4: graceful shutdown is logged at QUIT (checked at END, last block)
--- config
    location = /t {
        return 200 "bye\n";
    }
--- request
GET /t
--- response_body
bye
--- shutdown_error_log
gracefully shutting down
--- no_shutdown_error_log
[alert]
