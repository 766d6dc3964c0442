# The bad-input catalogue of the REST API, on every write endpoint: bodies
# that are not JSON (or YAML), not objects, of the wrong types, with missing
# or unknown fields, too large, of the wrong Content-Type, with names that
# are not RFC 1123 labels.  Nothing here may be accepted, and nothing may
# make nginx log an [alert] or [emerg].
#
# Every block runs with the same http_config/config (added below) and its
# answer body is reduced by summary() to
#
#     <error.status> <error.code>
#     <field>: <message>          one line per error.details entry, sorted
#
# so that "--- response_body" states the status, the code and every field
# the API must name.  A body that does not have the documented error shape
# turns into a line starting with "BAD SHAPE".
#
# @main::WRITE is every route of ngx_kubenova_api.c's table that takes a
# body, read from the C file (so a new write route is in the catalogue at
# once); blocks with one request per write endpoint are built from it.
use Test::Nginx::Socket 'no_plan';

use JSON::PP ();
use KubeNova::Pg qw(psql);

repeat_each(2);
workers(2);
master_on();
no_shuffle();

# the routes of the C table that take a body: [method, pattern, body type]
sub c_write_routes {
    open my $fh, '<', 'ngx_kubenova_api.c' or die "ngx_kubenova_api.c: $!";
    my $src = do { local $/; <$fh> };
    my ($table) = $src =~ /ngx_kubenova_routes\[\]\s*=\s*\{(.*?)\n\};/s
        or die "no route table in ngx_kubenova_api.c";
    my @routes;
    while ($table =~ /\{\s*(GET|POST|PUT|PATCH|DELETE)\s*,\s*"([^"]*)"\s*,
                      \s*"[^"]*"\s*,\s*(\w+)/gx) {
        push @routes, [$1, $2, $3] unless $3 eq 'NONE';
    }
    return @routes;
}

# the objects the paths name (PUT and PATCH must find something)
our %PARAM = (plan => 't32-plan', tenant => 't32-a', user => 't32-u',
              cluster => 't32-c', app => 'web');

our @WRITE = map {
    my ($method, $pattern, $type) = @$_;
    (my $path = $pattern) =~ s{:(\w+)}{
        $PARAM{$1} // die "no fixture for :$1 in $pattern\n"
    }ge;
    [$method, $path, $type];
} c_write_routes();

cmp_ok scalar @WRITE, '>=', 17, scalar(@WRITE) . ' write routes in ngx_kubenova_api.c';
cmp_ok scalar(grep { $_->[2] eq 'DOC' } @WRITE), '>=', 3, 'three or more of them take YAML';

if ($ENV{TEST_NGINX_PG_CONNINFO}) {
    psql(<<'SQL');
INSERT INTO plans (name, cpu, cpu_millicores, memory, memory_bytes, storage,
                   storage_bytes, pods, price_monthly)
VALUES ('t32-plan', '1', 1000, '1Gi', 1073741824, '1Gi', 1073741824, 10, 100)
ON CONFLICT DO NOTHING;
INSERT INTO clusters (name) VALUES ('t32-c') ON CONFLICT DO NOTHING;
INSERT INTO tenants (name, plan) VALUES ('t32-a', 'small') ON CONFLICT DO NOTHING;
INSERT INTO users (name, tenant, role) VALUES ('t32-u', 't32-a', 'owner')
ON CONFLICT DO NOTHING;
INSERT INTO applications (tenant, name, document)
VALUES ('t32-a', 'web', '{"apiVersion": "core.oam.dev/v1beta1",
        "kind": "Application", "metadata": {"name": "web"}}')
ON CONFLICT DO NOTHING;
SQL
}

our $JSON = JSON::PP->new->canonical;

