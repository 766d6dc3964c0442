# The REST API, resource by resource: create, read, list, replace, patch and
# delete every kind of object, with what goes with it (ETag, If-Match,
# Location, generations, the desired-state table and its tombstones,
# tokens, YAML bodies, signup, the audit log, pagination).  One nginx for
# the whole file; the database is shared with the other test files of the
# run, so every name here starts with "t30-" and lists are filtered.
use strict;
use warnings;

use Test::More;

use KubeNova::Api qw(free_port);
use KubeNova::Pg qw(psql require_pg);

require_pg();

# a second server without signup, to see it switched off
my $port_nosignup = free_port();
my $api = KubeNova::Api->start(
    signup => 1,
    http_config => "server {\n    listen 127.0.0.1:$port_nosignup;\n"
                 . "    location /api/ { kubenova_api; }\n}",
);
my $ngx = $api->ngx;

sub summary { KubeNova::Api::error_summary($_[0]) }
sub fields  { KubeNova::Api::error_fields($_[0]) }

sub etag_is_generation {
    my ($r, $name) = @_;
    is $r->{headers}{etag}, qq{"$r->{json}{generation}"},
        "$name: ETag is the generation";
}

# desired_state rows of a tenant: "cluster kind name" => "generation deleted"
sub ds {
    my ($tenant) = @_;
    my %rows;
    for (split /\n/, psql("SELECT cluster, kind, name, generation, deleted "
                          . "FROM desired_state WHERE tenant = '$tenant'")) {
        my ($cl, $kind, $name, $gen, $del) = split /\|/;
        $rows{"$cl $kind $name"} = { generation => $gen, deleted => $del };
    }
    return \%rows;
}

sub live { my ($rows) = @_; [sort grep { $rows->{$_}{deleted} eq 'f' } keys %$rows] }
sub dead { my ($rows) = @_; [sort grep { $rows->{$_}{deleted} eq 't' } keys %$rows] }

sub names_in { my ($items, $re) = @_; [map { $_->{name} } grep { $_->{name} =~ $re } @$items] }

my $offset = $ngx->error_log_offset;

subtest 'whoami of the bootstrap admin' => sub {
    my $r = $api->get('whoami');
    is $r->{status}, 200, 'status';
    is_deeply $r->{json}, { principal => 'bootstrap-admin', user => undef,
                            role => 'admin', tenant => undef }, 'body';
    is $r->{headers}{'content-type'}, 'application/json', 'JSON';
};

subtest 'plans' => sub {
    my %plan = (name => 't30-plan', cpu => '2', memory => '4Gi',
                storage => '20Gi', pods => 40, price_monthly => 3000);
    my $r = $api->post('plans', body => \%plan);
    is $r->{status}, 201, 'POST: 201';
    is $r->{headers}{location}, '/api/v1/plans/t30-plan', 'Location';
    is $r->{headers}{etag}, '"1"', 'ETag "1"';
    is_deeply { map { $_ => $r->{json}{$_} } keys %plan }, \%plan,
        'the plan as given';
    is $r->{json}{load_balancers}, 0, 'load_balancers defaults to 0';
    is $r->{json}{gpus}, 0, 'gpus defaults to 0';
    is $r->{json}{currency}, 'EUR', 'currency defaults to EUR';
    is $r->{json}{default}, JSON::PP::false, 'not the default plan';
    like $r->{json}{created_at}, qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/,
        'created_at RFC 3339';

    $r = $api->post('plans', body => \%plan);
    is summary($r), '409 already_exists', 'POST again: 409 already_exists';

    $r = $api->get('plans/t30-plan');
    is $r->{status}, 200, 'GET: 200';
    etag_is_generation($r, 'GET');
    is $r->{json}{pods}, 40, 'GET answers what was stored';

    my ($items) = $api->list_all('plans');
    is_deeply names_in($items, qr/^t30-/), ['t30-plan'], 'listed';
    ok((grep { $_->{name} eq 'small' && $_->{default} } @$items),
       'the default plan "small" is listed as the default');

    # PUT replaces: what is left out falls back to its default
    $r = $api->put('plans/t30-plan',
                   body => { %plan, gpus => 2, price_monthly => 3500 });
    is $r->{status}, 200, 'PUT: 200';
    is $r->{json}{generation}, 2, 'generation 2';
    is $r->{headers}{etag}, '"2"', 'ETag "2"';
    ok !exists $r->{headers}{location}, 'no Location on 200';

    $r = $api->put('plans/t30-plan',
                   body => { %plan, gpus => 2, price_monthly => 3500 });
    is $r->{status}, 200, 'PUT identical: 200';
    is $r->{json}{generation}, 2, 'PUT identical: same generation';

    # PATCH is a merge patch: null removes (back to the default)
    $r = $api->patch('plans/t30-plan', body => { gpus => undef, pods => 50 },
                     type => 'application/merge-patch+json');
    is $r->{status}, 200, 'PATCH (merge-patch+json): 200';
    is $r->{json}{gpus}, 0, 'PATCH null: gpus back to its default';
    is $r->{json}{pods}, 50, 'PATCH: pods changed';
    is $r->{json}{price_monthly}, 3500, 'PATCH: the rest kept';
    is $r->{json}{generation}, 3, 'PATCH: generation 3';

    $r = $api->patch('plans/t30-plan', body => { pods => 50 });
    is $r->{json}{generation}, 3, 'PATCH without a change: same generation';

    # If-Match
    $r = $api->patch('plans/t30-plan', body => { pods => 60 },
                     headers => { 'If-Match' => '"2"' });
    is summary($r), '412 precondition_failed', 'stale If-Match: 412';
    $r = $api->get('plans/t30-plan');
    is $r->{json}{pods}, 50, '... and nothing changed';
    is $r->{json}{generation}, 3, '... not even the generation';

    $r = $api->put('plans/t30-plan', body => { %plan, pods => 60 },
                   headers => { 'If-Match' => '"1"' });
    is summary($r), '412 precondition_failed', 'stale If-Match on PUT: 412';
    $r = $api->del('plans/t30-plan', headers => { 'If-Match' => '"2"' });
    is summary($r), '412 precondition_failed', 'stale If-Match on DELETE: 412';
    is $api->get('plans/t30-plan')->{status}, 200, '... still there';

    $r = $api->patch('plans/t30-plan', body => { pods => 60 },
                     headers => { 'If-Match' => '"3"' });
    is $r->{status}, 200, 'current If-Match: 200';
    is $r->{json}{generation}, 4, 'generation 4';
    $r = $api->patch('plans/t30-plan', body => { pods => 61 },
                     headers => { 'If-Match' => '*' });
    is $r->{status}, 200, 'If-Match * on an existing object: 200';
    $r = $api->put('plans/t30-nosuch', body => { %plan, name => 't30-nosuch' },
                   headers => { 'If-Match' => '*' });
    is summary($r), '412 precondition_failed',
        'If-Match * on a missing object: 412';
    is $api->get('plans/t30-nosuch')->{status}, 404, '... not created';

    # PUT creates
    $r = $api->put('plans/t30-plan2', body => { %plan, name => 't30-plan2' });
    is $r->{status}, 201, 'PUT a new name: 201';
    is $r->{headers}{location}, '/api/v1/plans/t30-plan2',
        'Location of a PUT-created object: the request path';
    $r = $api->put('plans/t30-plan2', body => { %plan, name => 't30-other' });
    is summary($r), '422 invalid_field', 'PUT with another name in the body';
    is_deeply fields($r), ['name'], '... names the field';

    # the default plan, and plans in use
    $r = $api->del('plans/small');
    is summary($r), '409 conflict', 'the default plan cannot be deleted';
    $r = $api->post('tenants', body => { name => 't30-planuser',
                                         plan => 't30-plan2' });
    is $r->{status}, 201, 'a tenant on t30-plan2';
    $r = $api->del('plans/t30-plan2');
    is summary($r), '409 conflict', 'a plan in use cannot be deleted';
    is $api->del('tenants/t30-planuser')->{status}, 204, 'tenant deleted';

    $r = $api->del('plans/t30-plan2');
    is $r->{status}, 204, 'DELETE: 204';
    is $r->{body}, '', 'no body';
    is summary($api->get('plans/t30-plan2')), '404 not_found', 'GET: 404';
    is summary($api->del('plans/t30-plan2')), '404 not_found',
        'DELETE again: 404';
    is $api->del('plans/t30-plan')->{status}, 204, 'the other one too';
};

