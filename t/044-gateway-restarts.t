# Operator gateway across worker deaths and reloads (2 workers, master
# process): the worker holding a stream is killed with SIGKILL; the
# Operator reconnects, says what it has, and gets exactly what changed
# meanwhile (nothing lost).  nginx -s reload with streams open: every stream
# ends UNAVAILABLE, the Operators reconnect to the new workers, and live
# delivery goes on.
use strict;
use warnings;

use Test::More;
use Time::HiRes qw(time sleep);

use KubeNova::Gateway qw(wait_until json_true);
use KubeNova::Pg qw(require_pg psql);

require_pg();

my $gw = KubeNova::Gateway->start(tls => 1, workers => 2, master_process => 1,
                                  heartbeat => '2s');
my $ngx = $gw->ngx;
ok wait_until(sub { my @w = $ngx->worker_pids; @w == 2 }, 10), 'two workers';

my $op = $gw->operator;

# An Operator's memory: what it applied, by "kind name"
my %applied;

sub applied_list {
    my ($c) = @_;
    return [map { my ($k, $n) = split / /, $_, 2;
                  { kind => $k, name => $n, generation => $applied{$c}{$_} } }
            sort keys %{ $applied{$c} || {} }];
}

# applies and acks every update and delete that comes within $secs;
# returns "type kind name" of each
sub apply {
    my ($c, $id, $secs) = @_;
    my @got;
    for my $m ($op->msgs($id, undef, $secs)) {
        next unless $m->{type} eq 'update' || $m->{type} eq 'delete';
        my $key = "$m->{msg}{kind} $m->{msg}{name}";
        if ($m->{type} eq 'update') { $applied{$c}{$key} = $m->{msg}{generation} }
        else                        { delete $applied{$c}{$key} }
        $op->send($id, { ack => { kind => $m->{msg}{kind}, name => $m->{msg}{name},
                                  generation => $m->{msg}{generation},
                                  ok => json_true } });
        push @got, "$m->{type} $key";
    }
    return @got;
}

# connects cluster $c as stream $id with what it applied; returns the
# Welcome event and the pid of the worker serving it
sub connect_cluster {
    my ($c, $id) = @_;
    my $off = $ngx->error_log_offset;
    $op->open($id, heartbeat_every => 1,
              hello => { cluster => $c,
                         applied => applied_list($c) });
    my $w = $op->msg($id, 'welcome', 10);
    return ($w, $w ? $gw->stream_worker($c, $off) : undef);
}

# --- SIGKILL of the worker holding a stream ---------------------------

my $C = 'gw44-c';
my $T = 'gw44-t';
$gw->create_cluster($C);
$gw->create_tenant($T, $C);
$gw->create_app($T, 'a1');
$gw->create_app($T, 'a2');

my ($w, $worker) = connect_cluster($C, 'k1');
ok $w, 'connected';
is_deeply [sort(apply($C, 'k1', 1))],
    ["update Application $T/a1", "update Application $T/a2", "update Tenant $T"],
    'the cluster applied its three objects';
ok wait_until(sub {
        psql("SELECT count(*) FROM applied_state WHERE cluster = '$C' AND ok") == 3
    }, 10), '... and acked them';

my @before = $ngx->worker_pids;
ok kill('KILL', $worker), "SIGKILL to worker $worker, which holds the stream";
my $end = $op->end('k1', 10);
ok $end, 'the stream ends';
is $end && $end->{code}, 'UNAVAILABLE', '... UNAVAILABLE (connection lost)';

# what happens while the Operator is away
$gw->create_app($T, 'a3');
$gw->api_ok(PUT => "tenants/$T/apps/a1",
            KubeNova::Gateway::app_document('a1', 'nginx:1.27'));
is $gw->api(DELETE => "tenants/$T/apps/a2")->{status}, 202,
    'meanwhile: an app created, one changed, one deleted';

ok wait_until(sub {
        my @w = $ngx->worker_pids;
        @w == 2 && !grep { $_ == $worker } @w
    }, 10), 'the master replaced the killed worker';

