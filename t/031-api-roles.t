# The role matrix: every route of ngx_kubenova_api.c's table, called by
# every kind of caller, with the status each must get.  Callers:
#
#   admin     the bootstrap admin (kubenova_admin_token_file)
#   owner     an owner of tenant A (t31-a)
#   ro        a read-only member of tenant A
#   other     an owner of tenant B (t31-b): A's objects are "not found"
#   none      no Authorization header
#   malformed an Authorization header that is not "Bearer <token>"
#   unknown   a well-formed token nobody issued
#   expired   a token whose expires_at has passed
#   revoked   a revoked token
#
# The table below has one row per route; the test fails when a route of the
# C table has no row (or a row names a route that does not exist).
use strict;
use warnings;

use Test::More;

use KubeNova::Api;
use KubeNova::Pg qw(psql require_pg);

require_pg();

my $api = KubeNova::Api->start(signup => 1);
my $ngx = $api->ngx;
my $offset = $ngx->error_log_offset;

sub summary { KubeNova::Api::error_summary($_[0]) }

# ---------------------------------------------------------------------------
# the routes of the C table

sub c_routes {
    open my $fh, '<', 'ngx_kubenova_api.c' or die "ngx_kubenova_api.c: $!";
    my $src = do { local $/; <$fh> };
    my ($table) = $src =~ /ngx_kubenova_routes\[\]\s*=\s*\{(.*?)\n\};/s
        or die "no route table in ngx_kubenova_api.c";
    my @routes;
    while ($table =~ /\{\s*(GET|POST|PUT|PATCH|DELETE)\s*,\s*"([^"]*)"\s*,
                       \s*"([^"]*)"\s*,\s*(\w+)/gx) {
        push @routes, { method => $1, path => $2, op => $3, body => $4 };
    }
    return @routes;
}

# ---------------------------------------------------------------------------
# fixtures

my $seq = 0;
sub fresh { sprintf 't31-%s%d', $_[0], ++$seq }