subtest 'clusters' => sub {
    my $r = $api->post('clusters',
                       body => { name => 't30-c1', labels => { region => 'eu' } });
    is $r->{status}, 201, 'POST: 201';
    is $r->{headers}{location}, '/api/v1/clusters/t30-c1', 'Location';
    is_deeply $r->{json}{labels}, { region => 'eu' }, 'labels';
    is $r->{json}{connected}, JSON::PP::false, 'not connected';
    ok exists $r->{json}{last_seen_at} && !defined $r->{json}{last_seen_at},
        'last_seen_at null';

    ok !exists $r->{json}{secret},
        'no cluster secret (retired): the Operator registers with the join token';
    is psql("SELECT count(*) FROM information_schema.columns "
            . "WHERE table_name = 'clusters' AND column_name = 'secret_hash'"), 0,
        '... and the clusters table keeps no secret hash';

    $r = $api->get('clusters/t30-c1');
    is $r->{status}, 200, 'GET';
    etag_is_generation($r, 'GET');

    is summary($api->post('clusters/t30-c1/secret')), '404 not_found',
        'POST /clusters/{c}/secret is gone: 404';

    $r = $api->put('clusters/t30-c1', body => { labels => { region => 'eu' } });
    is $r->{status}, 200, 'PUT identical: 200';
    is $r->{json}{generation}, 1, '... same generation';

    $r = $api->patch('clusters/t30-c1', body => { labels => { tier => 'gold' } });
    is $r->{status}, 200, 'PATCH labels';
    is_deeply $r->{json}{labels}, { region => 'eu', tier => 'gold' },
        'merge patch merges the labels object';
    is $r->{json}{generation}, 2, 'generation 2';
    $r = $api->patch('clusters/t30-c1', body => { labels => { tier => undef } });
    is_deeply $r->{json}{labels}, { region => 'eu' }, 'null removes a label';

    $r = $api->put('clusters/t30-c1', body => { labels => {} });
    is_deeply $r->{json}{labels}, {}, 'PUT replaces the labels';

    # what GET answered may be sent back: read-only members are ignored
    $r = $api->patch('clusters/t30-c1', body => { connected => JSON::PP::true,
                                                  generation => 99 });
    is $r->{status}, 200, 'read-only members in a PATCH: 200';
    is $r->{json}{connected}, JSON::PP::false, '... connected is not the API\'s';
    is $r->{json}{generation}, 4, '... nor is the generation';
    $r = $api->put('clusters/t30-c1', body => $api->get('clusters/t30-c1')->{json});
    is $r->{status}, 200, 'PUT of what GET answered: 200';
    is $r->{json}{generation}, 4, '... changes nothing';
    $r = $api->patch('clusters/t30-c1', body => { colour => 'blue' });
    is summary($r), '422 invalid_field', 'an unknown member: 422';
    is_deeply KubeNova::Api::error_details($r), ['colour: unknown field'],
        '... names it';

    $r = $api->post('clusters', body => { name => 't30-c2' });
    is $r->{status}, 201, 'second cluster';
    is_deeply $r->{json}{labels}, {}, 'labels default to {}';
    my ($items) = $api->list_all('clusters');
    is_deeply names_in($items, qr/^t30-c\d$/), ['t30-c1', 't30-c2'],
        'listed in name order';

    is $api->del('clusters/t30-c1')->{status}, 204, 'DELETE: 204';
    is $api->del('clusters/t30-c2')->{status}, 204, 'DELETE: 204';
    is summary($api->get('clusters/t30-c1')), '404 not_found', 'gone';
};