($w, my $w2) = connect_cluster($C, 'k2');
ok $w, 'the Operator reconnects';
is_deeply [@{ $w->{msg} }{qw(updates deletes)}], [2, 1],
    'Welcome: 2 updates and 1 deletion';
is_deeply [sort(apply($C, 'k2', 1.5))],
    ["delete Application $T/a2", "update Application $T/a1",
     "update Application $T/a3"],
    'the difference is exactly what changed while it was away';
is_deeply [sort keys %{ $applied{$C} }],
    ["Application $T/a1", "Application $T/a3", "Tenant $T"],
    'the cluster holds what the Manager wants';
is $applied{$C}{"Application $T/a1"},
    $gw->desired_generation($C, 'Application', "$T/a1"),
    '... at the desired generations';
ok wait_until(sub { ($gw->api(GET => "tenants/$T/apps/a2")->{status} // 0) == 404 },
              10), 'the acked deletion finished';

# and live again
$gw->create_app($T, 'a4');
is_deeply [apply($C, 'k2', 1)], ["update Application $T/a4"],
    'live delivery on the new stream';
ok $gw->api(GET => "clusters/$C")->{json}{connected}, 'the cluster is connected';

# --- reload with streams open ---------------------------------------------

my @clusters = map { "gw44-r$_" } 1 .. 3;
for my $c (@clusters) {
    $gw->create_cluster($c);
    $gw->create_tenant("$c-t", $c);
}
my (%id, @bad);
for my $c (@clusters) {
    $id{$c} = "$c-1";
    my ($wl) = connect_cluster($c, $id{$c});
    push @bad, "$c: no Welcome" unless $wl;
    apply($c, $id{$c}, 0.3);
}
is_deeply \@bad, [], 'three more clusters connected';

my @old = $ngx->worker_pids;
my $off = $ngx->error_log_offset;
my $t0 = time;
ok $ngx->reload(timeout => 15), 'nginx reloaded'
    or diag scalar $ngx->error_log_since($off);

my %ends;
for my $sid ('k2', map { $id{$_} } @clusters) {
    my $e = $op->end($sid, 10);
    $ends{$sid} = $e ? "$e->{code}: $e->{details}" : 'still open';
}
is_deeply \%ends,
    { map { ($_ => 'UNAVAILABLE: the Manager is restarting; reconnect') }
      'k2', map { $id{$_} } @clusters },
    'every stream ended UNAVAILABLE, telling the Operator to reconnect';
cmp_ok time - $t0, '<', 10, sprintf 'within %.1f s of the reload', time - $t0;

my @new = $ngx->worker_pids;
my %old = map { $_ => 1 } @old;
is scalar(grep { !$old{$_} } @new), 2, 'two new workers';

@bad = ();
for my $c ($C, @clusters) {
    my $sid = "$c-2";
    my ($wl, $pid) = connect_cluster($c, $sid);
    if (!$wl) { push @bad, "$c: no Welcome"; next }
    push @bad, "$c: served by an old worker $pid" if !$pid || $old{$pid};
    push @bad, "$c: the difference was not empty"
        if $wl->{msg}{updates} || $wl->{msg}{deletes};
}
is_deeply \@bad, [], 'every Operator reconnected to a new worker, nothing to resend';

$gw->create_app("$clusters[1]-t", 'after-reload');
$gw->create_app($T, 'after-reload');
is_deeply [apply($clusters[1], "$clusters[1]-2", 1)],
    ["update Application $clusters[1]-t/after-reload"],
    'live delivery after the reload';
is_deeply [apply($C, "$C-2", 0.2)], ["update Application $T/after-reload"],
    '... on every stream';

ok wait_until(sub { !grep { kill 0, $_ } @old }, 15),
    'the old workers are gone (their streams did not hold them)';

for my $c ($C, @clusters) { $op->close("$c-2") }
for my $c ($C, @clusters) { $op->end("$c-2", 10) }
$op->quit;

is_deeply $gw->log_problems(0, $worker), [],
    'no [alert] or [emerg] (but for the worker killed on purpose)';
$gw->stop;
done_testing;
