# The Manager's side of KubeVela applications (issue 7), against the real
# Manager and a python gRPC Operator (KubeNova::Gateway):
#
#   - validation (api.validate_app): JSON and YAML; apiVersion, kind; the
#     namespace set to <t>-apps when absent, 422 naming the field for any
#     other namespace anywhere (metadata, topology and override policies,
#     component and trait properties, raw objects) and for clusters outside
#     the tenant's placement (topology clusters and label selectors,
#     workflow steps, traits); tenant A cannot reach tenant B by any of them;
#     nothing stored on any error; 400 malformed YAML, 413 oversized;
#   - POST /users/{t}/apps, the spec's alias;
#   - GET .../apps/{name} and .../status: one entry per cluster (sync state,
#     generations, phase, services, health, workflow state);
#   - delete while the Operator is offline: "deleting" with the cluster
#     pending until it reconnects and acks the ObjectDelete; re-creating
#     the name meanwhile is 409;
#   - GET .../status?watch=1: server-sent events, first the current state,
#     then every change (an ApplicationStatus from the Operator), ": ping"
#     heartbeats, a last "deleted" event; at most kubenova_app_watchers
#     streams per worker (503 past it), a client that goes away frees its
#     slot; a reload ends the old worker's streams (no socket left open).
use strict;
use warnings;

use JSON::PP;
use Test::More;
use Time::HiRes qw(time sleep);

use KubeNova::Gateway qw(wait_until json_true json_false);
use KubeNova::Nginx;
use KubeNova::Pg qw(psql require_pg);
use KubeNova::Sse;

require_pg();

my $JSON = JSON::PP->new->utf8->canonical;

my $gw = KubeNova::Gateway->start(
    heartbeat => '10s', master_process => 1,
    http_config => "kubenova_app_watchers 3;\nkubenova_app_watch_heartbeat 1s;");
my $port = $gw->ngx->port;
my $off = $gw->ngx->error_log_offset;

my ($CA, $CB) = ('t72-ca', 't72-cb');
my ($A, $B) = ('t72-a', 't72-b');
# labels of their own: the database is shared with the other test files
$gw->create_cluster($CA, labels => { t72zone => 'a' });
$gw->create_cluster($CB, labels => { t72zone => 'b' });
$gw->create_tenant($A, $CA);
$gw->create_tenant($B, $CB);

sub app {
    my ($name, %spec) = @_;
    return { apiVersion => 'core.oam.dev/v1beta1', kind => 'Application',
             metadata => { name => $name },
             spec => { components => [{ name => 'web', type => 'webservice',
                                        properties => { image => 'nginx' } }],
                       %spec } };
}

# the details of a 422 as "field: message" lines
sub fields_of {
    my ($r) = @_;
    return join "\n", map { "$_->{field}: $_->{message}" }
                      @{ $r->{json}{error}{details} || [] };
}

# a raw request with a body of another type than JSON
sub raw {
    my ($method, $path, $type, $body) = @_;
    my $r = KubeNova::Nginx::http_request(
        port => $port, method => $method, path => "/api/v1/$path",
        headers => { Authorization => "Bearer $ENV{TEST_NGINX_ADMIN_TOKEN}",
                     'Content-Type' => $type },
        body => $body, timeout => 10);
    $r->{json} = eval { $JSON->decode($r->{body}) };
    return $r;
}

sub stored {
    return psql("SELECT coalesce(string_agg(tenant || '/' || name || ' ' || generation "
                . "|| ' ' || md5(document::text), ',' ORDER BY tenant, name), '') "
                . "FROM applications WHERE tenant IN ('$A', '$B')")
        . ' | ' . psql("SELECT count(*) FROM desired_state WHERE tenant IN ('$A', '$B')");
}

# --- validation ---------------------------------------------------------

my $r = $gw->api(POST => "tenants/$A/apps", app('web'));
is $r->{status}, 201, 'JSON: 201';
is $r->{json}{document}{metadata}{namespace}, "$A-apps",
    'metadata.namespace absent: set to <t>-apps';

$r = raw(POST => "tenants/$A/apps", 'application/yaml', <<"YAML");
apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: api
  namespace: $A-apps
