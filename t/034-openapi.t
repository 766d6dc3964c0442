# docs/openapi.yaml against the running API:
#
#   * every route of ngx_kubenova_api.c's table is documented, and every
#     documented path and method is served (not the generic
#     "no such API endpoint" 404, not 405);
#   * what the API answers (status and body) is what the document says, for
#     probes of every operation and for real objects;
#   * error answers, from nginx and from the database, have the documented
#     Error shape.
#
# Bodies are checked with a small validator for the part of JSON Schema
# (OpenAPI 3.0 flavour) the document uses.
use strict;
use warnings;

use Test::More;
use B ();
use YAML::XS ();

use KubeNova::Api qw(json_decode);
use KubeNova::Pg qw(require_pg);

require_pg();

my $doc = YAML::XS::LoadFile('docs/openapi.yaml');
is $doc->{openapi}, '3.0.3', 'OpenAPI 3.0.3';
is_deeply $doc->{components}{securitySchemes}{bearer},
    { type => 'http', scheme => 'bearer',
      description => $doc->{components}{securitySchemes}{bearer}{description} },
    'bearer security scheme';
is_deeply $doc->{security}, [{ bearer => [] }], 'bearer by default';

my @METHODS = qw(get put post delete patch);

# ---------------------------------------------------------------------------
# $ref resolution and a small validator

