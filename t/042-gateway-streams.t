# Operator gateway, one stream per cluster and keeping streams alive: a
# second stream of a cluster replaces the first (which ends ABORTED),
# whether the two are on one worker or on two (the other worker learns it
# through NOTIFY kubenova_stream); heartbeats keep an idle stream open
# past client_body_timeout, and
# a stream on which nothing comes for that long ends UNAVAILABLE.
use strict;
use warnings;

use Test::More;
use Time::HiRes qw(time sleep);

use KubeNova::Gateway qw(wait_until);
use KubeNova::Pg qw(require_pg psql);

require_pg();

my $gw = KubeNova::Gateway->start(tls => 1, workers => 2, master_process => 1,
                                  heartbeat => '1s', body_timeout => '3s');
my $ngx = $gw->ngx;
ok wait_until(sub { my @w = $ngx->worker_pids; @w == 2 }, 10), 'two workers';

my $C = 'gw42-c';
my $T = 'gw42-t';
$gw->create_cluster($C);
$gw->create_tenant($T, $C);

my $op = $gw->operator;
my $n = 0;

# a new stream of the cluster, in sync, with heartbeats every second;
# returns (id, worker pid)
sub connect_stream {
    my (%o) = @_;
    my $id = 's' . ++$n;
    my $off = $ngx->error_log_offset;
    $op->open($id, heartbeat_every => 1,
              hello => { cluster => $C,
                         applied => $gw->in_sync_applied($C) });
    my $w = $op->msg($id, 'welcome', 10) or return ($id, undef);
    return ($id, $gw->stream_worker($C, $off));
}

# --- a second stream replaces the first ---------------------------------

my ($prev, $prev_worker) = connect_stream();
ok $prev_worker, "first stream on worker $prev_worker";