subtest 'tenants: placement by name and by label selector' => sub {
    for my $c (['t30-eu1', { region => 'eu', tier => 'gold' }],
               ['t30-eu2', { region => 'eu' }],
               ['t30-us1', { region => 'us' }]) {
        is $api->post('clusters', body => { name => $c->[0], labels => $c->[1] })
               ->{status}, 201, "cluster $c->[0]";
    }

    # by name
    my $r = $api->post('tenants', body => {
        name => 't30-named', labels => { team => 'a' },
        placement => { clusters => ['t30-eu1', 't30-us1'] },
        ingress_hostnames => ['t30-named.example.com'] });
    is $r->{status}, 201, 'POST tenant placed by name: 201';
    is $r->{headers}{location}, '/api/v1/tenants/t30-named', 'Location';
    is $r->{json}{plan}, 'small', 'the default plan';
    is $r->{json}{status}, 'active', 'active';
    is_deeply $r->{json}{placement}, { clusters => ['t30-eu1', 't30-us1'] },
        'placement as given';

    my $ds = ds('t30-named');
    is_deeply live($ds), ['t30-eu1 Tenant t30-named', 't30-us1 Tenant t30-named'],
        'one desired_state row per named cluster';
    is_deeply dead($ds), [], 'no tombstones';
    is psql("SELECT spec->>'plan' || ' ' || (spec->'quota'->>'pods') "
            . "FROM desired_state WHERE tenant = 't30-named' LIMIT 1"),
        'small 20', 'the spec carries the plan and its quota';

    # by selector
    $r = $api->post('tenants', body => {
        name => 't30-sel', placement => { cluster_selector => { region => 'eu' } } });
    is $r->{status}, 201, 'POST tenant placed by selector: 201';
    my $sel = ds('t30-sel');
    is_deeply live($sel), ['t30-eu1 Tenant t30-sel', 't30-eu2 Tenant t30-sel'],
        'one row per selected cluster';

    # a change of the tenant bumps its rows' generations
    $r = $api->patch('tenants/t30-named', body => { labels => { team => 'b' } });
    is $r->{status}, 200, 'PATCH labels';
    is $r->{json}{generation}, 2, 'tenant generation 2';
    my $ds2 = ds('t30-named');
    for my $k (keys %$ds) {
        cmp_ok $ds2->{$k}{generation}, '>', $ds->{$k}{generation},
            "$k: new generation";
    }

    # PUT of the same document: nothing moves
    my $doc = $api->get('tenants/t30-named')->{json};
    my %body = map { $_ => $doc->{$_} }
        qw(plan quota_overrides labels placement suspended ingress_hostnames);
    $r = $api->put('tenants/t30-named', body => \%body);
    is $r->{status}, 200, 'PUT identical: 200';
    is $r->{json}{generation}, 2, '... same generation';
    is_deeply ds('t30-named'), $ds2, '... desired_state untouched';

    # cluster labels move selector placement
    $r = $api->patch('clusters/t30-eu2', body => { labels => { region => 'us' } });
    is $r->{status}, 200, 'cluster t30-eu2 relabelled region=us';
    my $sel2 = ds('t30-sel');
    is_deeply live($sel2), ['t30-eu1 Tenant t30-sel'], 'still on t30-eu1';
    is_deeply dead($sel2), ['t30-eu2 Tenant t30-sel'], 'tombstone on t30-eu2';
    cmp_ok $sel2->{'t30-eu2 Tenant t30-sel'}{generation}, '>',
        $sel->{'t30-eu2 Tenant t30-sel'}{generation}, 'the tombstone has a new generation';
    is $sel2->{'t30-eu1 Tenant t30-sel'}{generation},
        $sel->{'t30-eu1 Tenant t30-sel'}{generation}, 'the t30-eu1 row did not change';
    is_deeply live(ds('t30-named')), ['t30-eu1 Tenant t30-named', 't30-us1 Tenant t30-named'],
        'placement by name does not follow labels';

    $r = $api->patch('clusters/t30-us1', body => { labels => { region => 'eu' } });
    is $r->{status}, 200, 'cluster t30-us1 relabelled region=eu';
    is_deeply live(ds('t30-sel')), ['t30-eu1 Tenant t30-sel', 't30-us1 Tenant t30-sel'],
        'the selector tenant lands on t30-us1';

    $r = $api->patch('clusters/t30-eu2', body => { labels => { region => 'eu' } });
    my $sel3 = ds('t30-sel');
    is_deeply live($sel3), ['t30-eu1 Tenant t30-sel', 't30-eu2 Tenant t30-sel',
                            't30-us1 Tenant t30-sel'],
        'back on t30-eu2: the tombstone is live again';
    cmp_ok $sel3->{'t30-eu2 Tenant t30-sel'}{generation}, '>',
        $sel2->{'t30-eu2 Tenant t30-sel'}{generation}, '... with a new generation';

    # placement: an unknown cluster is refused
    $r = $api->patch('tenants/t30-sel',
                     body => { placement => { clusters => ['t30-nosuch'] } });
    is summary($r), '422 invalid_field', 'unknown cluster in placement: 422';
    is_deeply fields($r), ['placement.clusters[0]'], '... names the entry';

    # an app of a placed tenant follows it everywhere
    $r = $api->post('tenants/t30-named/apps', body => {
        apiVersion => 'core.oam.dev/v1beta1', kind => 'Application',
        metadata => { name => 'web' }, spec => { components => [] } });
    is $r->{status}, 201, 'app of t30-named';
    is_deeply live(ds('t30-named')),
        ['t30-eu1 Application t30-named/web', 't30-eu1 Tenant t30-named',
         't30-us1 Application t30-named/web', 't30-us1 Tenant t30-named'],
        'an Application row on each cluster of the tenant';

    # delete: tombstones, status deleting, 202
    my $before = ds('t30-named');
    $r = $api->del('tenants/t30-named');
    is $r->{status}, 202, 'DELETE a placed tenant: 202';
    is $r->{json}{status}, 'deleting', 'status deleting';
    is $r->{json}{generation}, 3, 'a new generation';
    etag_is_generation($r, 'DELETE 202');
    my $after = ds('t30-named');
    is_deeply live($after), [], 'no live row left';
    is_deeply dead($after), [sort keys %$before], 'every row is a tombstone';
    for my $k (sort keys %$before) {
        cmp_ok $after->{$k}{generation}, '>', $before->{$k}{generation},
            "$k: tombstone generation";
    }
    $r = $api->get('tenants/t30-named');
    is $r->{json}{status}, 'deleting', 'GET shows it deleting';
    is summary($api->patch('tenants/t30-named', body => { labels => {} })),
        '409 conflict', 'a deleting tenant cannot be changed';
    is summary($api->post('tenants/t30-named/apps', body => {
            apiVersion => 'core.oam.dev/v1beta1', kind => 'Application',
            metadata => { name => 'api' } })),
        '409 conflict', 'nor get new apps';
    $r = $api->del('tenants/t30-named');
    is $r->{status}, 202, 'DELETE again: still 202';
    is $r->{json}{generation}, 3, '... same generation';

    # the clusters acknowledge (what the gateway does): the tenant goes
    for my $k (sort keys %$after) {
        my ($cl, $kind, $name) = split / /, $k;
        is psql("SELECT api.ack_deleted('$cl', '$kind', '$name', "
                . "$after->{$k}{generation})"), 't', "ack $k";
    }
    is summary($api->get('tenants/t30-named')), '404 not_found',
        'once every cluster acknowledged, the tenant is gone';
    is psql("SELECT count(*) FROM tenant_hostnames WHERE tenant = 't30-named'"),
        0, 'its host names are free again';

    # placed nowhere: gone at once
    $r = $api->post('tenants', body => { name => 't30-nowhere' });
    is $r->{status}, 201, 'a tenant placed nowhere';
    is_deeply ds('t30-nowhere'), {}, 'no desired_state';
    $r = $api->del('tenants/t30-nowhere');
    is $r->{status}, 204, 'DELETE: 204';
    is summary($api->get('tenants/t30-nowhere')), '404 not_found', 'gone';

    # a tenant's placement can empty: rows become tombstones
    $r = $api->patch('tenants/t30-sel', body => { placement => undef });
    is $r->{status}, 200, 'PATCH placement null';
    is_deeply $r->{json}{placement}, {}, 'placed nowhere';
    is_deeply live(ds('t30-sel')), [], 'every row a tombstone';

    # deleting a cluster takes its rows with it
    is $api->del('clusters/t30-eu1')->{status}, 204, 'cluster t30-eu1 deleted';
    is psql("SELECT count(*) FROM desired_state WHERE cluster = 't30-eu1'"), 0,
        'its desired_state rows went with it';
    $r = $api->del('tenants/t30-sel');
    is $r->{status}, 204, 'a tenant with only tombstones is deleted at once';
};