sub resolve {
    my ($ref) = @_;
    $ref =~ m{^#/(.*)$} or die "external \$ref $ref";
    my $node = $doc;
    for my $part (split m{/}, $1) {
        die "unresolvable \$ref $ref" unless ref $node eq 'HASH' && exists $node->{$part};
        $node = $node->{$part};
    }
    return $node;
}

sub deref {
    my ($node) = @_;
    $node = resolve($node->{'$ref'}) while ref $node eq 'HASH' && $node->{'$ref'};
    return $node;
}

sub json_type {
    my ($v) = @_;
    return 'null' unless defined $v;
    return 'boolean' if ref $v eq 'JSON::PP::Boolean';
    return 'object' if ref $v eq 'HASH';
    return 'array' if ref $v eq 'ARRAY';
    my $flags = B::svref_2object(\$v)->FLAGS;
    if ($flags & (B::SVp_IOK | B::SVp_NOK) && !($flags & B::SVp_POK)) {
        return $v == int $v ? 'integer' : 'number';
    }
    return 'string';
}

sub yaml_false { my ($v) = @_; defined $v && !ref $v && !$v }

# a list of problems ("path: what"), empty when $v fits $schema
sub validate {
    my ($v, $schema, $path) = @_;
    $path //= '$';
    $schema = deref($schema);
    my @err;
    my $t = json_type($v);

    if ($t eq 'null') {
        return () if $schema->{nullable};
        return ("$path: null not allowed") if $schema->{type} || $schema->{properties};
    }
    for my $sub (@{ $schema->{allOf} || [] }) {
        push @err, validate($v, $sub, $path);
    }
    if (my $one = $schema->{oneOf}) {
        my $n = grep { !validate($v, $_, $path) } @$one;
        push @err, "$path: matches $n of the oneOf schemas" if $n != 1;
    }
    if (my $want = $schema->{type}) {
        my $ok = $t eq $want || ($want eq 'number' && $t eq 'integer');
        return (@err, "$path: $t, expected $want") unless $ok;
    }
    if (my $enum = $schema->{enum}) {
        push @err, "$path: '$v' not in the enum"
            unless grep { defined $v && !ref $v && $_ eq $v } @$enum;
    }
    if ($t eq 'string') {
        push @err, "$path: longer than $schema->{maxLength}"
            if defined $schema->{maxLength} && length $v > $schema->{maxLength};
        push @err, "$path: shorter than $schema->{minLength}"
            if defined $schema->{minLength} && length $v < $schema->{minLength};
        push @err, "$path: '$v' does not match $schema->{pattern}"
            if defined $schema->{pattern} && $v !~ /$schema->{pattern}/;
        push @err, "$path: '$v' is not a date-time"
            if ($schema->{format} // '') eq 'date-time'
               && $v !~ /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)$/;
    }
    if ($t eq 'integer' || $t eq 'number') {
        push @err, "$path: $v < $schema->{minimum}"
            if defined $schema->{minimum} && $v < $schema->{minimum};
        push @err, "$path: $v > $schema->{maximum}"
            if defined $schema->{maximum} && $v > $schema->{maximum};
    }
    if ($t eq 'object') {
        for my $req (@{ $schema->{required} || [] }) {
            push @err, "$path: '$req' missing" unless exists $v->{$req};
        }
        my $props = $schema->{properties} || {};
        for my $k (sort keys %$v) {
            if ($props->{$k}) {
                push @err, validate($v->{$k}, $props->{$k}, "$path.$k");
            } elsif (yaml_false($schema->{additionalProperties})) {
                push @err, "$path: '$k' is not allowed";
            } elsif (ref $schema->{additionalProperties} eq 'HASH') {
                push @err, validate($v->{$k}, $schema->{additionalProperties}, "$path.$k");
            }
        }
    }
    if ($t eq 'array' && $schema->{items}) {
        for my $i (0 .. $#$v) {
            push @err, validate($v->[$i], $schema->{items}, "$path\[$i]");
        }
    }
    return @err;
}

# the validator itself must be able to say no
{
    my $err = $doc->{components}{schemas}{Error};
    my @bad = (
        ['no message', '{"error":{"status":404,"code":"not_found"}}'],
        ['extra member', '{"error":{"status":404,"code":"not_found","message":"x","hint":1}}'],
        ['status as a string', '{"error":{"status":"404","code":"not_found","message":"x"}}'],
        ['unknown code', '{"error":{"status":404,"code":"nope","message":"x"}}'],
        ['details not a list', '{"error":{"status":422,"code":"invalid_field","message":"x","details":{}}}'],
        ['detail without field', '{"error":{"status":422,"code":"invalid_field","message":"x","details":[{"message":"m"}]}}'],
        ['not wrapped', '{"status":404,"code":"not_found","message":"x"}'],
    );
    for my $b (@bad) {
        ok scalar(validate(json_decode($b->[1]), $err)), "the validator refuses an Error with $b->[0]";
    }
    is_deeply [validate(json_decode('{"error":{"status":422,"code":"invalid_field","message":"x",'
                                    . '"details":[{"field":"","message":"required"}]}}'), $err)],
        [], 'and accepts a good one';
}

# every $ref anywhere resolves
{
    my @refs;
    my $walk;
    $walk = sub {
        my ($n) = @_;
        if (ref $n eq 'HASH') {
            push @refs, $n->{'$ref'} if defined $n->{'$ref'};
            $walk->($_) for values %$n;
        } elsif (ref $n eq 'ARRAY') {
            $walk->($_) for @$n;
        }
    };
    $walk->($doc);
    my @broken = grep { !eval { resolve($_); 1 } } @refs;
    is_deeply \@broken, [], scalar(@refs) . ' $refs, all resolvable';
}

# no member without a value: what an unquoted comma in a flow mapping
# ({description: a, b}) silently turns into
{
    my @empty;
    my $walk;
    $walk = sub {
        my ($n, $path) = @_;
        if (ref $n eq 'HASH') {
            for my $k (sort keys %$n) {
                push @empty, "$path/$k" unless defined $n->{$k};
                $walk->($n->{$k}, "$path/$k");
            }
        } elsif (ref $n eq 'ARRAY') {
            $walk->($n->[$_], "$path/$_") for 0 .. $#$n;
        }
    };
    $walk->($doc, '#');
    is_deeply \@empty, [], 'no member without a value';
}

# the reference validator, where it is installed (pip's
# openapi-spec-validator; not a dependency)
SKIP: {
    my $have = system('python3', '-c', 'import yaml, openapi_spec_validator') == 0;
    skip 'python3 openapi_spec_validator is not installed', 1 unless $have;
    my $out = `python3 -c 'import sys, yaml
from openapi_spec_validator import validate_spec
validate_spec(yaml.safe_load(open("docs/openapi.yaml")))
print("valid")' 2>&1`;
    is $out, "valid\n", 'openapi_spec_validator accepts docs/openapi.yaml'
        or diag substr($out, 0, 2000);
}

# ---------------------------------------------------------------------------
# the C table against the document

sub c_routes {
    open my $fh, '<', 'ngx_kubenova_api.c' or die "ngx_kubenova_api.c: $!";
    my $src = do { local $/; <$fh> };
    my ($table) = $src =~ /ngx_kubenova_routes\[\]\s*=\s*\{(.*?)\n\};/s
        or die "no route table in ngx_kubenova_api.c";
    my @routes;
    while ($table =~ /\{\s*(GET|POST|PUT|PATCH|DELETE)\s*,\s*"([^"]*)"/g) {
        my ($m, $p) = (lc $1, $2);
        $p =~ s/:(\w+)/{$1}/g;
        push @routes, "$m /$p";
    }
    return @routes;
}