my (%kind, @bad);
for my $round (1 .. 16) {
    my ($id, $worker) = connect_stream();
    if (!$worker) { push @bad, "round $round: no Welcome"; last }
    my $end = $op->end($prev, 10);
    my $how = $worker == $prev_worker ? 'same worker' : 'two workers';
    if (!$end || $end->{code} ne 'ABORTED'
        || $end->{details} ne 'replaced by a newer stream for this cluster')
    {
        push @bad, "round $round ($how): the older stream "
            . ($end ? "ended $end->{code}: $end->{details}" : 'did not end');
        last;
    }
    $kind{$how}++;
    ($prev, $prev_worker) = ($id, $worker);
    last if $round >= 4 && $kind{'same worker'} && $kind{'two workers'};
}
is_deeply \@bad, [], 'each newer stream ended the older one with ABORTED';
ok $kind{'same worker'}, 'replaced on the same worker ('
    . ($kind{'same worker'} // 0) . ' times)';
ok $kind{'two workers'}, 'replaced from the other worker ('
    . ($kind{'two workers'} // 0) . ' times)';

# the newest one is the cluster's stream: it gets the changes
$gw->create_app($T, 'after-replace');
my $u = $op->msg($prev, 'update', 10);
is $u && $u->{msg}{name}, "$T/after-replace",
    'the newest stream gets live changes';
is psql("SELECT connected FROM clusters WHERE name = '$C'"), 't',
    'the cluster is connected (the older streams did not disconnect it)';

# --- replacing a stream whose client stopped reading ----------------------
#
# The replaced stream cannot finish while its output waits for the client
# (up to send_timeout); meanwhile the newer stream on the same worker must
# get the changes (the ended one once kept its place in the worker's tree
# of streams, and every change went to it, and was dropped).

{
    my $SC = 'gw42-stall';
    $gw->create_cluster($SC);
    $gw->create_tenant("$SC-t", $SC);
    # 8000 objects of 2 kB: 16 MB, more than the client buffers unread;
    # without the NOTIFY trigger, so that they reach the stream as its
    # hello's difference only (8000 notices still being read by a loaded
    # worker when the hello begins would overflow its bounded queue of
    # changes and end it UNAVAILABLE before the test is under way)
    psql("SET session_replication_role = replica; "
         . "INSERT INTO desired_state (cluster, kind, name, tenant, spec) "
         . "SELECT '$SC', 'Application', '$SC-t/bulk' || i, '$SC-t', "
         . "jsonb_build_object('pad', repeat('x', 2000)) "
         . "FROM generate_series(1, 8000) AS i");

    my $off = $ngx->error_log_offset;
    $op->open('stalled', paused => 1, heartbeat_every => 1, quiet => 1,
              hello => { cluster => $SC });
    my $stalled_worker = $gw->stream_worker($SC, $off, 30);
    ok $stalled_worker, "a stream that does not read its difference "
        . "(worker $stalled_worker)";
    sleep 0.5;

    my ($id, $worker, $tries);
    for my $try (1 .. 20) {
        $tries = $try;
        $off = $ngx->error_log_offset;
        $id = "fresh$try";
        $op->open($id, heartbeat_every => 1,
                  hello => { cluster => $SC,
                             applied => $gw->in_sync_applied($SC) });
        $op->msg($id, 'welcome', 10) or last;
        $worker = $gw->stream_worker($SC, $off);
        last if $worker && $worker == $stalled_worker;
    }
    is $worker, $stalled_worker,
        "a newer stream on the same worker ($tries connection(s))";
    $gw->create_app("$SC-t", 'live');
    my $lu = $op->msg($id, 'update', 10);
    is $lu && $lu->{msg}{name}, "$SC-t/live",
        'the newer stream gets the changes while the older one lingers';
    $op->cmd(op => 'resume', id => 'stalled');
    my $end = $op->end('stalled', 30);
    is $end && "$end->{code}: $end->{details}",
        'ABORTED: replaced by a newer stream for this cluster',
        'the older stream, read at last, ends ABORTED (trailers intact)';
    cmp_ok $end && $end->{received}, '>', 1000,
        '... after what was queued for it (' . ($end && $end->{received})
        . ' messages: the rest of the difference was dropped)';
    $op->cancel($id);
    $op->end($id, 10);
}

$op->cancel($prev);
my $end = $op->end($prev, 10);

# --- heartbeats and client_body_timeout ----------------------------------

{
    my ($id, $worker) = connect_stream();
    ok $worker, 'a stream with heartbeats every second (client_body_timeout 3s)';
    my $t0 = time;
    my @ends = $op->take_all(sub { $_[0]{ev} eq 'end' && $_[0]{id} eq $id }, 6.5);
    is scalar @ends, 0, 'alive after 6.5 s, twice client_body_timeout';
    my @beats = $op->msgs($id, 'heartbeat', 0);
    cmp_ok scalar @beats, '>=', 4,
        'the Manager sent its heartbeats meanwhile (' . @beats . ')';
    ok $beats[0] && $beats[0]{msg}{sent_at_unix_ms} > 1.7e12,
        '... stamped with the time';

    # still usable after the wait
    $gw->create_app($T, 'after-wait');
    $u = $op->msg($id, 'update', 10);
    is $u && $u->{msg}{name}, "$T/after-wait", '... and it still gets changes';

    $op->heartbeats($id, 0);    # the Operator goes quiet
    my $quiet = time;
    $end = $op->end($id, 15);
    my $took = time - $quiet;
    is $end && $end->{code}, 'UNAVAILABLE',
        'without heartbeats the stream ends UNAVAILABLE';
    is $end && $end->{details}, 'nothing received within client_body_timeout',
        '... saying why';
    cmp_ok $took, '>=', 2, sprintf '... after client_body_timeout (%.1f s)', $took;
    cmp_ok $took, '<', 7, '... not much later';
    ok wait_until(sub {
            psql("SELECT connected FROM clusters WHERE name = '$C'") eq 'f'
        }, 10), 'the cluster is disconnected';
}

{
    # an Operator that never sends a heartbeat: ended after the timeout
    my $id = 'quiet';
    $op->open($id, hello => { cluster => $C,
                              applied => $gw->in_sync_applied($C) });
    ok $op->msg($id, 'welcome', 10), 'a stream without heartbeats';
    my $t0 = time;
    $end = $op->end($id, 15);
    is $end && $end->{code}, 'UNAVAILABLE', '... ends UNAVAILABLE';
    cmp_ok time - $t0, '<', 7, '... within about client_body_timeout';
}

$op->quit;
is_deeply $gw->log_problems(0), [], 'no [alert] or [emerg]';
$gw->stop;
done_testing;