spec:
  components:
    - name: api
      type: webservice
      properties: {image: nginx, namespace: $A-apps}
  policies:
    - name: here
      type: topology
      properties: {clusters: [$CA, local], clusterLabelSelector: {t72zone: a}}
YAML
is $r->{status}, 201, 'YAML naming its own namespace and clusters: 201'
    or diag $r->{body};

my $before = stored();

my @bad = (
    [ 'metadata.namespace', { %{ app('x') }, metadata => { name => 'x', namespace => "$B-apps" } } ],
    [ 'apiVersion', { %{ app('x') }, apiVersion => 'core.oam.dev/v1alpha2' } ],
    [ 'kind', { %{ app('x') }, kind => 'Deployment' } ],
    [ 'spec.policies[0].properties.namespace',
      app('x', policies => [{ name => 'p', type => 'topology',
                              properties => { clusters => [$CA], namespace => "$B-apps" } }]) ],
    [ 'spec.policies[0].properties.clusters[1]',
      app('x', policies => [{ name => 'p', type => 'topology',
                              properties => { clusters => [$CA, $CB] } }]) ],
    [ 'spec.policies[0].properties.clusterLabelSelector',
      app('x', policies => [{ name => 'p', type => 'topology',
                              properties => { clusterLabelSelector => { t72zone => 'b' } } }]) ],
    [ 'spec.policies[0].properties.clusterLabelSelector',
      app('x', policies => [{ name => 'p', type => 'topology',
                              properties => { clusterLabelSelector => {} } }]) ],
    [ 'spec.policies[1].properties.components[0].properties.namespace',
      app('x', policies => [{ name => 'p', type => 'topology', properties => { clusters => ['local'] } },
                            { name => 'o', type => 'override',
                              properties => { components => [{ name => 'web',
                                  properties => { namespace => "$B-apps" } }] } }]) ],
    [ 'spec.components[0].properties.namespace',
      { %{ app('x') }, spec => { components => [{ name => 'web', type => 'webservice',
          properties => { image => 'nginx', namespace => "$B-apps" } }] } } ],
    [ 'spec.components[0].traits[0].properties.namespace',
      { %{ app('x') }, spec => { components => [{ name => 'web', type => 'webservice',
          properties => { image => 'nginx' },
          traits => [{ type => 'gateway', properties => { namespace => 'kube-system' } }] }] } } ],
    [ 'spec.components[0].properties.objects[0].metadata.namespace',
      { %{ app('x') }, spec => { components => [{ name => 'raw', type => 'k8s-objects',
          properties => { objects => [{ apiVersion => 'v1', kind => 'ConfigMap',
              metadata => { name => 'c', namespace => "$B-apps" } }] } }] } } ],
    [ 'spec.components[0].traits[0].properties.clusters[0]',
      { %{ app('x') }, spec => { components => [{ name => 'web', type => 'webservice',
          properties => { image => 'nginx' },
          traits => [{ type => 'multicluster', properties => { clusters => [$CB] } }] }] } } ],
    [ 'spec.workflow.steps[0].properties.cluster',
      app('x', workflow => { steps => [{ name => 's', type => 'apply-component',
                                         properties => { component => 'web', cluster => $CB } }] }) ],
);
for my $case (@bad) {
    my ($field, $doc) = @$case;
    $r = $gw->api(POST => "tenants/$A/apps", $doc);
    is $r->{status}, 422, "$field: 422";
    like fields_of($r), qr/^\Q$field\E: /m, "... naming $field"
        or diag fields_of($r);
}
is stored(), $before, 'nothing stored by any of them';

# the same in YAML, and the other way round: B cannot reach A
$r = raw(POST => "tenants/$B/apps", 'application/yaml', <<"YAML");
apiVersion: core.oam.dev/v1beta1
kind: Application
metadata: {name: sneaky, namespace: $A-apps}
spec:
  components: [{name: w, type: webservice, properties: {image: nginx}}]
  policies: [{name: p, type: topology, properties: {clusters: [$CA], namespace: $A-apps}}]