sub admin_ok {
    my ($method, $path, $body, $want) = @_;
    my $r = $api->call($method, $path, body => $body);
    die "fixture $method $path: $r->{status} $r->{body}"
        unless ($r->{status} // 0) == ($want // 201);
    return $r->{json};
}

admin_ok(POST => 'clusters', { name => 't31-c1' });
admin_ok(POST => 'tenants', { name => 't31-a', placement => { clusters => ['t31-c1'] } });
admin_ok(POST => 'tenants', { name => 't31-b' });
admin_ok(POST => 'tenants/t31-a/users', { name => 't31-a-owner', role => 'owner' });
admin_ok(POST => 'tenants/t31-a/users', { name => 't31-a-ro', role => 'readonly' });
admin_ok(POST => 'tenants/t31-b/users', { name => 't31-b-owner', role => 'owner' });

sub app_doc {
    my ($name) = @_;
    return { apiVersion => 'core.oam.dev/v1beta1', kind => 'Application',
             metadata => { name => $name } };
}
admin_ok(POST => 'tenants/t31-a/apps', app_doc('web'));
psql("INSERT INTO kubeconfigs (cluster, tenant, role, ciphertext) "
     . "VALUES ('t31-c1', 't31-a', 'owner', '\\x00')");

sub token_for {
    my ($user, $name) = @_;
    return admin_ok(POST => "users/$user/tokens", { name => $name })->{token};
}

my %token = (
    admin => $ENV{TEST_NGINX_ADMIN_TOKEN},
    owner => token_for('t31-a-owner', 'matrix'),
    ro    => token_for('t31-a-ro', 'matrix'),
    other => token_for('t31-b-owner', 'matrix'),
);

my $expired = token_for('t31-a-owner', 'expired');
is $api->get('whoami', token => $expired)->{status}, 200,
    'the "expired" token works before it expires';
# the API refuses an expiry in the past: set it directly
psql("UPDATE tokens SET expires_at = now() - interval '1 minute' "
     . "WHERE user_name = 't31-a-owner' AND name = 'expired'");

my $revoked = token_for('t31-a-owner', 'revoked');
is $api->get('whoami', token => $revoked)->{status}, 200,
    'the "revoked" token works before it is revoked';
admin_ok(DELETE => 'users/t31-a-owner/tokens/revoked', undef, 204);

my %auth = (
    (map { $_ => "Bearer $token{$_}" } keys %token),
    none      => undef,
    malformed => 'Basic dDMxOnNlY3JldA==',
    unknown   => 'Bearer kn_' . ('x' x 43),
    expired   => "Bearer $expired",
    revoked   => "Bearer $revoked",
);

my @members = qw(admin owner ro other);
my @strangers = qw(none malformed unknown expired revoked);

# what WWW-Authenticate says to each stranger
my %challenge = (
    none      => 'Bearer realm="kubenova"',
    map { $_ => 'Bearer realm="kubenova", error="invalid_token"' }
        qw(malformed unknown expired revoked),
);

# ---------------------------------------------------------------------------
# the matrix: "METHOD path" => [path, body, {caller => status}]
#
# path and body may be code refs, called with the caller's name, so that
# writes that succeed get an object of their own.

my %code = (200 => undef, 201 => undef, 202 => undef, 204 => undef,
            403 => 'forbidden', 404 => 'not_found', 401 => 'unauthorized',
            503 => 'kubeconfig_unavailable');

sub all_ok       { my ($s) = @_; return +{ map { $_ => $s } @members } }
sub admin_only   { my ($s) = @_; return +{ admin => $s, owner => 403, ro => 403, other => 403 } }
sub members_read { return +{ admin => 200, owner => 200, ro => 200, other => 404 } }
sub owners_write { my ($s) = @_; return +{ admin => $s, owner => $s, ro => 403, other => 404 } }

my $plan_body = sub {
    return { name => fresh('p'), cpu => '1', memory => '1Gi', storage => '1Gi',
             pods => 1, price_monthly => 1 };
};
my %plan_fields = (cpu => '1', memory => '1Gi', storage => '1Gi', pods => 1,
                   price_monthly => 1);

# a fresh object for whom the write would succeed, else a standing one
sub victim {
    my ($who, $make, $standing) = @_;
    return $who eq 'admin' || $who eq 'owner' ? $make->() : $standing;
}

my %matrix = (
    'GET whoami' => ['whoami', undef, all_ok(200)],

    'GET plans'          => ['plans', undef, all_ok(200)],
    'POST plans'         => ['plans', $plan_body, admin_only(201)],
    'GET plans/:plan'    => ['plans/small', undef, all_ok(200)],
    'PUT plans/:plan'    => [sub { 'plans/' . fresh('p') }, \%plan_fields, admin_only(201)],
    'PATCH plans/:plan'  => [sub { $_[0] eq 'admin' ? 'plans/' . admin_ok(POST => 'plans', $plan_body->())->{name}
                                                    : 'plans/small' },
                             { pods => 2 }, admin_only(200)],
    'DELETE plans/:plan' => [sub { $_[0] eq 'admin' ? 'plans/' . admin_ok(POST => 'plans', $plan_body->())->{name}
                                                    : 'plans/small' },
                             undef, admin_only(204)],

    'GET tenants'            => ['tenants', undef, all_ok(200)],
    'POST tenants'           => ['tenants', sub { +{ name => fresh('t') } }, admin_only(201)],
    'GET tenants/:tenant'    => ['tenants/t31-a', undef, members_read()],
    'PUT tenants/:tenant'    => ['tenants/t31-a', { placement => { clusters => ['t31-c1'] } },
                                 { admin => 200, owner => 403, ro => 403, other => 404 }],
    'PATCH tenants/:tenant'  => ['tenants/t31-a', { labels => { team => 'x' } }, owners_write(200)],
    'DELETE tenants/:tenant' => [sub {
                                     my ($who) = @_;
                                     $who eq 'admin'
                                         ? 'tenants/' . admin_ok(POST => 'tenants', { name => fresh('t') })->{name}
                                         : 'tenants/t31-a' },
                                 undef, { admin => 204, owner => 403, ro => 403, other => 404 }],

    'GET tenants/:tenant/users'          => ['tenants/t31-a/users', undef, members_read()],
    'POST tenants/:tenant/users'         => ['tenants/t31-a/users',
                                             sub { +{ name => fresh('u'), role => 'readonly' } },
                                             owners_write(201)],
    'GET tenants/:tenant/users/:user'    => ['tenants/t31-a/users/t31-a-ro', undef, members_read()],
    'PATCH tenants/:tenant/users/:user'  => [sub {
                                                 victim($_[0], sub {
                                                     'tenants/t31-a/users/' . admin_ok(POST => 'tenants/t31-a/users',
                                                         { name => fresh('u'), role => 'readonly' })->{name} },
                                                     'tenants/t31-a/users/t31-a-ro') },
                                             { role => 'owner' }, owners_write(200)],
    'DELETE tenants/:tenant/users/:user' => [sub {
                                                 victim($_[0], sub {
                                                     'tenants/t31-a/users/' . admin_ok(POST => 'tenants/t31-a/users',
                                                         { name => fresh('u'), role => 'readonly' })->{name} },
                                                     'tenants/t31-a/users/t31-a-ro') },
                                             undef, owners_write(204)],

    'GET admins'          => ['admins', undef, admin_only(200)],
    'POST admins'         => ['admins', sub { +{ name => fresh('admin') } }, admin_only(201)],
    'DELETE admins/:user' => [sub {
                                  $_[0] eq 'admin'
                                      ? 'admins/' . admin_ok(POST => 'admins', { name => fresh('admin') })->{name}
                                      : 'admins/t31-standing-admin' },
                              undef, admin_only(204)],

    # the tokens of A's owner: the owner itself, admins; A's read-only
    # member is told no, B's owner does not see the user at all
    'GET users/:user/tokens'           => ['users/t31-a-owner/tokens', undef,
                                           { admin => 200, owner => 200, ro => 403, other => 404 }],
    'POST users/:user/tokens'          => ['users/t31-a-owner/tokens', sub { +{ name => fresh('k') } },
                                           owners_write(201)],
    'DELETE users/:user/tokens/:token' => [sub {
                                               victim($_[0], sub {
                                                   my $n = fresh('k');
                                                   token_for('t31-a-owner', $n);
                                                   "users/t31-a-owner/tokens/$n" },
                                                   'users/t31-a-owner/tokens/matrix') },
                                           undef, owners_write(204)],

    # A is placed on t31-c1, so A's members see it; B's owner does not;
    # only admins write clusters (403 whatever the cluster)
    'GET clusters'             => ['clusters', undef, all_ok(200)],
    'POST clusters'            => ['clusters', sub { +{ name => fresh('c') } }, admin_only(201)],
    'GET clusters/:cluster'    => ['clusters/t31-c1', undef, members_read()],
    'PUT clusters/:cluster'    => ['clusters/t31-c1', { labels => {} }, admin_only(200)],
    'PATCH clusters/:cluster'  => ['clusters/t31-c1', { labels => {} }, admin_only(200)],
    'GET clusters/:cluster/config' => ['clusters/t31-c1/config', undef, admin_only(200)],
    'PUT clusters/:cluster/config' => ['clusters/t31-c1/config', { components => {} },
                                       admin_only(200)],
    'POST clusters/:cluster/join-token' => ['clusters/t31-c1/join-token', undef, admin_only(201)],
    'DELETE clusters/:cluster' => [sub {
                                       $_[0] eq 'admin'
                                           ? 'clusters/' . admin_ok(POST => 'clusters', { name => fresh('c') })->{name}
                                           : 'clusters/t31-c1' },
                                   undef, admin_only(204)],

    # A has an (undecryptable) owner kubeconfig for t31-c1; this nginx has
    # no kubenova_secret_key_file: who gets past the role check gets 503
    'GET tenants/:tenant/kubeconfig' => ['tenants/t31-a/kubeconfig?cluster=t31-c1&via=direct', undef,
                                         { admin => 503, owner => 503, ro => 403, other => 404 }],

    'GET tenants/:tenant/apps'         => ['tenants/t31-a/apps', undef, members_read()],
    'POST tenants/:tenant/apps'        => ['tenants/t31-a/apps', sub { app_doc(fresh('app')) },
                                           owners_write(201)],
    'GET tenants/:tenant/apps/:app'    => ['tenants/t31-a/apps/web', undef, members_read()],
    'GET tenants/:tenant/apps/:app/status' => ['tenants/t31-a/apps/web/status', undef,
                                               members_read()],
    'PUT tenants/:tenant/apps/:app'    => [sub { "tenants/t31-a/apps/" . fresh('app') },
                                           undef, owners_write(201)],
    # A is placed somewhere: deleting an app goes through tombstones (202)
    'DELETE tenants/:tenant/apps/:app' => [sub {
                                               victim($_[0], sub {
                                                   'tenants/t31-a/apps/'
                                                   . admin_ok(POST => 'tenants/t31-a/apps', app_doc(fresh('app')))->{name} },
                                                   'tenants/t31-a/apps/web') },
                                           undef, owners_write(202)],
    'POST users/:tenant/apps'          => ['users/t31-a/apps', sub { app_doc(fresh('app')) },
                                           owners_write(201)],

    # anonymous: whoever calls, with whatever Authorization
    'POST signup' => ['signup', sub { +{ tenant => fresh('s'), user => fresh('su') } },
                      all_ok(201), 'anonymous'],

    # usage and invoices: the tenant's members read them, admins read all
    'GET tenants/:tenant/usage'   => ['tenants/t31-a/usage', undef, members_read()],
    'GET usage'                   => ['usage', undef, admin_only(200)],
    'GET tenants/:tenant/invoice' => ['tenants/t31-a/invoice', undef, members_read()],

    'GET audit' => ['audit', undef, admin_only(200)],
);

admin_ok(POST => 'admins', { name => 't31-standing-admin' });

# ---------------------------------------------------------------------------
# every route has a row, every row a route

my @routes = c_routes();
cmp_ok scalar @routes, '>=', 38, scalar(@routes) . ' routes in ngx_kubenova_api.c';
# authorized by a join token, whatever the bearer: t/073-registration.t
my %join_token_routes = map { $_ => 1 }
    'GET clusters/:cluster/install.yaml', 'POST clusters/:cluster/register';
my %in_c = map { ("$_->{method} $_->{path}" => 1) }
           grep { !$join_token_routes{"$_->{method} $_->{path}"} } @routes;
is_deeply [grep { !$matrix{$_} } sort keys %in_c], [],
    'every route of the C table has a row in the matrix';
is_deeply [grep { !$in_c{$_} } sort keys %matrix], [],
    'every row of the matrix is a route of the C table';

# ---------------------------------------------------------------------------
# run it

my $audit_before = psql('SELECT count(*) FROM audit_log');
my $strangers_audited = 0;

for my $route (@routes) {
    my $key = "$route->{method} $route->{path}";
    my $row = $matrix{$key} or next;
    my ($path, $body, $want, $anonymous) = @$row;

    subtest $key => sub {
        my $count;
        for my $who (@members, @strangers) {
            my $p = ref $path eq 'CODE' ? $path->($who) : $path;
            my $b = ref $body eq 'CODE' ? $body->($who) : $body;
            if (!defined $b && $route->{path} =~ m{apps/:app$} && $route->{method} eq 'PUT') {
                my ($name) = $p =~ m{([^/]+)$};
                $b = app_doc($name);
            }
            $b //= {} if $route->{body} ne 'NONE';
            $b = undef if $route->{body} eq 'NONE';
            my $expect = $anonymous ? 201
                       : exists $want->{$who} ? $want->{$who} : 401;

            $count = psql('SELECT count(*) FROM audit_log')
                if $who eq $strangers[0];
            my $r = $api->call($route->{method}, $p,
                               auth => $auth{$who},
                               (defined $b ? (body => $b) : ()));
            my $label = "$who: $route->{method} /api/v1/$p";
            is $r->{status}, $expect, "$label -> $expect"
                or diag $r->{error} // $r->{body};

            if (defined $code{$expect}) {
                is summary($r), "$expect $code{$expect}", "$label: error code";
            }
            if ($expect == 401) {
                is $r->{headers}{'www-authenticate'}, $challenge{$who},
                    "$label: WWW-Authenticate";
            } else {
                ok !exists $r->{headers}{'www-authenticate'},
                    "$label: no WWW-Authenticate";
            }
        }
        $strangers_audited++
            if !$anonymous && psql('SELECT count(*) FROM audit_log') != $count;
    };
}

is $strangers_audited, 0, 'requests refused as unauthenticated are not audited';
cmp_ok psql('SELECT count(*) FROM audit_log'), '>', $audit_before,
    'the others\' writes are';

# ---------------------------------------------------------------------------
# a few things the matrix does not show

subtest '404 for another tenant\'s objects tells nothing' => sub {
    for my $pair (['tenants/t31-a', 'tenants/t31-nosuch'],
                  ['tenants/t31-a/users/t31-a-ro', 'tenants/t31-nosuch/users/t31-a-ro'],
                  ['tenants/t31-a/apps/web', 'tenants/t31-nosuch/apps/web'],
                  ['users/t31-a-owner/tokens', 'users/t31-nosuch/tokens'],
                  ['clusters/t31-c1', 'clusters/t31-nosuch']) {
        my $theirs = $api->get($pair->[0], token => $token{other});
        my $none = $api->get($pair->[1], token => $token{other});
        is $theirs->{status}, 404, "other: GET $pair->[0]: 404";
        is $theirs->{body}, $none->{body}, '... the same answer as for a missing one';
    }
};

subtest 'owners may change only suspended, labels and ingress_hostnames' => sub {
    for my $f ([plan => 'medium'], [quota_overrides => { pods => 99 }],
               [placement => undef], [cluster_resources => ['storageclasses']]) {
        my $r = $api->patch('tenants/t31-a', token => $token{owner},
                            body => { $f->[0] => $f->[1] });
        is summary($r), '403 forbidden', "owner PATCH $f->[0]: 403";
    }
    my $r = $api->patch('tenants/t31-a', token => $token{owner},
                        body => { suspended => JSON::PP::false,
                                  ingress_hostnames => ['t31-a.example.com'] });
    is $r->{status}, 200, 'owner PATCH suspended + ingress_hostnames: 200';
    is $api->get('tenants/t31-a')->{json}{plan}, 'small', 'plan unchanged';
};

subtest 'an owner manages the tokens of its members' => sub {
    my $r = $api->post('users/t31-a-ro/tokens', token => $token{owner},
                       body => { name => 'by-owner' });
    is $r->{status}, 201, 'owner makes a token for a member';
    is $api->get('users/t31-a-ro/tokens', token => $token{owner})->{status}, 200,
        'and lists them';
    is $api->get('users/t31-a-ro/tokens', token => $token{ro})->{status}, 200,
        'the member lists its own';
    is summary($api->get('users/t31-a-owner/tokens', token => $token{ro})),
        '403 forbidden', 'but not its owner\'s';
    is $api->del('users/t31-a-ro/tokens/by-owner', token => $token{owner})->{status},
        204, 'owner revokes it';
};

subtest 'tenant users see their own tenant only' => sub {
    my ($items) = $api->list_all('tenants', token => $token{ro});
    is_deeply [map { $_->{name} } @$items], ['t31-a'], 'tenant list: A only';
    ($items) = $api->list_all('clusters', token => $token{owner});
    is_deeply [map { $_->{name} } @$items], ['t31-c1'], 'cluster list: A\'s only';
    ($items) = $api->list_all('clusters', token => $token{other});
    is_deeply $items, [], 'B is placed nowhere: no cluster';
    my $r = $api->get('whoami', token => $token{other});
    is_deeply $r->{json}, { principal => 'user:t31-b-owner', user => 't31-b-owner',
                            role => 'owner', tenant => 't31-b' }, 'whoami';
};

subtest 'malformed Authorization headers' => sub {
    for my $h ('Bearer', 'Bearer ', 'bearer', 'Token abc', 'Bearer a b',
               "Bearer \x{e9}t\x{e9}", 'Bearer ' . ('a' x 5000)) {
        my $r = $api->get('whoami', auth => $h);
        (my $show = $h) =~ s/(.{24}).+/$1.../;
        is summary($r), '401 unauthorized', "'$show': 401";
        is $r->{headers}{'www-authenticate'},
            'Bearer realm="kubenova", error="invalid_token"', '... invalid_token';
    }
    my $r = $api->get('whoami', auth => 'BEARER ' . $token{ro});
    is $r->{status}, 200, 'the scheme is case-insensitive';
    $r = $api->get('whoami', auth => "Bearer   $token{ro}  ");
    is $r->{status}, 200, 'spaces around the token are fine';
    $r = $api->get('whoami', auth => 'Bearer ' . uc $token{ro});
    is $r->{status}, 401, 'the token itself is case-sensitive';
};

subtest 'a deleted user\'s token stops working' => sub {
    admin_ok(POST => 'tenants/t31-b/users', { name => 't31-b-temp', role => 'readonly' });
    my $t = token_for('t31-b-temp', 'x');
    is $api->get('whoami', token => $t)->{status}, 200, 'works';
    admin_ok(DELETE => 'tenants/t31-b/users/t31-b-temp', undef, 204);
    is summary($api->get('whoami', token => $t)), '401 unauthorized', '401 once deleted';
};

unlike scalar $ngx->error_log_since($offset), qr/\[(?:alert|emerg|crit)\]/,
    'no [alert], [crit] or [emerg] in error.log';
$ngx->stop;
done_testing;