subtest 'tenants: cluster_resources reach the cluster in the spec' => sub {
    is $api->post('clusters', body => { name => 't30-cr' })->{status}, 201, 'cluster t30-cr';
    my $spec_sql = "SELECT spec->'cluster_resources' FROM desired_state "
                 . "WHERE tenant = 't30-cr' AND NOT deleted";

    my $r = $api->post('tenants', body => {
        name => 't30-cr', placement => { clusters => ['t30-cr'] } });
    is $r->{status}, 201, 'POST without cluster_resources: 201';
    is_deeply $r->{json}{cluster_resources}, [], '... none: the lists stay empty';
    is psql($spec_sql), '[]', '... and the spec says so';
    my $gen = ds('t30-cr')->{'t30-cr Tenant t30-cr'}{generation};

    $r = $api->patch('tenants/t30-cr',
                     body => { cluster_resources => ['storageclasses', 'runtimeclasses'] });
    is $r->{status}, 200, 'PATCH cluster_resources: 200';
    is_deeply $r->{json}{cluster_resources}, ['storageclasses', 'runtimeclasses'],
        '... returned in the order given';
    is_deeply $api->get('tenants/t30-cr')->{json}{cluster_resources},
        ['storageclasses', 'runtimeclasses'], '... and stored';
    is psql($spec_sql), '["storageclasses", "runtimeclasses"]',
        '... in the spec sent to the Operator';
    my $gen2 = ds('t30-cr')->{'t30-cr Tenant t30-cr'}{generation};
    cmp_ok $gen2, '>', $gen, '... under a new generation, so it reaches the cluster';

    $r = $api->patch('tenants/t30-cr',
                     body => { cluster_resources => ['storageclasses', 'runtimeclasses'] });
    is $r->{json}{generation}, 2, 'the same again: the same tenant generation';
    is ds('t30-cr')->{'t30-cr Tenant t30-cr'}{generation}, $gen2, '... and spec generation';

    $r = $api->post('tenants', body => {
        name => 't30-cr2', cluster_resources => [qw(ingressclasses priorityclasses)] });
    is $r->{status}, 201, 'POST with cluster_resources: 201';
    is_deeply $r->{json}{cluster_resources}, [qw(ingressclasses priorityclasses)],
        '... returned';

    $r = $api->put('tenants/t30-cr', body => { placement => { clusters => ['t30-cr'] } });
    is $r->{status}, 200, 'PUT without cluster_resources';
    is_deeply $r->{json}{cluster_resources}, [], '... empties them';
    is psql($spec_sql), '[]', '... in the spec too';

    is $api->del('tenants/t30-cr2')->{status}, 204, 'cleanup t30-cr2';
};