YAML
is $r->{status}, 422, "YAML: tenant B naming A's namespace and cluster: 422";
is fields_of($r), join("\n",
    "metadata.namespace: must be \"$B-apps\" (the tenant's namespace) or absent",
    "spec.policies[0].properties.clusters[0]: must name a cluster of the tenant's placement",
    "spec.policies[0].properties.namespace: must be \"$B-apps\" (the tenant's namespace)"),
    '... every field named';

# a replacement that fails keeps the stored document
$r = $gw->api(PUT => "tenants/$A/apps/web",
              { %{ app('web') }, metadata => { name => 'web', namespace => 'default' } });
is $r->{status}, 422, 'PUT naming another namespace: 422';
is stored(), $before, '... and the stored app is unchanged';

$r = raw(POST => "tenants/$A/apps", 'application/yaml',
         "apiVersion: core.oam.dev/v1beta1\nkind: Application\nmetadata: {name: [x\n");
is $r->{status}, 400, 'malformed YAML: 400';
is $r->{json}{error}{code}, 'invalid_yaml', '... invalid_yaml';
like $r->{json}{error}{message}, qr/not valid YAML: .+/, '... saying why';

my $big = $JSON->encode(app('big', padding => 'x' x (1024 * 1024)));
$r = raw(POST => "tenants/$A/apps", 'application/json', $big);
is $r->{status}, 413, 'a document over kubenova_api_max_body: 413';
is $r->{json}{error}{code}, 'payload_too_large', '... payload_too_large';
is stored(), $before, 'nothing stored by the malformed and oversized ones';

# --- the alias ----------------------------------------------------------

$r = $gw->api(POST => "users/$A/apps", app('alias'));
is $r->{status}, 201, 'POST /users/{t}/apps: 201';
is $r->{headers}{location}, "/api/v1/tenants/$A/apps/alias",
    '... Location under /tenants/{t}/apps';
is $gw->api(GET => "tenants/$A/apps/alias")->{json}{document}{metadata}{namespace},
    "$A-apps", '... validated and stored the same way';
is $gw->api(POST => "users/$A/apps",
            { %{ app('y') }, metadata => { name => 'y', namespace => "$B-apps" } })
       ->{status}, 422, '... and refused the same way';

# --- per-cluster view ---------------------------------------------------

my $op = $gw->operator;
$op->open('s', hello => { cluster => $CA,
                          applied => [] });
ok $op->msg('s', 'welcome', 10), 'an Operator connects for the tenant\'s cluster';
my %gen;
for my $m ($op->msgs('s', 'update', 3)) {
    $gen{ $m->{msg}{name} } = $m->{msg}{generation};
}
ok $gen{"$A/web"}, 'it gets the app';

sub cluster_view {
    my ($app) = @_;
    my $j = $gw->api(GET => "tenants/$A/apps/$app")->{json} || {};
    return ($j, (grep { $_->{cluster} eq $CA } @{ $j->{clusters} || [] })[0] || {});
}

my ($j, $c) = cluster_view('web');
is_deeply [@$j{qw(state pending)}], ['active', [$CA]], 'GET: active, pending on the cluster';
is_deeply [@$c{qw(sync desired_generation applied_generation phase healthy)}],
    ['pending', $gen{"$A/web"}, undef, undef, undef], '... its entry: pending, no status yet';

$op->send('s', { ack => { kind => 'Application', name => "$A/web",
                          generation => $gen{"$A/web"}, ok => json_true } });
ok wait_until(sub { (cluster_view('web'))[1]{sync} eq 'synced' }, 10), 'acked: synced';
($j, $c) = cluster_view('web');
is_deeply $j->{pending}, [], '... nothing pending';
is $c->{applied_generation}, $gen{"$A/web"}, '... applied_generation';

# --- server-sent events -------------------------------------------------

sub sse_open { KubeNova::Sse->open($port, @_) }

sub entry_of {
    my ($e) = @_;
    return (grep { $_->{cluster} eq $CA } @{ $e->{data}{clusters} || [] })[0] || {};
}

my $st = sse_open("tenants/$A/apps/web/status?watch=1");
my $first = $st->next(sub { 1 }, 10);
is $st->{status}, 200, 'watch: 200';
is $st->{type}, 'text/event-stream', '... text/event-stream';
is $first->{event}, 'status', 'the first event: the current state';
is_deeply [$first->{data}{name}, $first->{data}{state}, entry_of($first)->{sync}],
    ['web', 'active', 'synced'], '... as GET shows it';

