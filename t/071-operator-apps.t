# KubeVela Applications end to end on the Operator side (operator/src/
# kn_app.c): the real Manager, a real control plane, and the Operator
# running as its least-privilege ServiceAccount (operator/deploy/).
#
#   - the Operator installs the Application CRD (applications.core.oam.dev,
#     from operator/deploy/crds/) when the cluster has none, and it is
#     Established;
#   - an Application POSTed as YAML to the REST API appears in <t>-apps
#     with its spec, labelled with its tenant, the Manager generation in an
#     annotation, synced in the REST API; a PUT applies the new generation;
#   - its status, patched as KubeVela would (no controller runs here),
#     reaches the Manager (app_status, the REST API, the status stream of
#     server-sent events); fast changes are coalesced and the newest wins;
#   - a restarted Operator finds them applied: nothing is applied again
#     (resourceVersion unchanged);
#   - a DELETE removes it from the cluster and the tombstone clears; one
#     made while the Operator is stopped completes after it reconnects.
use strict;
use warnings;

use JSON::PP;
use Test::More;
use Time::HiRes qw(sleep);

use KubeNova::Gateway qw(wait_until);
use KubeNova::K8s;
use KubeNova::Nginx;
use KubeNova::Operator;
use KubeNova::Pg qw(psql require_pg);
use KubeNova::Sse;

require_pg();

my $k8s = KubeNova::K8s->start;
ok $k8s->{kubeconfig} && -x $k8s->{kubectl}, 'a control plane';

my $bin = eval { KubeNova::Operator::build() };
ok $bin, 'make -C operator builds kubenova-operator' or BAIL_OUT($@);

my $gw = KubeNova::Gateway->start(heartbeat => '1s');

my $C = 't71-c';
my $T = 't71-t';
my $APPS = "$T-apps";
my $secret = $gw->create_cluster($C);
$gw->create_tenant($T, $C);

sub start_operator {
    return KubeNova::Operator->start(
        manager_url => 'http://127.0.0.1:' . $gw->gw_port,
        cluster => $C, secret => $secret,
        args => ['--heartbeat', '1s', '--reconnect-min', '100ms',
                 '--reconnect-max', '1s',
                 '--kubeconfig', $k8s->operator_kubeconfig]);
}

sub cluster {
    my ($c) = grep { $_->{name} eq $C }
              @{ $gw->api_ok(GET => 'clusters')->{json}{items} || [] };
    return $c || {};
}

sub app_in_cluster {
    my ($name) = @_;
    return $k8s->kubectl_json('get', 'applications.core.oam.dev', $name,
                              '-n', $APPS);
}

sub sync_of {
    my ($tenant, $app) = @_;
    my $j = $gw->api(GET => "tenants/$tenant/apps/$app")->{json} || {};
    my ($s) = grep { $_->{cluster} eq $C } @{ $j->{sync} || [] };
    return $s || {};
}

my $op = start_operator();

ok wait_until(sub { cluster()->{connected} }, 60),
    'the Operator connects' or diag $op->log_text;

my $crd = $k8s->kubectl_json('get', 'crd', 'applications.core.oam.dev');
ok $crd, 'the Operator installed the Application CRD (there was none)'
    or diag $op->log_text;
is $crd->{metadata}{labels}{'app.kubernetes.io/managed-by'},
    'kubenova-operator', '... ours (from operator/deploy/crds/)';
ok((grep { $_->{type} eq 'Established' && $_->{status} eq 'True' }
        @{ $crd->{status}{conditions} || [] }),
   '... Established');
is_deeply $crd->{spec}{versions}[0]{subresources}, { status => {} },
    '... with the status subresource';

ok wait_until(sub { ($k8s->kubectl_json('get', 'namespace', $APPS) || {})
                        ->{status}{phase} }, 60),
    "the tenant is applied: namespace $APPS" or diag $op->log_text;

# --- apply ----------------------------------------------------------------

my $yaml = <<"YAML";
apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: web
  labels:
    team: blue
spec:
  components:
    - name: web
      type: webservice
      properties:
        image: "nginx:1.25"
        port: 80