subtest 'tenant users' => sub {
    is $api->post('tenants', body => { name => 't30-users' })->{status}, 201,
        'tenant';
    my $r = $api->post('tenants/t30-users/users',
                       body => { name => 't30-alice', role => 'owner' });
    is $r->{status}, 201, 'POST user: 201';
    is $r->{headers}{location}, '/api/v1/tenants/t30-users/users/t30-alice',
        'Location';
    is_deeply { map { $_ => $r->{json}{$_} } qw(name tenant role) },
        { name => 't30-alice', tenant => 't30-users', role => 'owner' }, 'body';
    $r = $api->post('tenants/t30-users/users',
                    body => { name => 't30-bob', role => 'readonly' });
    is $r->{status}, 201, 'second user';
    is summary($api->post('tenants/t30-users/users',
                          body => { name => 't30-bob', role => 'owner' })),
        '409 already_exists', 'same name again: 409';

    $r = $api->get('tenants/t30-users/users/t30-bob');
    is $r->{status}, 200, 'GET';
    etag_is_generation($r, 'GET user');
    is $r->{json}{role}, 'readonly', 'role';

    my ($items) = $api->list_all('tenants/t30-users/users');
    is_deeply [map { $_->{name} } @$items], ['t30-alice', 't30-bob'],
        'list: exactly the tenant\'s users';

    $r = $api->patch('tenants/t30-users/users/t30-bob', body => { role => 'owner' });
    is $r->{status}, 200, 'PATCH role';
    is $r->{json}{role}, 'owner', 'now an owner';
    is $r->{json}{generation}, 2, 'generation 2';
    $r = $api->patch('tenants/t30-users/users/t30-bob', body => { role => 'admin' });
    is summary($r), '422 invalid_field', 'role admin is not a tenant role';
    is_deeply fields($r), ['role'], '... names the field';

    # the last owner stays (for owners; admins may)
    my $tok = $api->post('users/t30-alice/tokens', body => { name => 'cli' })
        ->{json}{token};
    ok $tok, 'a token for t30-alice';
    is $api->patch('tenants/t30-users/users/t30-bob', token => $tok,
                   body => { role => 'readonly' })->{status}, 200,
        'an owner demotes another owner';
    is summary($api->del('tenants/t30-users/users/t30-alice', token => $tok)),
        '409 conflict', 'the last owner may not delete itself';
    $r = $api->del('tenants/t30-users/users/t30-bob', token => $tok);
    is $r->{status}, 204, 'the owner deletes a member: 204';
    is summary($api->get('tenants/t30-users/users/t30-bob')), '404 not_found',
        'gone';
    is summary($api->get('tenants/t30-users/users/t30-nosuch')), '404 not_found',
        'unknown user: 404';

    $r = $api->del('tenants/t30-users/users/t30-alice');
    is $r->{status}, 204, 'an admin may delete the last owner';
    is psql("SELECT count(*) FROM tokens WHERE user_name = 't30-alice'"), 0,
        'its tokens went with it';
    is $api->get('whoami', token => $tok)->{status}, 401,
        'and no longer authenticate';
    is $api->del('tenants/t30-users')->{status}, 204, 'tenant deleted';
};

subtest 'admins' => sub {
    my $r = $api->post('admins', body => { name => 't30-root' });
    is $r->{status}, 201, 'POST: 201';
    is $r->{headers}{location}, '/api/v1/admins/t30-root', 'Location';
    is $r->{json}{role}, 'admin', 'role admin';
    ok exists $r->{json}{tenant} && !defined $r->{json}{tenant}, 'no tenant';

    is summary($api->post('admins', body => { name => 't30-root2',
                                               tenant => 't30-x' })),
        '422 invalid_field', 'an admin has no tenant';

    my ($items) = $api->list_all('admins');
    is_deeply names_in($items, qr/^t30-/), ['t30-root'], 'listed';
    ok !(grep { $_->{role} ne 'admin' } @$items), 'only admins listed';

    my $tok = $api->post('users/t30-root/tokens', body => { name => 'ops' })
        ->{json}{token};
    $r = $api->get('whoami', token => $tok);
    is_deeply $r->{json}, { principal => 'user:t30-root', user => 't30-root',
                            role => 'admin', tenant => undef },
        'whoami of a database admin';
    is $api->get('audit?limit=1', token => $tok)->{status}, 200,
        'a database admin reads the audit log';

    is $api->del('admins/t30-root')->{status}, 204, 'DELETE: 204';
    is summary($api->del('admins/t30-root')), '404 not_found', 'again: 404';
    is $api->get('whoami', token => $tok)->{status}, 401,
        'its token is gone with it';
};

