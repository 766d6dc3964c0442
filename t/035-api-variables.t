# $kubenova_principal, $kubenova_user and $kubenova_tenant: what limit_req,
# limit_conn and access logs key on.
use Test::Nginx::Socket 'no_plan';
use Digest::SHA qw(sha256_hex);

no_shuffle();
run_tests();

__DATA__

=== TEST 1: the principal of a bearer token is a prefix of its SHA-256
--- config
    location = /p { return 200 "$kubenova_principal\n"; }
--- request
GET /p
--- more_headers
Authorization: Bearer kn_some-token-value
--- response_body eval
"token:" . substr(Digest::SHA::sha256_hex("kn_some-token-value"), 0, 16) . "\n"



=== TEST 2: without a token the principal is the client address
--- config
    location = /p { return 200 "$kubenova_principal\n"; }
--- request
GET /p
--- response_body
anonymous:127.0.0.1



=== TEST 3: a malformed Authorization header does not name a token
--- config
    location = /p { return 200 "$kubenova_principal|$kubenova_user|$kubenova_tenant\n"; }
--- request
GET /p
--- more_headers
Authorization: Basic dXNlcjpwYXNz
--- response_body
anonymous:127.0.0.1||



=== TEST 4: user and tenant are known after the API authenticated the caller
--- http_config
    kubenova_postgres "$TEST_NGINX_PG_CONNINFO" pool=2;
    kubenova_admin_token_file $TEST_NGINX_ADMIN_TOKEN_FILE;
    log_format kn 'principal=$kubenova_principal user=$kubenova_user tenant=$kubenova_tenant';
--- config
    access_log logs/access.log kn;
    location /api/ { kubenova_api; }
--- request
GET /api/v1/whoami
--- more_headers eval
"Authorization: Bearer $ENV{TEST_NGINX_ADMIN_TOKEN}"
--- error_code: 200
--- access_log eval
qr/principal=token:[0-9a-f]{16} user=bootstrap-admin tenant=-/
--- no_error_log
[alert]
[emerg]



=== TEST 5: limit_req keyed on the principal throttles one token, not another
--- http_config
    limit_req_zone $kubenova_principal zone=per_principal:1m rate=1r/m;
--- config
    location = /limited {
        limit_req zone=per_principal nodelay;
        limit_req_status 429;
        kubenova_healthz;
    }
--- request eval
["GET /limited", "GET /limited", "GET /limited"]
--- more_headers eval
["Authorization: Bearer kn_first-token-aaaaaaaaaaaa",
 "Authorization: Bearer kn_first-token-aaaaaaaaaaaa",
 "Authorization: Bearer kn_second-token-bbbbbbbbbbb"]
--- error_code eval
[200, 429, 200]