my $t0 = time;
$op->send('s', { app_status => { tenant => $A, app => 'web', generation => $gen{"$A/web"},
                                 phase => 'running', observed_generation => 1,
                                 workflow_state => 'succeeded',
                                 services => [{ name => 'web', healthy => json_true,
                                                message => 'Ready:1/1' }] } });
my $ev = $st->next(sub { (entry_of($_[0])->{phase} // '') eq 'running' }, 10);
ok $ev, 'an ApplicationStatus from the Operator arrives as an event';
note sprintf 'status to event: %.0f ms', 1000 * (time - $t0);
is_deeply [@{ entry_of($ev) }{qw(phase healthy observed_generation workflow_state)}],
    ['running', json_true, 1, 'succeeded'], '... with phase, health, generations, workflow';
is_deeply entry_of($ev)->{services},
    [{ name => 'web', healthy => json_true, message => 'Ready:1/1' }], '... and services';

($j, $c) = cluster_view('web');
is_deeply [@$c{qw(phase healthy workflow_state)}], ['running', json_true, 'succeeded'],
    'GET shows it too';
$r = $gw->api(GET => "tenants/$A/apps/web/status");
is $r->{status}, 200, 'GET .../status without watch: one JSON document';
is_deeply [sort keys %{ $r->{json} }],
    [qw(clusters generation name pending state tenant)], '... the status view';

$op->send('s', { app_status => { tenant => $A, app => 'web', generation => $gen{"$A/web"},
                                 phase => 'workflowSuspending', observed_generation => 1,
                                 services => [{ name => 'web', healthy => json_false,
                                                message => 'restarting' }] } });
$ev = $st->next(sub { (entry_of($_[0])->{phase} // '') eq 'workflowSuspending' }, 10);
ok $ev && entry_of($ev)->{healthy} eq json_false, 'the next change: one more event, unhealthy';

ok wait_until(sub { $st->pump(0.2); $st->{pings} >= 2 }, 10),
    'heartbeat comments (": ping") on an idle stream';

# a reader that does not read: nginx keeps one event in flight and the
# newest state, so when it reads again it gets fewer events than changes
# and the last one is the newest.  40 changes of ~230 KB each (9 MB) are
# more than the kernel's socket buffers take (tcp_wmem's 4 MB at most while
# the reader's window stays at tcp_rmem's default)
{
    $gw->api_ok(POST => "tenants/$A/apps", app('burst'));
    my $slow = sse_open("tenants/$A/apps/burst/status?watch=1");
    ok $slow->next(sub { $_[0]{event} eq 'status' }, 10), 'a slow reader\'s stream';
    my $n = 40;
    my $services = [map { { name => "svc$_", healthy => json_false,
                            message => 'x' x 200 } } 1 .. 1000];
    my $t0 = time;
    for my $i (1 .. $n) {
        $op->send('s', { app_status => { tenant => $A, app => 'burst', generation => 1,
                                         phase => "phase$i", services => $services } });
        $op->msg('s', 'status_ack', 10);
    }
    note sprintf 'sent in %.1f s', time - $t0;
    $t0 = time;
    my (@seen, $e);
    while ($e = $slow->next(sub { $_[0]{event} eq 'status' }, 10)) {
        my $phase = entry_of($e)->{phase} // '';
        push @seen, $phase if $phase =~ /^phase/;
        last if $phase eq "phase$n";
    }
    note sprintf 'read in %.1f s', time - $t0;
    is $seen[-1], "phase$n", "$n large changes: the reader ends at the newest";
    cmp_ok scalar @seen, '<', $n,
        '... having skipped those it had no time for (' . scalar(@seen) . " events)";
    $slow->close;
}

# authorization as GET: another tenant's owner may not watch
$gw->api_ok(POST => "tenants/$B/users", { name => 't72-b-owner', role => 'owner' });
my $tok_b = $gw->api_ok(POST => 'users/t72-b-owner/tokens', { name => 'k' })->{json}{token};
my $other = sse_open("tenants/$A/apps/web/status?watch=1", $tok_b);
$other->wait_status(10);
isnt $other->{status}, 200, "tenant B's owner may not watch A's app ($other->{status})";
my $none = sse_open("tenants/$A/apps/nosuch/status?watch=1");
$none->wait_status(10);
is $none->{status}, 404, 'no such app: 404';

# the limit: 3 per worker (one is open)
my @more = map { sse_open("tenants/$A/apps/alias/status?watch=1") } 1 .. 2;
ok !grep({ !$_->next(sub { 1 }, 10) } @more), 'three streams open';
my $over = sse_open("tenants/$A/apps/alias/status?watch=1");
$over->wait_status(10);
is $over->{status}, 503, 'a fourth: 503';
like $over->{buf}, qr/too_many_watchers/, '... too_many_watchers';

$more[0]->close;
my $again;
ok wait_until(sub {
        $again = sse_open("tenants/$A/apps/alias/status?watch=1");
        $again->wait_status(10);
        ($again->{status} // 0) == 200;
    }, 10), 'a client that went away freed its slot';

# --- delete while the Operator is offline -------------------------------

$op->close('s');
$op->end('s', 10);
ok wait_until(sub {
        psql("SELECT connected FROM clusters WHERE name = '$CA'") eq 'f' }, 10),
    'the Operator is offline';

$r = $gw->api(DELETE => "tenants/$A/apps/web");
is $r->{status}, 202, 'DELETE: 202';
($j, $c) = cluster_view('web');
is_deeply [@$j{qw(state pending)}, $c->{sync}], ['deleting', [$CA], 'deleting'],
    'GET: deleting, the offline cluster pending';
$ev = $st->next(sub { ($_[0]{data}{state} // '') eq 'deleting' }, 10);
ok $ev, 'the stream shows deleting';

$r = $gw->api(POST => "tenants/$A/apps", app('web'));
is $r->{status}, 409, 're-creating it meanwhile: 409';
like $r->{json}{error}{message}, qr/being deleted/, '... being deleted';

# it still holds the app, at the generation it acked
$op->open('s2', hello => { cluster => $CA,
                           applied => [@{ $gw->in_sync_applied($CA) },
                                       { kind => 'Application', name => "$A/web",
                                         generation => $gen{"$A/web"} }] });
ok $op->msg('s2', 'welcome', 10), 'the Operator reconnects';
my $del = $op->msg('s2', 'delete', 10);
is $del && "$del->{msg}{kind} $del->{msg}{name}", "Application $A/web",
    '... and gets the ObjectDelete';
is $gw->api(GET => "tenants/$A/apps/web")->{json}{state}, 'deleting',
    'still deleting until it acks';
$op->send('s2', { ack => { kind => 'Application', name => "$A/web",
                           generation => $del->{msg}{generation}, ok => json_true } });
ok wait_until(sub { ($gw->api(GET => "tenants/$A/apps/web")->{status} // 0) == 404 }, 10),
    'acked: the app is gone';
$ev = $st->next(sub { $_[0]{event} eq 'deleted' }, 10);
is_deeply $ev && $ev->{data}, { tenant => $A, name => 'web', state => 'deleted' },
    'the stream\'s last event: deleted';
ok wait_until(sub { $st->pump(0.2) }, 10), '... and it ends';
is $gw->api(POST => "tenants/$A/apps", app('web'))->{status}, 201,
    'the name can be used again';

$op->close('s2');
$_->close for $more[1], $again, $other, $none, $over;

# a reload: the old worker ends its streams and exits
my $last = sse_open("tenants/$A/apps/web/status?watch=1");
ok $last->next(sub { $_[0]{event} eq 'status' }, 10), 'a stream before a reload';
my @old = $gw->ngx->worker_pids;
ok $gw->ngx->reload, 'reload';
$ev = $last->next(sub { 1 }, 20);
is $ev && $ev->{event}, 'error', 'the old worker\'s stream ends with an error event';
like $ev && $ev->{data}{error}{message}, qr/shutting down/, '... saying why';
ok wait_until(sub { !grep { kill 0, $_ } @old }, 20), 'and the old worker exits';

is_deeply $gw->log_problems($off), [], 'no [alert] or [emerg] in the error log';

done_testing;