subtest 'tokens' => sub {
    is $api->post('tenants', body => { name => 't30-tok' })->{status}, 201,
        'tenant';
    is $api->post('tenants/t30-tok/users',
                  body => { name => 't30-carol', role => 'readonly' })->{status},
        201, 'user';

    my $r = $api->post('users/t30-carol/tokens', body => { name => 'laptop' });
    is $r->{status}, 201, 'POST token: 201';
    is $r->{headers}{location}, '/api/v1/users/t30-carol/tokens/laptop', 'Location';
    my $secret = $r->{json}{token};
    like $secret, qr/^kn_[A-Za-z0-9_-]{43}$/, 'the secret, once';
    is_deeply { map { $_ => $r->{json}{$_} } qw(name user revoked) },
        { name => 'laptop', user => 't30-carol', revoked => JSON::PP::false },
        'the token';
    is psql("SELECT count(*) FROM tokens WHERE token_hash = "
            . "encode(sha256('$secret'::bytea), 'hex')"), 1,
        'only its SHA-256 is stored';

    $r = $api->get('whoami', token => $secret);
    is $r->{status}, 200, 'the secret authenticates';
    is_deeply $r->{json}, { principal => 'user:t30-carol', user => 't30-carol',
                            role => 'readonly', tenant => 't30-tok' }, 'as t30-carol';

    $r = $api->post('users/t30-carol/tokens',
                    body => { name => 'ci', expires_at => '2099-01-01T00:00:00Z' });
    is $r->{status}, 201, 'a token with an expiry';
    is $r->{json}{expires_at}, '2099-01-01T00:00:00Z', 'expires_at';
    is summary($api->post('users/t30-carol/tokens', body => { name => 'laptop' })),
        '409 already_exists', 'a live token of the same name: 409';
    $r = $api->post('users/t30-carol/tokens',
                    body => { name => 'old', expires_at => '2001-01-01T00:00:00Z' });
    is summary($r), '422 invalid_field', 'an expiry in the past: 422';
    is_deeply fields($r), ['expires_at'], '... names the field';

    my ($items) = $api->list_all('users/t30-carol/tokens');
    is_deeply [map { $_->{name} } @$items], ['ci', 'laptop'], 'list';
    ok !(grep { exists $_->{token} } @$items), 'without the secret';
    is $items->[1]{user}, 't30-carol', 'with the user';
    like $items->[1]{last_used_at} // '', qr/^\d{4}-/, 'last_used_at was set';

    # the user itself manages its own tokens
    $r = $api->post('users/t30-carol/tokens', token => $secret,
                    body => { name => 'phone' });
    is $r->{status}, 201, 'a user makes its own token';

    $r = $api->del('users/t30-carol/tokens/laptop');
    is $r->{status}, 204, 'revoke: 204';
    $r = $api->get('whoami', token => $secret);
    is summary($r), '401 unauthorized', 'the revoked token: 401';
    is $r->{headers}{'www-authenticate'},
        'Bearer realm="kubenova", error="invalid_token"', 'with WWW-Authenticate';
    ($items) = $api->list_all('users/t30-carol/tokens');
    my ($laptop) = grep { $_->{name} eq 'laptop' } @$items;
    is $laptop->{revoked}, JSON::PP::true, 'listed as revoked';
    is summary($api->del('users/t30-carol/tokens/nosuch')), '404 not_found',
        'revoking an unknown token: 404';

    $r = $api->post('users/t30-carol/tokens', body => { name => 'laptop' });
    is $r->{status}, 201, 'a revoked token\'s name can be used again';
    isnt $r->{json}{token}, $secret, 'with a new secret';
    is $api->get('whoami', token => $r->{json}{token})->{status}, 200,
        'that works';
    is $api->get('whoami', token => $secret)->{status}, 401,
        'the old one still does not';

    is summary($api->get('users/t30-nosuch/tokens')), '404 not_found',
        'tokens of an unknown user: 404';
    is $api->del('tenants/t30-tok')->{status}, 204, 'tenant deleted';
};

