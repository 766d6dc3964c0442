# What the REST API guarantees about the stored data when things go wrong:
#
#   * a rejected write leaves everything as it was (objects, desired state,
#     row counts), whether nginx refused it or the database did halfway;
#   * two writers with the same If-Match, truly concurrent: one wins, the
#     other gets 412;
#   * the database dies while a write waits inside it: 503, nothing partial
#     is stored, and the same worker serves the next request once the
#     database is back.
#
# Names start with "t33-" (the database is shared with the other files).
use strict;
use warnings;

use Test::More;
use Time::HiRes qw(sleep time);

use KubeNova::Api;
use KubeNova::Pg qw(psql hold_lock pg_ctl require_pg);

require_pg();

my $api = KubeNova::Api->start(master_process => 1, workers => 1, pool => 4,
                               signup => 1, max_body => '4k');
my $ngx = $api->ngx;
my $offset = $ngx->error_log_offset;

sub summary { KubeNova::Api::error_summary($_[0]) }

sub wait_for {
    my ($cond, $timeout) = @_;
    my $deadline = time + ($timeout // 10);
    while (time < $deadline) {
        return 1 if $cond->();
        sleep 0.05;
    }
    return 0;
}

# statements of ours waiting for a lock
sub lock_waiters {
    return psql("SELECT count(*) FROM pg_stat_activity "
                . "WHERE application_name = 'kubenova-manager' "
                . "AND wait_event_type = 'Lock'");
}

sub ok_or_die {
    my ($r, $want, $what) = @_;
    die "$what: $r->{status} $r->{body}" unless ($r->{status} // 0) == $want;
    return $r->{json};
}

# fixtures: a placed tenant with a user, an app and a host name; another
# tenant holding a host name
ok_or_die($api->post('clusters', body => { name => 't33-c1', labels => { zone => 'a' } }),
          201, 'cluster');
ok_or_die($api->post('tenants', body => {
              name => 't33-a', labels => { team => 'red' },
              placement => { clusters => ['t33-c1'] },
              ingress_hostnames => ['t33-a.example.com'] }), 201, 'tenant t33-a');
ok_or_die($api->post('tenants', body => {
              name => 't33-b', ingress_hostnames => ['t33-b.example.com'] }),
          201, 'tenant t33-b');
ok_or_die($api->post('tenants/t33-a/users', body => { name => 't33-owner', role => 'owner' }),
          201, 'user');
my $owner = ok_or_die($api->post('users/t33-owner/tokens', body => { name => 'x' }),
                      201, 'token')->{token};
my %doc = (apiVersion => 'core.oam.dev/v1beta1', kind => 'Application',
           metadata => { name => 'web' }, spec => { replicas => 1 });
ok_or_die($api->post('tenants/t33-a/apps', body => \%doc), 201, 'app');

# everything a write could touch
sub snapshot {
    my %s;
    for my $path ('tenants/t33-a', 'tenants/t33-b', 'tenants/t33-a/apps/web',
                  'tenants/t33-a/users/t33-owner', 'clusters/t33-c1', 'plans/small') {
        my $r = $api->get($path);
        $s{$path} = "$r->{status} " . ($r->{headers}{etag} // '-') . " $r->{body}";
    }
    for my $t (qw(plans clusters tenants tenant_hostnames users tokens
                  applications desired_state kubeconfigs)) {
        $s{"rows $t"} = psql("SELECT count(*) FROM $t");
    }
    $s{desired_state} = psql("SELECT string_agg(concat_ws(' ', cluster, kind, name, "
                             . "generation, deleted, md5(spec::text)), ', ' "
                             . "ORDER BY cluster, kind, name) FROM desired_state");
    $s{sequence} = psql("SELECT last_value FROM desired_state_generation_seq");
    return \%s;
}

sub audit_count { psql('SELECT count(*) FROM audit_log') }

subtest 'a rejected write changes nothing' => sub {
    my $before = snapshot();
    my $etag = $api->get('tenants/t33-a')->{headers}{etag};

    # [what, request, status code, audited]
    my @cases = (
        ['malformed JSON (nginx)',
         [PATCH => 'tenants/t33-a', body => '{"labels": {', type => 'application/json'],
         '400 invalid_json', 0],
        ['oversized body (nginx)',
         [PUT => 'tenants/t33-a/apps/web',
          body => '{"x": "' . ('y' x 5000) . '"}', type => 'application/json'],
         '413 payload_too_large', 0],
        ['wrong Content-Type (nginx)',
         [PUT => 'tenants/t33-a', body => '{}', type => 'text/plain'],
         '415 unsupported_media_type', 0],
        ['invalid YAML (nginx)',
         [PUT => 'tenants/t33-a/apps/web', body => "kind: [", type => 'application/yaml'],
         '400 invalid_yaml', 0],
        ['a valid change plus an invalid field',
         [PUT => 'tenants/t33-a', body => { plan => 'medium', labels => { team => 1 },
                                            placement => { clusters => ['t33-c1'] } }],
         '422 invalid_field', 1],
        ['placement on an unknown cluster',
         [PATCH => 'tenants/t33-a', body => { placement => { clusters => ['t33-nosuch'] } }],
         '422 invalid_field', 1],
        ['stale If-Match',
         [PATCH => 'tenants/t33-a', body => { labels => { team => 'blue' } },
          headers => { 'If-Match' => '"999"' }],
         '412 precondition_failed', 1],
        ['stale If-Match on an app',
         [PUT => 'tenants/t33-a/apps/web', body => { %doc, spec => { replicas => 2 } },
          headers => { 'If-Match' => '"999"' }],
         '412 precondition_failed', 1],
        ['a host name of another tenant',
         [PATCH => 'tenants/t33-a',
          body => { labels => { team => 'blue' },
                    ingress_hostnames => ['t33-a.example.com', 't33-b.example.com'] }],
         '409 conflict', 1],
        ['an owner changing the plan',
         [PATCH => 'tenants/t33-a', token => $owner, body => { plan => 'medium' }],
         '403 forbidden', 1],
        ['an invalid app document',
         [PUT => 'tenants/t33-a/apps/web', body => { %doc, kind => 'Deployment' }],
         '422 invalid_field', 1],
        ['an invalid role',
         [PATCH => 'tenants/t33-a/users/t33-owner', body => { role => 'root' }],
         '422 invalid_field', 1],
        ['the last owner demoting itself',
         [PATCH => 'tenants/t33-a/users/t33-owner', token => $owner,
          body => { role => 'readonly' }],
         '409 conflict', 1],
        ['deleting a plan in use',
         [DELETE => 'plans/small'], '409 conflict', 1],
        ['cluster labels with a bad value',
         [PATCH => 'clusters/t33-c1', body => { labels => { zone => 'a b' } }],
         '422 invalid_field', 1],
        ['signup that fails after making its tenant (user taken)',
         [POST => 'signup', token => undef, body => { tenant => 't33-new', user => 't33-owner' }],
         '409 already_exists', 1],
    );

    for my $c (@cases) {
        my ($what, $req, $want, $audited) = @$c;
        my $count = audit_count();
        my $r = $api->call(@$req);
        is summary($r), $want, "$what: $want";
        is audit_count() - $count, $audited,
            $audited ? "$what: audited" : "$what: refused before the database, not audited";
        is_deeply snapshot(), $before, "$what: nothing changed"
            or diag explain snapshot();
    }
    is $api->get('tenants/t33-a')->{headers}{etag}, $etag, 'same ETag at the end';
    is summary($api->get('tenants/t33-new')), '404 not_found',
        'the failed signup left no tenant behind';
    is psql("SELECT count(*) FROM audit_log WHERE resource = 'tenants/t33-new' "
            . "AND status = 409"), 1, 'its audit row says 409';
};

# Two writes, both queued behind a lock so that they really run together.
sub race {
    my ($table, @reqs) = @_;
    my $lock = hold_lock($table);
    my @socks = map { $api->start_request(@$_) } @reqs;
    my $queued = wait_for(sub { lock_waiters() == @reqs });
    $lock->release;
    return ($queued, map { $api->finish($_) } @socks);
}

subtest 'two PUTs with the same If-Match: one 200, one 412' => sub {
    my $cur = $api->get('tenants/t33-b');
    my $etag = $cur->{headers}{etag};
    my ($gen) = $etag =~ /(\d+)/;
    my %base = (ingress_hostnames => ['t33-b.example.com']);

    my ($queued, @r) = race('tenants',
        [PUT => 'tenants/t33-b', body => { %base, labels => { writer => 'one' } },
         headers => { 'If-Match' => $etag }],
        [PUT => 'tenants/t33-b', body => { %base, labels => { writer => 'two' } },
         headers => { 'If-Match' => $etag }]);
    ok $queued, 'both statements waited for the lock together';
    is_deeply [sort map { $_->{status} } @r], [200, 412], 'one 200, one 412'
        or diag explain [map { $_->{body} } @r];
    my ($won) = grep { $_->{status} == 200 } @r;
    my ($lost) = grep { $_->{status} == 412 } @r;
    is summary($lost), '412 precondition_failed', 'the loser: precondition_failed';
    my $now = $api->get('tenants/t33-b');
    is $now->{json}{generation}, $gen + 1, 'exactly one new generation';
    is_deeply $now->{json}{labels}, $won->{json}{labels}, 'the winner\'s labels are stored';
    is $now->{headers}{etag}, $won->{headers}{etag}, 'the winner\'s ETag is current';

    # PATCH, and apps (whose writes lock the tenant first)
    $etag = $now->{headers}{etag};
    ($queued, @r) = race('tenants',
        [PATCH => 'tenants/t33-b', body => { labels => { p => '1' } },
         headers => { 'If-Match' => $etag }],
        [PATCH => 'tenants/t33-b', body => { labels => { p => '2' } },
         headers => { 'If-Match' => $etag }]);
    ok $queued, 'PATCH: both queued';
    is_deeply [sort map { $_->{status} } @r], [200, 412], 'PATCH: one 200, one 412';

    my $app = $api->get('tenants/t33-a/apps/web');
    ($queued, @r) = race('applications',
        [PUT => 'tenants/t33-a/apps/web', body => { %doc, spec => { replicas => 3 } },
         headers => { 'If-Match' => $app->{headers}{etag} }],
        [PUT => 'tenants/t33-a/apps/web', body => { %doc, spec => { replicas => 4 } },
         headers => { 'If-Match' => $app->{headers}{etag} }]);
    ok $queued, 'app PUT: both queued';
    is_deeply [sort map { $_->{status} } @r], [200, 412], 'app PUT: one 200, one 412';
    my ($app_won) = grep { $_->{status} == 200 } @r;
    is_deeply $api->get('tenants/t33-a/apps/web')->{json}{document},
        $app_won->{json}{document}, 'the winner\'s document is stored';
    is psql("SELECT spec->'spec'->>'replicas' FROM desired_state "
            . "WHERE name = 't33-a/web'"),
        $app_won->{json}{document}{spec}{replicas}, '... and is the desired state';

    # without If-Match both go through, one after the other
    ($queued, @r) = race('tenants',
        [PATCH => 'tenants/t33-b', body => { labels => { q => '1' } }],
        [PATCH => 'tenants/t33-b', body => { labels => { r => '1' } }]);
    is_deeply [sort map { $_->{status} } @r], [200, 200], 'without If-Match: both 200';
    my $b = $api->get('tenants/t33-b')->{json};
    is $b->{labels}{q} . $b->{labels}{r}, '11', 'neither change was lost';

    # two creates of the same name: one 201, one 409
    ($queued, @r) = race('tenants',
        [POST => 'tenants', body => { name => 't33-twin', labels => { n => '1' } }],
        [POST => 'tenants', body => { name => 't33-twin', labels => { n => '2' } }]);
    ok $queued, 'two POSTs queued';
    is_deeply [sort map { $_->{status} } @r], [201, 409], 'one 201, one 409';
    is psql("SELECT count(*) FROM tenants WHERE name = 't33-twin'"), 1, 'one row';
};

subtest 'the database dies while a write waits inside it' => sub {
    my @workers = $ngx->worker_pids;
    is scalar @workers, 1, 'one worker';
    psql('CHECKPOINT');    # the throwaway server runs with synchronous_commit off
    my $before = snapshot();
    my $audit = audit_count();

    # the lock holder's psql dies with the server: no SIGPIPE when it is
    # released, and its complaint does not belong in the test output
    local $SIG{PIPE} = 'IGNORE';
    open my $stderr, '>&', \*STDERR or die "dup: $!";
    open STDERR, '>', '/dev/null' or die "/dev/null: $!";
    my $lock = hold_lock('tenants');
    open STDERR, '>&', $stderr or die "dup: $!";
    my $post = $api->start_request(POST => 'tenants', body => {
        name => 't33-lost', placement => { clusters => ['t33-c1'] } });
    my $put = $api->start_request(PUT => 'tenants/t33-a/apps/web',
                                  body => { %doc, spec => { replicas => 9 } });
    ok wait_for(sub { lock_waiters() == 2 }), 'both writes wait inside PostgreSQL';

    pg_ctl('kill');
    my $t0 = time;
    my $r = $api->finish($post);
    like summary($r), qr/^503 database_(?:unavailable|busy)$/,
        'the waiting POST: 503 ' . ($r->{json}{error}{code} // '?');
    cmp_ok time - $t0, '<', 5, 'at once';
    $r = $api->finish($put);
    like summary($r), qr/^503 database_(?:unavailable|busy)$/, 'the waiting PUT: 503';
    $lock->release;

    $r = $api->get('tenants/t33-a');
    like summary($r), qr/^503 database_unavailable$/, 'while it is down: 503 at once';
    is $r->{headers}{'www-authenticate'}, undef, 'not mistaken for a 401';

    pg_ctl('start');
    ok wait_for(sub { ($api->get('/readyz')->{status} // 0) == 200 }, 15),
        'ready again';
    is $api->get('whoami')->{status}, 200, 'the next request is served';
    is_deeply [$ngx->worker_pids], \@workers, 'by the same worker';

    is summary($api->get('tenants/t33-lost')), '404 not_found', 'the POST stored nothing';
    is psql("SELECT count(*) FROM desired_state WHERE tenant = 't33-lost'"), 0,
        'no desired state for it';
    is_deeply snapshot(), $before, 'nothing partial anywhere';
    is audit_count(), $audit, 'and no audit row: the transactions never committed';

    $r = $api->post('tenants', body => { name => 't33-lost' });
    is $r->{status}, 201, 'the same POST now succeeds';
};

my $log = $ngx->error_log_since($offset);
unlike $log, qr/\[(?:alert|emerg|crit)\]/, 'no [alert], [crit] or [emerg] in error.log';
unlike $log, qr/exited on signal/, 'no worker crashed';
$ngx->stop;
done_testing;