sub summary {
    my ($body) = @_;
    my $j = eval { $JSON->decode($body) };
    return "BAD SHAPE (not JSON): $body" unless ref $j eq 'HASH';
    my $e = $j->{error};
    return "BAD SHAPE (no error object): $body" unless ref $e eq 'HASH';
    my @extra = grep { !/^(?:status|code|message|details)$/ } keys %$e;
    return "BAD SHAPE (members @extra): $body" if @extra || keys %$j != 1;
    return "BAD SHAPE (message): $body"
        unless defined $e->{message} && !ref $e->{message} && length $e->{message};
    my $out = "$e->{status} $e->{code}\n";
    if (exists $e->{details}) {
        return "BAD SHAPE (details): $body" unless ref $e->{details} eq 'ARRAY';
        $out .= join '', sort map { "$_->{field}: $_->{message}\n" } @{ $e->{details} };
    }
    return $out;
}

# one request (line and body) per write endpoint, optionally filtered
sub each_write {
    my ($body, $filter) = @_;
    return [map { "$_->[0] /api/v1/$_->[1]\n" . (ref $body ? $body->($_) : $body) }
            grep { !$filter || $filter->($_) } @WRITE];
}

sub n_writes {
    my ($filter) = @_;
    return scalar grep { !$filter || $filter->($_) } @WRITE;
}

sub headers {
    my ($type) = @_;
    return "Authorization: Bearer $ENV{TEST_NGINX_ADMIN_TOKEN}"
         . (defined $type ? "\nContent-Type: $type" : '');
}

add_block_preprocessor(sub {
    my ($block) = @_;
    $block->set_value(http_config => <<'_EOC_') unless defined $block->http_config;
    kubenova_postgres "$TEST_NGINX_PG_CONNINFO" pool=4;
    kubenova_admin_token_file $TEST_NGINX_ADMIN_TOKEN_FILE;
_EOC_
    $block->set_value(config => <<'_EOC_') unless defined $block->config;
    location /api/ {
        kubenova_api;
        kubenova_signup on;
        kubenova_api_max_body 4k;
    }
_EOC_
    $block->set_value(response_body_filters => \&main::summary)
        unless defined $block->response_body_filters;
});

run_tests();

__DATA__

=== TEST 1: malformed JSON on every write endpoint: 400 invalid_json
--- request eval
main::each_write(qq/{"name": "t32-x", "labels": {/)
--- more_headers eval
[map { main::headers('application/json') } @main::WRITE]
--- error_code eval
[(400) x @main::WRITE]
--- response_body eval
[("400 invalid_json\n") x @main::WRITE]
--- no_error_log
[alert]
[emerg]



=== TEST 2: more malformed JSON: trailing garbage, duplicate keys, bad escapes, NUL
--- request eval
["POST /api/v1/clusters\n{\"name\": \"t32-x\"} x",
 "POST /api/v1/clusters\n{\"name\": \"t32-x\", \"name\": \"t32-y\"}",
 "POST /api/v1/clusters\n{\"name\": \"t32-\\x\"}",
 "POST /api/v1/clusters\n{\"name\": \"t32-\x{00}\"}",
 "POST /api/v1/clusters\n{'name': 't32-x'}",
 "POST /api/v1/clusters\n\xff\xfe{}"]
--- more_headers eval
[(main::headers('application/json')) x 6]
--- error_code eval
[(400) x 6]
--- response_body eval
[("400 invalid_json\n") x 6]
--- no_error_log
[alert]
[emerg]



=== TEST 3: JSON that is not an object, on every write endpoint: 422
--- request eval
main::each_write('[{"name": "t32-x"}]')
--- more_headers eval
[map { main::headers('application/json') } @main::WRITE]
--- error_code eval
[(422) x @main::WRITE]
--- response_body eval
[("422 invalid_field\n: must be an object\n") x @main::WRITE]
--- no_error_log
[alert]
[emerg]



=== TEST 4: strings, numbers and null are not objects either
--- request eval
["POST /api/v1/tenants\n\"t32-x\"",
 "PUT /api/v1/clusters/t32-c\n42",
 "PATCH /api/v1/plans/t32-plan\ntrue",
 "POST /api/v1/signup\nnull"]
--- more_headers eval
[(main::headers('application/json')) x 4]
--- error_code eval
[(422) x 4]
--- response_body eval
["422 invalid_field\n: must be an object\n",
 "422 invalid_field\n: must be an object\n",
 "422 invalid_field\n: must be an object\n",
 "422 invalid_field\n: required\n"]
--- no_error_log
[alert]
[emerg]



=== TEST 5: no body at all, on every write endpoint: 422 required
--- request eval
main::each_write('')
--- more_headers eval
[map { main::headers(undef) } @main::WRITE]
--- error_code eval
[(422) x @main::WRITE]
--- response_body eval
[("422 invalid_field\n: required\n") x @main::WRITE]
--- no_error_log
[alert]
[emerg]



=== TEST 6: plans: wrong types, each field named
--- request eval
["POST /api/v1/plans\n" . '{"name": 5, "cpu": true, "memory": [], "storage": {},
  "pods": "many", "load_balancers": 1.5, "gpus": -1, "price_monthly": "10",
  "currency": 3, "default": "yes"}',
 "PUT /api/v1/plans/t32-plan\n" . '{"cpu": "1", "memory": "lots", "storage": "1Gi",
  "pods": 1e99, "price_monthly": 1, "currency": "eur"}',
 "PATCH /api/v1/plans/t32-plan\n" . '{"cpu": -1, "pods": null, "gpus": "2"}']