my %documented;
for my $path (sort keys %{ $doc->{paths} }) {
    for my $m (@METHODS) {
        $documented{"$m $path"} = $doc->{paths}{$path}{$m} if $doc->{paths}{$path}{$m};
    }
}
my @c = c_routes();
my %in_c = map { $_ => 1 } @c;
is_deeply [grep { !$documented{$_} } sort @c], [],
    'every route of ngx_kubenova_api.c is in openapi.yaml (' . scalar(@c) . ' routes)';
is_deeply [grep { !$in_c{$_} } sort keys %documented], [],
    'every operation of openapi.yaml is a route of ngx_kubenova_api.c';

# path parameters are declared for every {name} of the path
for my $key (sort keys %documented) {
    my ($m, $path) = split / /, $key, 2;
    my @params = map { deref($_) }
                 @{ $doc->{paths}{$path}{parameters} || [] },
                 @{ $documented{$key}{parameters} || [] };
    my %declared = map { $_->{name} => 1 } grep { $_->{in} eq 'path' } @params;
    my @in_path = $path =~ /\{(\w+)\}/g;
    is_deeply [sort keys %declared], [sort @in_path], "$key: path parameters declared";
    ok $documented{$key}{responses}{'503'}, "$key: documents 503";
    if ($key ne 'post /signup') {
        ok $documented{$key}{responses}{'401'}, "$key: documents 401";
    }
}

# ---------------------------------------------------------------------------
# against the running API

my $api = KubeNova::Api->start(signup => 1);
my $ngx = $api->ngx;
my $offset = $ngx->error_log_offset;