YAML
my $r = KubeNova::Nginx::http_request(
    port => $gw->ngx->port, method => 'POST', path => "/api/v1/tenants/$T/apps",
    headers => { Authorization => "Bearer $ENV{TEST_NGINX_ADMIN_TOKEN}",
                 'Content-Type' => 'application/yaml' },
    body => $yaml, timeout => 10);
is $r->{status}, 201, 'POST an Application as YAML: 201' or diag $r->{body};

my $gen = $gw->desired_generation($C, 'Application', "$T/web");
ok wait_until(sub { app_in_cluster('web') }, 30),
    "it appears in $APPS" or diag $op->log_text;
my $a = app_in_cluster('web');
is_deeply $a->{spec}, { components => [{ name => 'web', type => 'webservice',
                                         properties => { image => 'nginx:1.25',
                                                         port => 80 } }] },
    '... with its spec';
is $a->{metadata}{labels}{'kubenova.io/tenant'}, $T, '... labelled with its tenant';
is $a->{metadata}{labels}{team}, 'blue', '... and its own labels';
is $a->{metadata}{annotations}{'kubenova.io/generation'}, $gen,
    '... the Manager generation in an annotation';
ok wait_until(sub { (sync_of($T, 'web')->{state} // '') eq 'synced' }, 30),
    '... and the REST API says synced' or diag explain sync_of($T, 'web');

$gw->api_ok(PUT => "tenants/$T/apps/web",
            KubeNova::Gateway::app_document('web', 'nginx:1.27'));
my $gen2 = $gw->desired_generation($C, 'Application', "$T/web");
cmp_ok $gen2, '>', $gen, 'PUT: a new generation';
ok wait_until(sub {
        my $x = app_in_cluster('web') || {};
        ($x->{metadata}{annotations}{'kubenova.io/generation'} // '') eq $gen2
    }, 30), '... applied to the cluster' or diag $op->log_text;
$a = app_in_cluster('web');
is $a->{spec}{components}[0]{properties}{image}, 'nginx:1.27',
    '... with the new spec';
ok !exists $a->{metadata}{labels}{team},
    '... and the label the new document dropped is gone';
ok wait_until(sub { (sync_of($T, 'web')->{applied_generation} // 0) == $gen2 },
              30), '... acked: applied_generation is the new one';

$gw->create_app($T, 'api');
ok wait_until(sub { app_in_cluster('api') }, 30), 'a second app, applied';

# --- status, as KubeVela would write it ---------------------------------

# kubectl 1.20 cannot patch the status subresource: a merge patch with
# curl as the admin
sub patch_status {
    my ($name, $status) = @_;
    my $body = JSON::PP::encode_json({ status => $status });
    my $out = `curl -sS --cacert $k8s->{ca} --cert $k8s->{admin_cert} --key $k8s->{admin_key} -X PATCH -H 'Content-Type: application/merge-patch+json' --data-binary '$body' $k8s->{server}/apis/core.oam.dev/v1beta1/namespaces/$APPS/applications/$name/status -o /dev/null -w '%{http_code}' 2>&1`;
    return $out;
}

sub stored_status {
    my ($app) = @_;
    my $row = psql("SELECT generation || '|' || phase || '|' || observed_generation"
                   . " || '|' || coalesce(workflow_state, '') || '|' || services::text"
                   . " FROM app_status WHERE cluster = '$C' AND tenant = '$T'"
                   . " AND app = '$app'");
    return $row // '';
}

# a script waiting for "running" watches the status stream meanwhile
my $watch = KubeNova::Sse->open($gw->ngx->port, "tenants/$T/apps/web/status?watch=1");
my $phase_of = sub {
    my ($e) = @_;
    my ($c) = grep { $_->{cluster} eq $C } @{ $e->{data}{clusters} || [] };
    return ($c || {})->{phase} // '';
};
ok $watch->next(sub { $_[0]{event} eq 'status' }, 10), 'a status stream of the app';

my $kgen = app_in_cluster('web')->{metadata}{generation};
is patch_status('web', { status => 'runningWorkflow',
                         observedGeneration => $kgen,
                         workflow => { finished => JSON::PP::false },
                         services => [{ name => 'web', healthy => JSON::PP::false,
                                        message => 'starting' }] }),
    '200', 'the Application status patched as KubeVela would';
ok wait_until(sub { stored_status('web') =~ /^\Q$gen2|runningWorkflow|$kgen|running|\E/ }, 10),
    '... the Manager stores it: phase, observedGeneration, workflow state'
    or diag stored_status('web'), $op->log_text;
like stored_status('web'), qr/"name": "web".*"healthy": false.*"message": "starting"|"healthy": false.*"message": "starting".*"name": "web"/,
    '... and the services with their health';

# fast changes: the last one wins
for my $i (1 .. 5) {
    patch_status('web', { status => $i == 5 ? 'running' : "step$i",
                          workflow => { finished => $i == 5 ? JSON::PP::true
                                                            : JSON::PP::false },
                          services => [{ name => 'web', healthy => JSON::PP::true,
                                         message => "ok $i" }] });
}
ok wait_until(sub { stored_status('web') =~ /\|running\|.*\|finished\|.*ok 5/ }, 10),
    'five changes in a row: the newest is stored' or diag stored_status('web');
my $j = $gw->api_ok(GET => "tenants/$T/apps/web")->{json};
my ($cs) = grep { $_->{cluster} eq $C } @{ $j->{cluster_status} || [] };
is $cs && $cs->{phase}, 'running', 'the REST API shows it'
    or diag explain $j;
ok $watch->next(sub { $phase_of->($_[0]) eq 'runningWorkflow' }, 10),
    'the status stream delivered the first change';
my $running = $watch->next(sub { $phase_of->($_[0]) eq 'running' }, 10);
ok $running, '... and "running"';
my ($rc) = grep { $_->{cluster} eq $C } @{ $running ? $running->{data}{clusters} : [] };
is_deeply [@{ $rc || {} }{qw(sync healthy workflow_state)}], ['synced', JSON::PP::true, 'finished'],
    '... synced, healthy, workflow finished';
$watch->close;

# --- a restart does not apply again ---------------------------------------

my $rv = app_in_cluster('web')->{metadata}{resourceVersion};
my $rv_api = app_in_cluster('api')->{metadata}{resourceVersion};
$op->stop;
ok wait_until(sub { !cluster()->{connected} }, 30), 'the Operator stopped';
$op = start_operator();
ok wait_until(sub { cluster()->{connected} }, 60), '... restarted, connected'
    or diag $op->log_text;
ok $op->wait_log(qr/apps: 2 Application\(s\) applied already/, 30),
    '... it found both applied in the cluster' or diag $op->log_text;
sleep 2;
is app_in_cluster('web')->{metadata}{resourceVersion}, $rv,
    '... and applied nothing again (resourceVersion unchanged)';
is app_in_cluster('api')->{metadata}{resourceVersion}, $rv_api,
    '... for either';
ok !$op->grep_log(qr/apps: applying/), '... no apply at all'
    or diag $op->log_text;

# --- delete ---------------------------------------------------------------

my $d = $gw->api(DELETE => "tenants/$T/apps/web");
is $d->{status}, 202, 'DELETE: 202, deleting';
ok wait_until(sub { !app_in_cluster('web') }, 30),
    '... gone from the cluster' or diag $op->log_text;
ok wait_until(sub { $gw->api(GET => "tenants/$T/apps/web")->{status} == 404 },
              30), '... and from the REST API';
is psql("SELECT count(*) FROM desired_state WHERE name = '$T/web'"), 0,
    '... the tombstone cleared';

$op->stop;
ok wait_until(sub { !cluster()->{connected} }, 30), 'the Operator stopped';
$d = $gw->api(DELETE => "tenants/$T/apps/api");
is $d->{status}, 202, 'DELETE while it is stopped: 202';
sleep 1;
ok app_in_cluster('api'), '... the app is still in the cluster';
is $gw->api(GET => "tenants/$T/apps/api")->{json}{status}, 'deleting',
    '... and deleting in the REST API';
$op = start_operator();
ok wait_until(sub { !app_in_cluster('api') }, 60),
    'after it reconnects: gone from the cluster' or diag $op->log_text;
ok wait_until(sub { $gw->api(GET => "tenants/$T/apps/api")->{status} == 404 },
              30), '... and the deletion completes';

$op->stop;
is_deeply [$op->sanitizer_reports], [], 'no sanitizer reports';

done_testing;