--- more_headers eval
[(main::headers('application/json')) x 3]
--- error_code eval
[422, 422, 422]
--- response_body eval
["422 invalid_field
cpu: must be a non-negative quantity such as \"500m\", \"2\", \"512Mi\" or \"10Gi\"
currency: must be a string
default: must be a boolean
gpus: must be at least 0
load_balancers: must be an integer
memory: must be a non-negative quantity such as \"500m\", \"2\", \"512Mi\" or \"10Gi\"
name: must be a string
pods: must be an integer
price_monthly: must be an integer
storage: must be a non-negative quantity such as \"500m\", \"2\", \"512Mi\" or \"10Gi\"
",
"422 invalid_field
currency: must be three uppercase letters (ISO 4217)
memory: must be a non-negative quantity such as \"500m\", \"2\", \"512Mi\" or \"10Gi\"
pods: must be at most 2147483647
",
"422 invalid_field
cpu: must be a non-negative quantity such as \"500m\", \"2\", \"512Mi\" or \"10Gi\"
gpus: must be an integer
pods: required
"]
--- no_error_log
[alert]
[emerg]



=== TEST 7: plans: missing and unknown fields
--- request eval
["POST /api/v1/plans\n" . '{"colour": "red"}',
 "PUT /api/v1/plans/t32-plan\n" . '{"name": "t32-plan"}',
 "PATCH /api/v1/plans/t32-plan\n" . '{"colour": "red", "size": {"x": 1}}']
--- more_headers eval
[(main::headers('application/json')) x 3]
--- error_code eval
[422, 422, 422]
--- response_body eval
["422 invalid_field
colour: unknown field
cpu: required
memory: required
name: required
pods: required
price_monthly: required
storage: required
",
"422 invalid_field
cpu: required
memory: required
pods: required
price_monthly: required
storage: required
",
"422 invalid_field
colour: unknown field
size: unknown field
"]
--- no_error_log
[alert]
[emerg]



=== TEST 8: tenants: wrong types, each field named
--- request eval
["POST /api/v1/tenants\n" . '{"name": 7, "plan": 1, "quota_overrides": [],
  "labels": "x", "placement": 5, "suspended": "no",
  "ingress_hostnames": "t32.example.com"}',
 "PUT /api/v1/tenants/t32-a\n" . '{"quota_overrides": {"pods": "x", "cpu": "lots"},
  "labels": {"team": 1}, "placement": {"clusters": "t32-c", "cluster_selector": []},
  "ingress_hostnames": [1]}',
 "PATCH /api/v1/tenants/t32-a\n" . '{"plan": "t32-nosuch",
  "placement": {"clusters": [1, "t32-nosuch", "t32-c", "t32-c"]}}']