subtest 'applications, JSON and YAML' => sub {
    is $api->post('clusters', body => { name => 't30-app-c' })->{status}, 201,
        'cluster';
    is $api->post('tenants', body => { name => 't30-apps',
                                       placement => { clusters => ['t30-app-c'] } })
           ->{status}, 201, 'tenant';

    my %doc = (apiVersion => 'core.oam.dev/v1beta1', kind => 'Application',
               metadata => { name => 'web' },
               spec => { components => [{ name => 'web', type => 'webservice',
                                           properties => { image => 'nginx:1.25',
                                                            port => 80 } }] });
    my $r = $api->post('tenants/t30-apps/apps', body => \%doc);
    is $r->{status}, 201, 'POST JSON: 201';
    is $r->{headers}{location}, '/api/v1/tenants/t30-apps/apps/web', 'Location';
    is_deeply $r->{json}{document},
        { %doc, metadata => { name => 'web', namespace => 't30-apps-apps' } },
        'the document as given, in the tenant\'s namespace';
    is $r->{json}{name}, 'web', 'named by metadata.name';
    is $r->{json}{status}, 'active', 'active';

    my $yaml = <<'YAML';
apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: api
  labels:
    app: api
spec:
  components:
    - name: api
      type: webservice
      properties:
        image: "registry.example.com/api:2.0"
        port: 8080
        replicas: 3
        debug: false
        env: ~
YAML
    $r = $api->post('tenants/t30-apps/apps', body => $yaml,
                    type => 'application/yaml');
    is $r->{status}, 201, 'POST YAML (application/yaml): 201';
    is $r->{headers}{location}, '/api/v1/tenants/t30-apps/apps/api', 'Location';
    is_deeply $r->{json}{document}, {
        apiVersion => 'core.oam.dev/v1beta1', kind => 'Application',
        metadata => { name => 'api', labels => { app => 'api' },
                      namespace => 't30-apps-apps' },
        spec => { components => [{ name => 'api', type => 'webservice',
            properties => { image => 'registry.example.com/api:2.0',
                            port => 8080, replicas => 3,
                            debug => JSON::PP::false, env => undef } }] } },
        'YAML stored as JSON, scalars typed';

    $r = $api->get('tenants/t30-apps/apps/api');
    is $r->{status}, 200, 'GET';
    etag_is_generation($r, 'GET app');
    is $r->{json}{document}{spec}{components}[0]{properties}{replicas}, 3,
        'GET answers the document';

    (my $yaml2 = $yaml) =~ s/replicas: 3/replicas: 5/;
    $r = $api->put('tenants/t30-apps/apps/api', body => $yaml2,
                   type => 'application/yaml; charset=utf-8');
    is $r->{status}, 200, 'PUT YAML: 200';
    is $r->{json}{generation}, 2, 'generation 2';
    $r = $api->put('tenants/t30-apps/apps/api', body => $yaml2,
                   type => 'text/yaml');
    is $r->{status}, 200, 'PUT the same YAML (text/yaml)';
    is $r->{json}{generation}, 2, '... same generation';
    is psql("SELECT spec->'spec'->'components'->0->'properties'->>'replicas' "
            . "FROM desired_state WHERE name = 't30-apps/api'"), 5,
        'desired_state carries the new document';

    $r = $api->put('tenants/t30-apps/apps/api', body => { %doc,
                   metadata => { name => 'api' } },
                   headers => { 'If-Match' => '"1"' });
    is summary($r), '412 precondition_failed', 'stale If-Match: 412';
    is $api->get('tenants/t30-apps/apps/api')->{json}{document}{spec}
           {components}[0]{properties}{replicas}, 5, '... unchanged';

    $r = $api->put('tenants/t30-apps/apps/api', body => { %doc });
    is summary($r), '422 invalid_field', 'PUT with another metadata.name';
    is_deeply fields($r), ['metadata.name'], '... names it';

    # the alias of the spec
    $r = $api->post('users/t30-apps/apps', body => { %doc, metadata => { name => 'worker' } });
    is $r->{status}, 201, 'POST /users/{t}/apps (alias): 201';
    is $r->{json}{tenant}, 't30-apps', 'in the tenant';
    is $api->get('tenants/t30-apps/apps/worker')->{status}, 200,
        'found under /tenants/{t}/apps';
    is $r->{headers}{location}, '/api/v1/tenants/t30-apps/apps/worker',
        'Location points at the canonical path';

    my ($items) = $api->list_all('tenants/t30-apps/apps', limit => 2);
    is_deeply [map { $_->{name} } @$items], ['api', 'web', 'worker'], 'list';

    is psql("SELECT count(*) FROM desired_state WHERE tenant = 't30-apps' "
            . "AND kind = 'Application' AND NOT deleted"), 3,
        'three Application rows';

    $r = $api->del('tenants/t30-apps/apps/web');
    is $r->{status}, 202, 'DELETE a placed app: 202';
    is $r->{json}{status}, 'deleting', 'deleting';
    is psql("SELECT deleted FROM desired_state WHERE name = 't30-apps/web'"), 't',
        'tombstone';
    is summary($api->put('tenants/t30-apps/apps/web', body => \%doc)),
        '409 conflict', 'a deleting app cannot be replaced';

    # placed nowhere: apps go at once
    is $api->patch('tenants/t30-apps', body => { placement => {} })
           ->{json}{generation}, 1, 'PATCH placement {} merges nothing';
    is $api->patch('tenants/t30-apps', body => { placement => undef })->{status},
        200, 'PATCH placement null: placed nowhere';
    $r = $api->del('tenants/t30-apps/apps/worker');
    is $r->{status}, 204, 'DELETE an app that runs nowhere: 204';
    is summary($api->get('tenants/t30-apps/apps/worker')), '404 not_found', 'gone';

    is $api->del('clusters/t30-app-c')->{status}, 204, 'cluster deleted';
    is summary($api->get('tenants/t30-apps/apps/web')), '404 not_found',
        'the deleting app went with the last cluster that held it';
    is $api->del('tenants/t30-apps')->{status}, 204, 'tenant deleted';
};

subtest 'signup' => sub {
    my $r = $api->post('signup', token => undef,
                       body => { tenant => 't30-self', user => 't30-dave' });
    is $r->{status}, 201, 'POST /signup without a token: 201';
    is $r->{json}{tenant}{name}, 't30-self', 'the tenant';
    is $r->{json}{tenant}{plan}, 'small', 'on the default plan';
    is_deeply $r->{json}{tenant}{placement}, {}, 'placed nowhere';
    is $r->{json}{user}{role}, 'owner', 'its owner';
    my $tok = $r->{json}{token};
    like $tok, qr/^kn_/, 'and a token';
    $r = $api->get('whoami', token => $tok);
    is_deeply $r->{json}, { principal => 'user:t30-dave', user => 't30-dave',
                            role => 'owner', tenant => 't30-self' },
        'the token is the owner\'s';
    is $api->get('tenants/t30-self', token => $tok)->{status}, 200,
        'who sees the tenant';

    is summary($api->post('signup', token => undef,
                          body => { tenant => 't30-self', user => 't30-erin' })),
        '409 already_exists', 'the same tenant again: 409';
    is summary($api->post('signup', token => undef,
                          body => { tenant => 't30-self2', user => 't30-dave' })),
        '409 already_exists', 'the same user again: 409';
    is summary($api->get('tenants/t30-self2')), '404 not_found',
        '... and no tenant was left behind';

    $r = $api->post('signup', token => undef, port => $port_nosignup,
                    body => { tenant => 't30-self3', user => 't30-frank' });
    is $r->{status}, 404, 'signup off: 404';
    is $r->{json}{error}{message}, 'no such API endpoint', 'no such endpoint';
    is summary($api->get('tenants/t30-self3')), '404 not_found', 'nothing made';
    is $api->get('whoami', port => $port_nosignup)->{status}, 200,
        'the rest of the API is there';
    is $api->del('tenants/t30-self')->{status}, 204, 'tenant deleted';
};

