# The C Operator against the real Manager: it dials the gateway (mTLS),
# says hello, applies and acks the difference, then every live change;
# a Manager reload ends its stream UNAVAILABLE and it reconnects (backoff,
# hello) without losing anything written meanwhile; SIGTERM closes the
# stream cleanly and the cluster shows disconnected.  Its applier only
# records for now, so "applied" means acked to the Manager.
use strict;
use warnings;

use Test::More;
use Time::HiRes qw(time sleep);

use KubeNova::Gateway qw(wait_until json_true);
use KubeNova::Operator;
use KubeNova::Pg qw(require_pg);

require_pg();

my $bin = eval { KubeNova::Operator::build() };
ok $bin, 'make -C operator builds kubenova-operator' or BAIL_OUT($@);

my $gw = KubeNova::Gateway->start(tls => 1, workers => 2,
                                  master_process => 1, heartbeat => '1s');
my $ngx = $gw->ngx;

my $C = 't60-c';
my $T = 't60-t';
my $identity = $gw->create_cluster($C);
$gw->create_tenant($T, $C);
$gw->create_app($T, 'a1');

sub cluster { $gw->api(GET => "clusters/$C")->{json} || {} }

# the sync state of a tenant or app on the cluster ("none": not placed)
sub sync_of {
    my ($path) = @_;
    my $j = $gw->api(GET => $path)->{json};
    my ($s) = grep { $_->{cluster} eq $C } @{ ref $j ? $j->{sync} || [] : [] };
    return $s || { state => 'none' };
}
sub state_of { sync_of(@_)->{state} }

sub synced {
    my ($timeout, @paths) = @_;
    return wait_until(sub { !grep { state_of($_) ne 'synced' } @paths },
                      $timeout);
}

is state_of("tenants/$T"), 'pending', 'before the Operator: the tenant is pending';
ok !cluster()->{connected}, '... and the cluster not connected';

# --- connect, hello, the difference ---------------------------------------

my $op = KubeNova::Operator->start(
    manager_url => 'https://localhost:' . $gw->gw_port,
    cluster => $C, identity => $identity,
    # delays up to 3 s (not 60): the test provokes many reconnects in a row
    args => ['--heartbeat', '1s', '--reconnect-max', '3s']);

ok wait_until(sub { cluster()->{connected} }, 10),
    'the Operator connects: GET /clusters says connected'
    or diag $op->log_text;
my $cl = cluster();
is $cl->{operator_version}, '0.1.0', '... with the Operator\'s version';
ok exists $cl->{kubernetes_version},
    '... and a kubernetes_version (empty until the Kubernetes side tells)';
ok defined $cl->{connected_at} && defined $cl->{last_seen_at},
    '... connected_at and last_seen_at';
like $op->wait_log(qr/connected to the Manager/, 5) // '',
    qr/over HTTP\/2: 2 update\(s\) and 0 deletion\(s\) follow; the Manager's heartbeat is 1000 ms/,
    'the Operator logs its Welcome: two updates follow, 1 s heartbeats';

ok synced(10, "tenants/$T", "tenants/$T/apps/a1"),
    'the difference is applied and acked: tenant and app synced';
ok $op->wait_log(qr/applier: applied Tenant "$T" at generation \d+/, 1),
    '... by the applier';
is sync_of("tenants/$T/apps/a1")->{applied_generation},
    sync_of("tenants/$T/apps/a1")->{generation},
    '... at the desired generation';

# --- live changes -------------------------------------------------------

my $t0 = time;
$gw->create_app($T, 'a2');
ok synced(5, "tenants/$T/apps/a2"), 'a new app is applied and acked live';
cmp_ok time - $t0, '<', 5, sprintf '... within %.2f s', time - $t0;

my $g1 = sync_of("tenants/$T/apps/a1")->{generation};
$t0 = time;
$gw->api_ok(PUT => "tenants/$T/apps/a1",
            KubeNova::Gateway::app_document('a1', 'nginx:1.27'));
