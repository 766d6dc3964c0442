# Tests of the Test::Nginx::Socket runner itself (t/lib), using only stock
# nginx directives. Must also pass under openresty's real Test::Nginx.

use Test::Nginx::Socket;

repeat_each(2);

# Assertions per block (in the titles), counted the way Test::Nginx counts them (one for the
# status code of every request unless ignore_response, one per header line,
# one for the body, one per error_log/no_error_log pattern per request, one
# per must_die run); all multiplied by repeat_each.
plan tests => repeat_each() * 65;

env_to_nginx('KN_RUNNER_ENV=hello');

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value('request', "GET /t\n") unless defined $block->request
                                                   || defined $block->pipelined_requests;
});

run_tests();

__DATA__

=== TEST 1: plain body (3)
--- config
    location = /t {
        return 200 "hello\n";
    }
--- request
GET /t
--- response_body
hello
--- no_error_log
[error]



=== TEST 2: response_body_like, default request from the preprocessor (2)
--- config
    location = /t {
        return 200 "hello, world 42\n";
    }
--- response_body_like: ^hello, world \d+$



=== TEST 3: error_code and response_body eval (2)
--- config
    location = /t {
        return 404 "nope\n";
    }
--- error_code: 404
--- response_body eval
"nope\n"



=== TEST 4: response_headers, including absence (6)
--- config
    location = /t {
        add_header X-Foo bar;
        return 200 "hi";
    }
--- response_headers
X-Foo: bar
Content-Type: text/plain
Content-Length: 2
!X-Absent
--- response_body chomp
hi



=== TEST 5: more_headers echoed back, comment lines before the request (2)
--- config
    location = /t {
        return 200 "foo=$http_x_foo bar=$http_x_bar\n";
    }
--- more_headers
X-Foo: hello
X-Bar: world
--- request
    # a comment before the request line
    GET /t
--- response_body
foo=hello bar=world



=== TEST 6: request eval with two requests, array expectations (6)
--- config
    location /t {
        return 200 "uri=$uri\n";
    }
--- request eval
["GET /t/a", "GET /t/b"]
--- error_code eval
[200, 200]
--- response_body eval
["uri=/t/a\n", "uri=/t/b\n"]
--- no_error_log
[error]



=== TEST 7: pipelined requests on one keep-alive connection (4)
--- config
    location /t {
        return 200 "uri=$uri conn=$http_connection\n";
    }
--- pipelined_requests eval
["GET /t/1", "GET /t/2"]
--- response_body eval
["uri=/t/1 conn=keep-alive\n", "uri=/t/2 conn=close\n"]



=== TEST 8: POST body gets a Content-Length, body is trimmed (2)
--- config
    location = /t {
        return 200 "len=$content_length method=$request_method\n";
    }
--- request
POST /t
hello world

--- response_body
len=11 method=POST



=== TEST 9: request split into packets with a delay (2)
--- config
    location = /t {
        return 200 "len=$content_length\n";
    }
--- request eval
[["POST /t\nhel", {value => "lo", delay_before => 0.1}]]
--- response_body
len=5



=== TEST 10: error_log and no_error_log, plain and eval (6)
--- config
    location /missing/ {
        root html;
    }
--- request
GET /missing/file.html
--- error_code: 404
--- response_body_like: 404 Not Found
--- error_log eval
[qr/open\(\) "\S+missing\/file.html" failed/, "No such file or directory"]
--- no_error_log eval
[qr/\[(?:alert|crit|emerg)\]/, "[warn]"]



=== TEST 11: http_config and $TEST_NGINX_* expansion (2)
--- http_config
    map $uri $mapped {
        default "mapped-ok";
    }
--- config
    location = /t {
        return 200 "$mapped port=$TEST_NGINX_SERVER_PORT\n";
    }
--- response_body
mapped-ok port=$TEST_NGINX_SERVER_PORT



=== TEST 12: main_config goes to the main context (2)
--- main_config
    env KN_MAIN_CONFIG=yes;
    worker_rlimit_nofile 1024;
--- config
    location = /t {
        return 200 "main ok\n";
    }
--- response_body
main ok



=== TEST 13: http-only directive in main_config makes nginx die (3)
--- main_config
    keepalive_timeout 5s;
--- config
    location = /t {
        return 200 "never\n";
    }
--- must_die
--- suppress_stderr
--- error_log
"keepalive_timeout" directive is not allowed here
[emerg]



=== TEST 14: abort + timeout: nginx waits for a body that never comes (1)
--- config
    location = /t {
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/never;
    }
--- more_headers
Content-Length: 100
--- request
POST /t
short
--- timeout: 300ms
--- abort
--- ignore_response
--- error_log
client prematurely closed connection



=== TEST 15: chunked response decoded (4)
--- config
    location = /t {
        sub_filter 'a' 'o';
        sub_filter_once off;
        sub_filter_types text/plain;
        return 200 "banana\n";
    }
--- response_headers
Transfer-Encoding: chunked
!Content-Length
--- response_body
bonono



=== TEST 16: init and user_files (4)
--- init
open my $fh, '>', html_dir() . '/init.txt' or die $!;
print $fh "written by init\n";
close $fh;
--- user_files
>>> sub/user.txt
a user file
--- config
    location = /t {
        return 200 "unused\n";
    }
--- request eval
["GET /init.txt", "GET /sub/user.txt"]
--- response_body eval
["written by init\n", "a user file\n"]



=== TEST 17: response_headers_like, raw_response_headers_like, error_code_like (4)
--- config
    location = /t {
        return 201 "created\n";
    }
--- error_code_like: ^20[01]$
--- response_headers_like
Content-Length: \d+
Server: nginx.*
--- raw_response_headers_like: ^HTTP/1\.1 201 Created\r\n



=== TEST 18: per-block log_level and server_name (4)
--- log_level: warn
--- server_name: kn.example
--- config
    location = /t {
        return 200 "$server_name\n";
    }
--- response_body
kn.example
--- no_error_log
[debug]
[info]



=== TEST 19: skip_eval counts the skipped assertions (2)
--- config
    location = /t {
        return 500;
    }
--- skip_eval: 2: 1
--- response_body
never checked



=== TEST 20: response_body_filters (2)
--- config
    location = /t {
        return 200 "shout\n";
    }
--- response_body_filters
uc
--- response_body
SHOUT



=== TEST 21: HEAD request, 204 (1)
--- config
    location = /t {
        return 204;
    }
--- request
HEAD /t
--- error_code: 204



=== TEST 22: block without response checks still checks the status (1)
--- config
    location = /t {
        return 200 "x";
    }