subtest 'pagination' => sub {
    for my $i (1 .. 7) {
        is $api->post('clusters', body => { name => "t30-page-$i" })->{status},
            201, "cluster t30-page-$i";
    }
    my $r = $api->get('clusters?limit=2');
    is $r->{status}, 200, 'limit=2';
    is scalar @{ $r->{json}{items} }, 2, 'two items';
    ok defined $r->{json}{continue}, 'and a continue token';

    my ($items, $pages) = $api->list_all('clusters', limit => 2);
    cmp_ok $pages, '>=', 4, "$pages pages of 2";
    my @names = map { $_->{name} } @$items;
    is_deeply names_in($items, qr/^t30-page-/), [map { "t30-page-$_" } 1 .. 7],
        'every cluster exactly once, in order';
    is_deeply \@names, [sort @names], 'the whole list sorted';
    my %seen;
    is scalar(grep { $seen{$_}++ } @names), 0, 'no duplicates across pages';

    # pages of 3 over exactly our clusters' range
    ($items, $pages) = $api->list_all('clusters', limit => 3);
    is_deeply names_in($items, qr/^t30-page-/), [map { "t30-page-$_" } 1 .. 7],
        'the same with pages of 3';

    $r = $api->get('clusters?limit=500');
    is $r->{status}, 200, 'limit=500 is allowed';
    for my $bad ('limit=0', 'limit=501', 'limit=abc', 'limit=-1', 'limit=',
                 'limit=2.5', 'continue=!!!', 'continue=' . ('A' x 600)) {
        $r = $api->get("clusters?$bad");
        is summary($r), '400 invalid_query', "$bad: 400 invalid_query";
    }
    is summary($api->get('audit?continue=bGFyZ2U')), '400 invalid_query',
        'audit: a continue from another list: 400';

    $api->del("clusters/t30-page-$_") for 1 .. 7;
};

subtest 'audit log' => sub {
    my $tenant = $api->post('tenants', body => { name => 't30-audit' });
    is $tenant->{status}, 201, 'a write';
    my $refused = $api->post('tenants', body => { name => 't30-audit' });
    is $refused->{status}, 409, 'a refused write';
    my $u = $api->post('tenants/t30-audit/users',
                       body => { name => 't30-gina', role => 'readonly' });
    my $tok = $api->post('users/t30-gina/tokens', body => { name => 'x' })
        ->{json}{token};
    is $api->patch('tenants/t30-audit', token => $tok, body => { labels => {} })
           ->{status}, 403, 'a forbidden write';
    is $api->get('tenants/t30-audit', token => $tok)->{status}, 200, 'a read';
    is $api->get('whoami', token => 'kn_nosuchtoken')->{status}, 401,
        'an unauthenticated request';

    my $r = $api->get('audit?limit=20');
    is $r->{status}, 200, 'GET /audit';
    my @mine = grep { ($_->{resource} // '') =~ m{^tenants/t30-audit(/|$)}
                      || ($_->{resource} // '') =~ m{^users/t30-gina/} }
               @{ $r->{json}{items} };
    my @got = map { join ' ', $_->{action}, $_->{resource}, $_->{status},
                              $_->{principal} // 'null', $_->{tenant} // 'null' }
              reverse @mine;
    is_deeply \@got, [
        'tenant.create tenants/t30-audit 201 bootstrap-admin null',
        'tenant.create tenants/t30-audit 409 bootstrap-admin null',
        'user.create tenants/t30-audit/users/t30-gina 201 bootstrap-admin null',
        'token.create users/t30-gina/tokens/x 201 bootstrap-admin null',
        'tenant.patch tenants/t30-audit 403 user:t30-gina t30-audit',
    ], 'writes (refused ones too) with principal and status; reads and 401s not'
        or diag explain \@got;
    my @ids = map { $_->{id} } @{ $r->{json}{items} };
    is_deeply \@ids, [sort { $b <=> $a } @ids], 'newest first';
    like $r->{json}{items}[0]{at}, qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/, 'at';

    my ($items, $pages) = $api->list_all('audit', limit => 2);
    cmp_ok $pages, '>=', 3, "audit pages ($pages)";
    my @all = map { $_->{id} } @$items;
    is_deeply \@all, [sort { $b <=> $a } @all], 'paged: newest first, no repeats';

    $r = $api->get('audit?limit=1', token => $tok);
    is summary($r), '403 forbidden', 'not for tenant users';
    is $api->del('tenants/t30-audit')->{status}, 204, 'tenant deleted';
};

subtest 'methods and paths' => sub {
    my $r = $api->call(PATCH => 'tenants/t30-x/apps/web', body => {});
    is summary($r), '405 method_not_allowed', 'PATCH on an app: 405';
    is $r->{headers}{allow}, 'GET, HEAD, PUT, DELETE', 'Allow';
    $r = $api->call(DELETE => 'plans');
    is $r->{headers}{allow}, 'GET, HEAD, POST', 'Allow on a collection';
    my $get = $api->get('plans/small');
    $r = $api->call(HEAD => 'plans/small');
    is $r->{status}, 200, 'HEAD';
    is $r->{body}, '', 'HEAD has no body';
    is $r->{headers}{etag}, $get->{headers}{etag}, 'HEAD has the ETag of GET';
    is $api->get('plans/small/')->{status}, 200, 'a trailing slash is fine';
    $r = $api->get('plans/small/extra');
    is summary($r), '404 not_found', 'an unknown path: 404';
    is $r->{json}{error}{message}, 'no such API endpoint', '... from nginx';
    is summary($api->get('/api/v2/plans')), '404 not_found', 'another version: 404';
};

unlike scalar $ngx->error_log_since($offset), qr/\[(?:alert|emerg|crit)\]/,
    'no [alert], [crit] or [emerg] in error.log';
$ngx->stop;
done_testing;