# checks an answer against the operation: status documented, body of the
# documented schema; returns the answer
sub conforms {
    my ($key, $r, $label) = @_;
    my $op = $documented{$key} or die "no operation $key";
    my $status = $r->{status} // 'none';
    my $resp = $op->{responses}{$status};
    ok $resp, "$label: $status is documented" or diag $r->{body};
    return $r unless $resp;
    $resp = deref($resp);
    my $media = $resp->{content} && $resp->{content}{'application/json'};
    if ($media) {
        my $body = json_decode($r->{body} // '');
        my @err = validate($body, $media->{schema});
        is_deeply \@err, [], "$label: the body fits the documented schema"
            or diag $r->{body};
    } elsif (!$resp->{content}) {
        is $r->{body} // '', '', "$label: no body, as documented";
    }
    for my $h (sort keys %{ $resp->{headers} || {} }) {
        next if $h eq 'Content-Disposition';
        ok defined $r->{headers}{lc $h}, "$label: header $h";
    }
    return $r;
}

sub concrete {
    my ($path, %p) = @_;
    $path =~ s/\{(\w+)\}/$p{$1} \/\/ 't34-none'/ge;
    $path =~ s{^/}{};    # below /api/v1 (servers: url)
    return $path;
}

# every operation, on objects that do not exist, with bodies that are
# refused: served, documented, no side effects
subtest 'every documented operation is served' => sub {
    for my $key (sort keys %documented) {
        my ($m, $path) = split / /, $key, 2;
        my $op = $documented{$key};
        my $p = concrete($path);
        my %o = $op->{requestBody} ? (body => { t34_probe => JSON::PP::true }) : ();
        my $r = $api->call(uc $m, $p, %o);
        my $label = uc($m) . " $p";
        isnt $r->{status}, 405, "$label: not 405";
        ok !($r->{status} == 404 && ($r->{json}{error}{message} // '') eq 'no such API endpoint'),
            "$label: routed (not the generic 404)";
        conforms($key, $r, $label);
    }
};

subtest 'real objects fit their schemas' => sub {
    my $r = conforms('post /clusters', $api->post('clusters', body => {
        name => 't34-c', labels => { region => 'eu' } }), 'POST /clusters');
    is $r->{status}, 201, 'cluster created';
    conforms('post /tenants', $api->post('tenants', body => {
        name => 't34-a', labels => { team => 'x' },
        placement => { clusters => ['t34-c'], cluster_selector => { region => 'eu' } },
        quota_overrides => { pods => 5, cpu => '2' },
        ingress_hostnames => ['*.t34.example.com'] }), 'POST /tenants');
    conforms('post /tenants/{tenant}/users', $api->post('tenants/t34-a/users', body => {
        name => 't34-u', role => 'owner' }), 'POST user');
    conforms('post /admins', $api->post('admins', body => { name => 't34-admin' }),
             'POST /admins');
    conforms('post /users/{user}/tokens', $api->post('users/t34-u/tokens', body => {
        name => 'ci', expires_at => '2099-01-01T00:00:00Z' }), 'POST token');
    my %app = (apiVersion => 'core.oam.dev/v1beta1', kind => 'Application',
               metadata => { name => 'web' }, spec => { components => [] });
    conforms('post /tenants/{tenant}/apps', $api->post('tenants/t34-a/apps', body => \%app),
             'POST app');
    conforms('post /users/{tenant}/apps', $api->post('users/t34-a/apps', body => "
apiVersion: core.oam.dev/v1beta1
kind: Application
metadata: {name: api}
", type => 'application/yaml'), 'POST app (alias, YAML)');
    conforms('post /plans', $api->post('plans', body => {
        name => 't34-plan', cpu => '500m', memory => '512Mi', storage => '1Gi',
        pods => 3, price_monthly => 10 }), 'POST plan');
    conforms('post /signup', $api->post('signup', token => undef, body => {
        tenant => 't34-self', user => 't34-self-owner' }), 'POST /signup');
    conforms('post /clusters/{cluster}/join-token', $api->post('clusters/t34-c/join-token'),
             'POST join-token');

    my %p = (plan => 't34-plan', tenant => 't34-a', user => 't34-u',
             cluster => 't34-c', app => 'web');
    for my $key (grep { /^get / } sort keys %documented) {
        next if $key eq 'get /tenants/{tenant}/kubeconfig';
        # a join token authorizes it, not the bearer: t/073-registration.t
        next if $key eq 'get /clusters/{cluster}/install.yaml';
        my $path = concrete((split / /, $key, 2)[1], %p);
        my $r = $api->get("$path" . ($path =~ m{s$|audit$} ? '?limit=500' : ''));
        is $r->{status}, 200, "GET $path: 200";
        conforms($key, $r, "GET $path");
    }
    conforms('get /admins', $api->get('admins'), 'GET /admins');

    # ... and the schemas are strict enough to notice a wrong answer
    my $tenant = json_decode($api->get('tenants/t34-a')->{body});
    my $schema = $doc->{components}{schemas}{Tenant};
    is_deeply [validate({ %$tenant }, $schema)], [], 'a tenant fits Tenant';
    my %no_sync = %$tenant;
    delete $no_sync{sync};
    ok scalar(validate(\%no_sync, $schema)), '... without sync it does not';
    ok scalar(validate({ %$tenant, status => 'gone' }, $schema)), '... nor with an unknown status';
    ok scalar(validate({ %$tenant, placement => { clusters => 't34-c' } }, $schema)),
        '... nor with placement.clusters a string';
    ok scalar(validate({ %$tenant, generation => '1' }, $schema)),
        '... nor with the generation a string';

    conforms('patch /tenants/{tenant}', $api->patch('tenants/t34-a',
        body => { labels => { team => 'y' } }, type => 'application/merge-patch+json'),
        'PATCH tenant');
    conforms('put /clusters/{cluster}', $api->put('clusters/t34-c2', body => {}),
             'PUT a new cluster');
    conforms('delete /tenants/{tenant}/apps/{app}', $api->del('tenants/t34-a/apps/web'),
             'DELETE a placed app (202)');
    conforms('delete /tenants/{tenant}', $api->del('tenants/t34-self'),
             'DELETE a tenant placed nowhere (204)');
    my $r2 = conforms('get /tenants/{tenant}/kubeconfig',
                      $api->get('tenants/t34-a/kubeconfig?cluster=t34-c&role=readonly&via=direct'),
                      'GET kubeconfig (none issued)');
    is $r2->{status}, 404, '... 404';
};

subtest 'errors have the documented shape' => sub {
    my $schema = $doc->{components}{schemas}{Error};
    my @samples = (
        ['404 from nginx (unknown path)', $api->get('no/such/thing'), 404],
        ['405 from nginx', $api->call(PATCH => 'whoami', body => {}), 405],
        ['401 from nginx (no token)', $api->get('whoami', token => undef), 401],
        ['401 from the database', $api->get('whoami', token => 'kn_t34-unknown'), 401],
        ['400 invalid_json', $api->post('tenants', body => '{', type => 'application/json'), 400],
        ['400 invalid_yaml', $api->post('tenants/t34-a/apps', body => 'a: [',
                                        type => 'application/yaml'), 400],
        ['400 invalid_query', $api->get('tenants?limit=0'), 400],
        ['415', $api->post('tenants', body => '{}', type => 'text/plain'), 415],
        ['413', $api->post('tenants', body => '{"x":"' . ('y' x (1024 * 1024)) . '"}',
                           type => 'application/json'), 413],
        ['422 with details', $api->post('tenants', body => { name => 'T34', plan => 5 }), 422],
        ['409', $api->post('tenants', body => { name => 't34-a' }), 409],
        ['412', $api->patch('tenants/t34-a', body => {}, headers => { 'If-Match' => '"99"' }), 412],
        ['403', $api->get('audit', token => $api->post('users/t34-u/tokens',
                                                        body => { name => 'x' })->{json}{token}), 403],
    );
    for my $s (@samples) {
        my ($what, $r, $status) = @$s;
        is $r->{status}, $status, "$what: $status";
        is $r->{headers}{'content-type'}, 'application/json', "$what: JSON";
        my $body = json_decode($r->{body} // '');
        is_deeply [validate($body, $schema)], [], "$what: fits the Error schema"
            or diag $r->{body};
        is $body->{error}{status}, $status, "$what: error.status is the HTTP status";
    }
    my $details = json_decode($samples[9][1]{body})->{error}{details};
    is_deeply [sort map { $_->{field} } @$details], ['name', 'plan'],
        '422: details name every bad field';
};

unlike scalar $ngx->error_log_since($offset), qr/\[(?:alert|emerg|crit)\]/,
    'no [alert], [crit] or [emerg] in error.log';
$ngx->stop;
done_testing;