ok wait_until(sub {
        my $s = sync_of("tenants/$T/apps/a1");
        $s->{generation} > $g1 && $s->{state} eq 'synced'
    }, 5), 'a changed app: its new generation is applied and acked';
cmp_ok time - $t0, '<', 5, sprintf '... within %.2f s', time - $t0;

my $del = $gw->api(DELETE => "tenants/$T/apps/a2");
is $del->{status}, 202, 'deleting an app the cluster holds: 202';
ok wait_until(sub {
        $gw->api(GET => "tenants/$T/apps/a2")->{status} == 404
    }, 5), '... the Operator deletes and acks: the app is gone';
ok $op->wait_log(qr/applier: deleted Application "$T\/a2"/, 1),
    '... by the applier';

# --- a reload: UNAVAILABLE, backoff, hello --------------------------------

my $off = $op->log_offset;
my $noff = $ngx->error_log_offset;
ok $ngx->reload(timeout => 15), 'nginx reloads'
    or diag scalar $ngx->error_log_since($noff);
# the Manager ends every stream UNAVAILABLE, but when its trailers, the
# stream reset and the GOAWAY of the exiting worker come together libcurl
# 7.88 only reports a reset stream
like $op->wait_log(qr/stream to the Manager ended/, 10, $off) // '',
    qr/UNAVAILABLE \(grpc-status 14\): the Manager is restarting; reconnect|reset the stream as its connection went away \(GOAWAY/,
    'the stream ends (UNAVAILABLE, or reset with GOAWAY)'
    or diag join "\n", $op->log_since(0);
ok $op->wait_log(qr/reconnecting in \d+ ms/, 5, $off),
    '... and the Operator backs off';

# a write right away: while reconnecting, or just after
$gw->create_app($T, 'a3');

ok $op->wait_log(qr/connected to the Manager/, 10, $off),
    'it says hello again and is welcomed (by a new worker)';
ok synced(10, "tenants/$T/apps/a3"),
    'an app written during the reload is applied and acked';
ok synced(1, "tenants/$T", "tenants/$T/apps/a1"),
    '... and the rest is still synced';
ok cluster()->{connected}, 'the cluster is connected';

# --- a longer gap: the gateway unreachable for a while --------------------

# the reloaded Manager listens for Operators on another port for a while
my $gw_port = $gw->{gw_port};
$gw->{gw_port} = KubeNova::Gateway::free_port();
$ngx->write_config($gw->config_parts);
$off = $op->log_offset;
ok $ngx->reload(timeout => 15), 'nginx reloads without the gateway port';
ok $op->wait_log(qr/ended .*Couldn't connect to server/, 15, $off),
    'the Operator cannot connect and says so'
    or diag join "\n", $op->log_since($off);

$gw->create_app($T, 'a4');
my $tgen = sync_of("tenants/$T")->{generation};
$gw->api_ok(PATCH => "tenants/$T", { suspended => json_true });
sleep 1.5;
is state_of("tenants/$T/apps/a4"), 'pending',
    'an app written while the Operator is away stays pending';
cmp_ok sync_of("tenants/$T")->{generation}, '>', $tgen,
    '... and so does the suspended tenant\'s new generation';
is state_of("tenants/$T"), 'pending', '... (pending)';

my @delays = map { /delay drawn from 0 to (\d+) ms/ ? $1 : () }
             $op->log_since($off);
cmp_ok scalar(@delays), '>=', 2, 'it keeps retrying meanwhile';
is_deeply \@delays, [sort { $a <=> $b } @delays],
    '... with delays that do not shrink'
    or diag "bounds: @delays";
is_deeply [grep { $_ > 3000 } @delays], [], '... up to --reconnect-max 3s';

$gw->{gw_port} = $gw_port;
$ngx->write_config($gw->config_parts);
$off = $op->log_offset;
ok $ngx->reload(timeout => 15), 'nginx reloads with the gateway port back';
ok $op->wait_log(qr/connected to the Manager/, 20, $off),
    'the Operator reconnects';
ok synced(10, "tenants/$T", "tenants/$T/apps/a4"),
    'what was written while it was away is applied and acked: nothing lost';
ok synced(1, "tenants/$T/apps/a1", "tenants/$T/apps/a3"),
    '... and the rest is still synced';

# --- an identity is its cluster's only -----------------------------------

# (the cluster secret is retired: the stream is bound to the certificate,
# registered through the API; t/074 and t/077 test the identity itself)
{
    my $other = KubeNova::Operator->start(
        manager_url => 'https://localhost:' . $gw->gw_port,
        cluster => 't60-other', identity => $identity,
        args => ['--heartbeat', '1s', '--reconnect-max', '3s']);
    ok $other->wait_log(qr/the certificate does not name cluster "t60-other" \(CN\)/, 10),
        'an Operator given another cluster\'s identity refuses to use it';
    ok !$other->wait_log(qr/connected to the Manager/, 2),
        '... and never connects';
    $other->stop(10);
}

# --- a bounded send queue ------------------------------------------------

# Another cluster with 150 apps and an Operator whose send queue holds 16
# messages: the difference arrives in bursts the acks cannot keep up with,
# the queue fills, the Operator says so and reconnects, and every hello
# lists more of what it applied, until everything is synced.
{
    my $QC = 't60-q';
    my $qidentity = $gw->create_cluster($QC);
    $gw->create_tenant('t60-qt', $QC);
    $gw->create_app('t60-qt', "q$_") for 1 .. 150;
    my $qop = KubeNova::Operator->start(
        manager_url => 'https://localhost:' . $gw->gw_port,
        cluster => $QC, identity => $qidentity,
        args => ['--heartbeat', '1s', '--send-queue-messages', '16',
                 '--reconnect-min', '100ms', '--reconnect-max', '500ms']);
    ok $qop->wait_log(qr/the send queue is full \(16 messages, \d+ bytes; --send-queue-messages 16/, 10),
        'a send queue of 16 messages fills up, and the Operator says so';
    ok $qop->wait_log(qr/ended .*: the send queue is full: reconnecting so that the hello tells the Manager what is applied/, 5),
        '... drops the stream to resynchronise';
    my $all = sub {
        my $n = 0;
        for my $i (1 .. 150) {
            my $j = $gw->api(GET => "tenants/t60-qt/apps/q$i")->{json};
            my ($st) = grep { $_->{cluster} eq $QC } @{ $j->{sync} || [] };
            $n++ if $st && $st->{state} eq 'synced';
        }
        return $n == 150;
    };
    ok wait_until($all, 60), '... and in the end all 150 apps are synced';
    is $qop->stop(10), 0, '... (SIGTERM: exit 0)';
    is_deeply [$qop->sanitizer_reports], [], '... no sanitizer report';
}

# --- SIGTERM ------------------------------------------------------------

$off = $op->log_offset;
my $status = $op->stop(10);
is $status, 0, 'SIGTERM: the Operator exits 0';
ok $op->wait_log(qr/the stream to the Manager is closed: OK \(grpc-status 0\)/,
                 1, $off),
    '... after closing its stream (the Manager ends it OK)';
ok wait_until(sub { !cluster()->{connected} }, 10),
    'the cluster shows connected false';

is_deeply [$op->sanitizer_reports], [], 'no sanitizer report from the Operator';
is_deeply [grep { /\[error\]/ } $op->log_since(0)], [],
    'no [error] in the Operator\'s log';
is_deeply $gw->log_problems(0), [], 'no [alert] or [emerg] in nginx\'s';
diag "the Operator's log:\n" . $op->log_text
    unless Test::More->builder->is_passing;
$gw->stop;
done_testing;