--- more_headers eval
[(main::headers('application/json')) x 3]
--- error_code eval
[422, 422, 422]
--- response_body eval
["422 invalid_field
ingress_hostnames: must be an array of host names
labels: must be an object of label keys to string values
name: must be a string
placement: must be an object
plan: must be a string
quota_overrides: must be an object
suspended: must be a boolean
",
"422 invalid_field
ingress_hostnames[0]: must be a string
labels.team: must be a string
placement.cluster_selector: must be an object of label keys to string values
placement.clusters: must be an array of cluster names
quota_overrides.cpu: must be a non-negative quantity such as \"500m\", \"2\", \"512Mi\" or \"10Gi\"
quota_overrides.pods: must be an integer
",
"422 invalid_field
placement.clusters[0]: must be a string
placement.clusters[1]: unknown cluster
placement.clusters[3]: duplicate
plan: unknown plan
"]
--- no_error_log
[alert]
[emerg]



=== TEST 9: tenants: missing and unknown fields
--- request eval
["POST /api/v1/tenants\n" . '{"colour": "red"}',
 "PUT /api/v1/tenants/t32-a\n" . '{"colour": "red", "quota_overrides": {"disks": 2}}',
 "PATCH /api/v1/tenants/t32-a\n" . '{"placement": {"zone": "x"}}']
--- more_headers eval
[(main::headers('application/json')) x 3]
--- error_code eval
[422, 422, 422]
--- response_body eval
["422 invalid_field
colour: unknown field
name: required
",
"422 invalid_field
colour: unknown field
quota_overrides.disks: unknown field
",
"422 invalid_field
placement.zone: unknown field
"]
--- no_error_log
[alert]
[emerg]



=== TEST 10: users and admins: wrong types, missing and unknown fields
--- request eval
["POST /api/v1/tenants/t32-a/users\n" . '{"name": 1, "role": 2}',
 "POST /api/v1/tenants/t32-a/users\n" . '{"nick": "x"}',
 "PATCH /api/v1/tenants/t32-a/users/t32-u\n" . '{"role": true, "nick": "x"}',
 "PATCH /api/v1/tenants/t32-a/users/t32-u\n" . '{"role": "admin", "tenant": "t32-b"}',
 "POST /api/v1/admins\n" . '{"name": [], "role": "owner", "tenant": "t32-a"}',
 "POST /api/v1/admins\n" . '{"nick": "x"}']
--- more_headers eval
[(main::headers('application/json')) x 6]
--- error_code eval
[(422) x 6]
--- response_body eval
["422 invalid_field
name: must be a string
role: must be one of: owner, readonly
",
"422 invalid_field
name: required
nick: unknown field
role: required
",
"422 invalid_field
nick: unknown field
role: must be one of: owner, readonly
",
"422 invalid_field
role: must be one of: owner, readonly
tenant: must match the tenant in the path
",
"422 invalid_field
name: must be a string
role: must be one of: admin
tenant: admins belong to no tenant
",
"422 invalid_field
name: required
nick: unknown field
"]
--- no_error_log
[alert]
[emerg]



=== TEST 11: tokens: wrong types, missing and unknown fields, past expiry
--- request eval
["POST /api/v1/users/t32-u/tokens\n" . '{"name": 5, "expires_at": 12}',
 "POST /api/v1/users/t32-u/tokens\n" . '{"secret": "x"}',
 "POST /api/v1/users/t32-u/tokens\n" . '{"name": "ci", "expires_at": "2001-01-01T00:00:00Z"}',
 "POST /api/v1/users/t32-u/tokens\n" . '{"name": "ci", "expires_at": "tomorrow"}',
 "POST /api/v1/users/t32-u/tokens\n" . '{"name": "ci", "expires_at": "2030-02-30T00:00:00Z"}']
--- more_headers eval
[(main::headers('application/json')) x 5]
--- error_code eval
[(422) x 5]
--- response_body eval
["422 invalid_field
expires_at: must be an RFC 3339 timestamp such as \"2030-01-31T12:00:00Z\"
name: must be a string
",
"422 invalid_field
name: required
secret: unknown field
",
"422 invalid_field
expires_at: must be in the future
",
"422 invalid_field
expires_at: must be an RFC 3339 timestamp such as \"2030-01-31T12:00:00Z\"
",
"422 invalid_field
expires_at: must be an RFC 3339 timestamp such as \"2030-01-31T12:00:00Z\"
"]
--- no_error_log
[alert]
[emerg]



=== TEST 12: clusters: wrong types, bad labels, missing and unknown fields
--- request eval
["POST /api/v1/clusters\n" . '{"name": {}, "labels": []}',
 "PUT /api/v1/clusters/t32-c\n" . '{"labels": {"k": 5, "bad key": "v", "ok": "not ok!",
  "example.com/x": "y", "-x.example.com/y": "z"}}',
 "PATCH /api/v1/clusters/t32-c\n" . '{"region": "eu"}',
 "POST /api/v1/clusters\n" . '{"region": "eu"}']
--- more_headers eval
[(main::headers('application/json')) x 4]
--- error_code eval
[(422) x 4]
--- response_body eval
["422 invalid_field
labels: must be an object of label keys to string values
name: must be a string
",
"422 invalid_field
labels.k: must be a string
labels.ok: invalid label value: at most 63 characters that must consist of letters, digits, \"-\", \"_\" and \".\", and start and end with a letter or digit
labels[\"-x.example.com/y\"]: invalid label key: the prefix must be a lowercase DNS name
labels[\"bad key\"]: invalid label key: the name (at most 63 characters) must consist of letters, digits, \"-\", \"_\" and \".\", and start and end with a letter or digit
",
"422 invalid_field
region: unknown field
",
"422 invalid_field
name: required
region: unknown field
"]
--- no_error_log
[alert]
[emerg]



=== TEST 13: applications: wrong types, missing fields (JSON)
--- request eval
["POST /api/v1/tenants/t32-a/apps\n" . '{"apiVersion": 1, "kind": [], "metadata": "x"}',
 "PUT /api/v1/tenants/t32-a/apps/web\n" . '{"spec": {}}',
 "POST /api/v1/users/t32-a/apps\n" . '{"apiVersion": "core.oam.dev/v1beta1",
  "kind": "Application", "metadata": {"name": 5}}',
 "PUT /api/v1/tenants/t32-a/apps/web\n" . '{"apiVersion": "core.oam.dev/v1beta1",
  "kind": "Application", "metadata": {"name": "api"}}']
--- more_headers eval
[(main::headers('application/json')) x 4]
--- error_code eval
[(422) x 4]
--- response_body eval
["422 invalid_field
apiVersion: must be \"core.oam.dev/v1beta1\"
kind: must be \"Application\"
metadata: must be an object
",
"422 invalid_field
apiVersion: required
kind: required
metadata.name: required
",
"422 invalid_field
metadata.name: must be a string
",
"422 invalid_field
metadata.name: must match the name in the path
"]
--- no_error_log
[alert]
[emerg]



=== TEST 14: signup: wrong types, missing and unknown fields
--- request eval
["POST /api/v1/signup\n" . '{"tenant": 5, "user": true}',
 "POST /api/v1/signup\n" . '{"team": "x"}']
--- more_headers eval
["Content-Type: application/json", "Content-Type: application/json"]
--- error_code eval
[422, 422]
--- response_body eval
["422 invalid_field
tenant: must be a string
user: must be a string
",
"422 invalid_field
team: unknown field
tenant: required
user: required
"]
--- no_error_log
[alert]
[emerg]



=== TEST 15: names that are not RFC 1123 labels: 422 on the name
--- request eval
["POST /api/v1/plans\n" . '{"name": "Bad_Name", "cpu": "1", "memory": "1Gi",
  "storage": "1Gi", "pods": 1, "price_monthly": 1}',
 "PUT /api/v1/plans/Bad_Name\n" . '{"cpu": "1", "memory": "1Gi",
  "storage": "1Gi", "pods": 1, "price_monthly": 1}',
 "POST /api/v1/tenants\n" . '{"name": "-t32"}',
 "PUT /api/v1/tenants/T32-UPPER\n" . '{}',
 "POST /api/v1/tenants\n" . '{"name": "t32-' . ('x' x 54) . '"}',
 "POST /api/v1/clusters\n" . '{"name": "t32.c"}',
 "PUT /api/v1/clusters/t32-c-\n" . '{}',
 "POST /api/v1/clusters\n" . '{"name": "t32-' . ('c' x 60) . '"}',
 "POST /api/v1/users/t32-u/tokens\n" . '{"name": "My Token"}',
 "POST /api/v1/tenants/t32-a/apps\n" . '{"apiVersion": "core.oam.dev/v1beta1",
  "kind": "Application", "metadata": {"name": "Web_App"}}',
 "PUT /api/v1/tenants/t32-a/apps/web.app\n" . '{"apiVersion": "core.oam.dev/v1beta1",
  "kind": "Application", "metadata": {"name": "web.app"}}',
 "POST /api/v1/tenants/t32-a/users\n" . '{"name": "Bob Smith", "role": "owner"}',
 "POST /api/v1/admins\n" . '{"name": "-root"}',
 "POST /api/v1/signup\n" . '{"tenant": "T32", "user": "t32 x"}',
 "POST /api/v1/signup\n" . '{"tenant": "", "user": ""}']
--- more_headers eval
[(main::headers('application/json')) x 15]
--- error_code eval
[(422) x 15]
--- response_body eval
my $label = 'must consist of lowercase letters, digits and "-", and start and end with a letter or digit';
my $user = 'must consist of lowercase letters, digits, ".", "_", "@" and "-", and start and end with a letter or digit';
["422 invalid_field\nname: $label\n",
 "422 invalid_field\nname: $label\n",
 "422 invalid_field\nname: $label\n",
 "422 invalid_field\nname: $label\n",
 "422 invalid_field\nname: must be at most 57 characters\n",
 "422 invalid_field\nname: $label\n",
 "422 invalid_field\nname: $label\n",
 "422 invalid_field\nname: must be at most 63 characters\n",
 "422 invalid_field\nname: $label\n",
 "422 invalid_field\nmetadata.name: $label\n",
 "422 invalid_field\nmetadata.name: $label\n",
 "422 invalid_field\nname: $user\n",
 "422 invalid_field\nname: $user\n",
 "422 invalid_field\ntenant: $label\nuser: $user\n",
 "422 invalid_field\ntenant: $label\nuser: $user\n"]
--- no_error_log
[alert]
[emerg]



=== TEST 16: bodies over kubenova_api_max_body (4k), on every write endpoint: 413
--- request eval
main::each_write('{"name": "' . ('x' x 5000) . '"}')
--- more_headers eval
[map { main::headers($_->[2] eq 'DOC' ? 'application/yaml' : 'application/json') } @main::WRITE]
--- error_code eval
[(413) x @main::WRITE]
--- response_body eval
[("413 payload_too_large\n") x @main::WRITE]
--- no_error_log
[alert]
[emerg]



=== TEST 17: exactly kubenova_api_max_body is fine, one byte more is not
--- request eval
my $pad = sub { my ($n) = @_; my $b = '{"name": "t32-x", "pad": "'; $b . ('x' x ($n - length($b) - 2)) . '"}' };
["POST /api/v1/clusters\n" . $pad->(4096), "POST /api/v1/clusters\n" . $pad->(4097)]
--- more_headers eval
[(main::headers('application/json')) x 2]
--- error_code eval
[422, 413]
--- response_body eval
["422 invalid_field\npad: unknown field\n", "413 payload_too_large\n"]
--- no_error_log
[alert]
[emerg]



=== TEST 18: a chunked body over kubenova_api_max_body: 413 after reading it
--- raw_request eval
my $body = '{"name": "t32-' . ('x' x 5000) . '"}';
"POST /api/v1/clusters HTTP/1.1\r
Host: localhost\r
Connection: close\r
Authorization: Bearer $ENV{TEST_NGINX_ADMIN_TOKEN}\r
Content-Type: application/json\r
Transfer-Encoding: chunked\r
\r
" . sprintf("%x\r\n%s\r\n", 1000, substr($body, 0, 1000))
  . sprintf("%x\r\n%s\r\n", length($body) - 1000, substr($body, 1000))
  . "0\r\n\r\n"
--- error_code: 413
--- response_body
413 payload_too_large
--- no_error_log
[alert]
[emerg]



=== TEST 19: a chunked body within the limit is read like any other
--- raw_request eval
my $body = '{"name": "t32-x", "colour": "red"}';
"POST /api/v1/clusters HTTP/1.1\r
Host: localhost\r
Connection: close\r
Authorization: Bearer $ENV{TEST_NGINX_ADMIN_TOKEN}\r
Content-Type: application/json\r
Transfer-Encoding: chunked\r
\r
" . sprintf("%x\r\n%s\r\n", 10, substr($body, 0, 10))
  . sprintf("%x\r\n%s\r\n", length($body) - 10, substr($body, 10))
  . "0\r\n\r\n"
--- error_code: 422
--- response_body
422 invalid_field
colour: unknown field
--- no_error_log
[alert]
[emerg]



=== TEST 20: text/plain on every write endpoint: 415
--- request eval
main::each_write('{"name": "t32-x"}')
--- more_headers eval
[map { main::headers('text/plain') } @main::WRITE]
--- error_code eval
[(415) x @main::WRITE]
--- response_body eval
[("415 unsupported_media_type\n") x @main::WRITE]
--- no_error_log
[alert]
[emerg]



=== TEST 21: a body without Content-Type, on every write endpoint: 415
--- request eval
main::each_write('{"name": "t32-x"}')
--- more_headers eval
[map { main::headers(undef) } @main::WRITE]
--- error_code eval
[(415) x @main::WRITE]
--- response_body eval
[("415 unsupported_media_type\n") x @main::WRITE]
--- no_error_log
[alert]
[emerg]



=== TEST 22: YAML where only JSON is taken: 415
--- request eval
main::each_write("name: t32-x\n", sub { $_[0][2] ne 'DOC' })
--- more_headers eval
[map { main::headers('application/yaml') } 1 .. main::n_writes(sub { $_[0][2] ne 'DOC' })]
--- error_code eval
[(415) x main::n_writes(sub { $_[0][2] ne 'DOC' })]
--- response_body eval
[("415 unsupported_media_type\n") x main::n_writes(sub { $_[0][2] ne 'DOC' })]
--- no_error_log
[alert]
[emerg]



=== TEST 23: merge-patch+json is for PATCH only; look-alike types are refused
--- request eval
["POST /api/v1/clusters\n{\"name\": \"t32-x\"}",
 "PUT /api/v1/clusters/t32-c\n{}",
 "POST /api/v1/tenants/t32-a/apps\n{}",
 "POST /api/v1/clusters\n{}",
 "POST /api/v1/clusters\n{}",
 "PATCH /api/v1/clusters/t32-c\n{}",
 "POST /api/v1/tenants/t32-a/apps\n{}"]
--- more_headers eval
[main::headers('application/merge-patch+json'),
 main::headers('application/merge-patch+json'),
 main::headers('application/merge-patch+json'),
 main::headers('application/jsonx'),
 main::headers('json'),
 main::headers('application/yaml'),
 main::headers('application/xml')]
--- error_code eval
[(415) x 7]
--- response_body eval
[("415 unsupported_media_type\n") x 7]
--- no_error_log
[alert]
[emerg]



=== TEST 24: invalid YAML on every endpoint that takes YAML: 400 invalid_yaml
--- request eval
main::each_write("apiVersion: core.oam.dev/v1beta1\nmetadata: {name: web\n",
                 sub { $_[0][2] eq 'DOC' })
--- more_headers eval
[map { main::headers('application/yaml') } 1 .. main::n_writes(sub { $_[0][2] eq 'DOC' })]
--- error_code eval
[(400) x main::n_writes(sub { $_[0][2] eq 'DOC' })]
--- response_body eval
[("400 invalid_yaml\n") x main::n_writes(sub { $_[0][2] eq 'DOC' })]
--- no_error_log
[alert]
[emerg]



=== TEST 25: YAML the API refuses: duplicate keys, aliases, two documents, tabs
--- request eval
["POST /api/v1/tenants/t32-a/apps\nkind: Application\nkind: Other\n",
 "POST /api/v1/tenants/t32-a/apps\nmetadata: &m {name: web}\nspec: *m\n",
 "POST /api/v1/tenants/t32-a/apps\nkind: Application\n---\nkind: Application\n",
 "POST /api/v1/tenants/t32-a/apps\nkind:\n\t- Application\n"]
--- more_headers eval
[(main::headers('application/yaml')) x 4]
--- error_code eval
[(400) x 4]
--- response_body eval
[("400 invalid_yaml\n") x 4]
--- no_error_log
[alert]
[emerg]



=== TEST 26: YAML that parses but is not an acceptable document: 422
--- request eval
["POST /api/v1/tenants/t32-a/apps\n- apiVersion: core.oam.dev/v1beta1\n- kind: Application\n",
 "PUT /api/v1/tenants/t32-a/apps/web\nplain text\n",
 "POST /api/v1/users/t32-a/apps\napiVersion: core.oam.dev/v1\nkind: application\nmetadata:\n  name: 12\n"]
--- more_headers eval
[(main::headers('application/yaml')) x 3]
--- error_code eval
[(422) x 3]
--- response_body eval
["422 invalid_field\n: must be an object\n",
 "422 invalid_field\n: must be an object\n",
 "422 invalid_field
apiVersion: must be \"core.oam.dev/v1beta1\"
kind: must be \"Application\"
metadata.name: must be a string
"]
--- no_error_log
[alert]
[emerg]



=== TEST 27: tenants: cluster_resources names only what a tenant may be shown, once each
--- request eval
["POST /api/v1/tenants\n" . '{"name": "t32-cr", "cluster_resources": "storageclasses"}',
 "PATCH /api/v1/tenants/t32-a\n" . '{"cluster_resources": ["nodes", "storageclasses", 3,
  "secrets", "storageclasses", "StorageClasses"]}',
 "PUT /api/v1/tenants/t32-a\n" . '{"cluster_resources": {"storageclasses": true}}']
--- more_headers eval
[(main::headers('application/json')) x 3]
--- error_code eval
[422, 422, 422]
--- response_body eval
["422 invalid_field
cluster_resources: must be an array of resource names
",
"422 invalid_field
cluster_resources[0]: nodes are never shown to tenants
cluster_resources[2]: must be a string
cluster_resources[3]: must be one of storageclasses, ingressclasses, priorityclasses, runtimeclasses
cluster_resources[4]: duplicate
cluster_resources[5]: must be one of storageclasses, ingressclasses, priorityclasses, runtimeclasses
",
"422 invalid_field
cluster_resources: must be an array of resource names
"]
--- no_error_log
[alert]
[emerg]
