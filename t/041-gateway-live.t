# Operator gateway, live: REST writes reach the cluster's open stream as
# they commit, through LISTEN/NOTIFY, whichever of the two workers served
# the write (X-Worker names it; the stream's worker is in the error log).
# Acks show in the REST API ("sync": synced, or error with the cluster's
# message), an ok ack of a deletion finishes it; usage reports are stored
# once per sequence and acked every time; application statuses are acked
# (StatusAck) and shown as "cluster_status".
use strict;
use warnings;

use Test::More;
use POSIX ();
use Time::HiRes qw(time);

use KubeNova::Gateway qw(wait_until json_true json_false);
use KubeNova::Pg qw(require_pg psql);

require_pg();

my $gw = KubeNova::Gateway->start(tls => 1, workers => 2, master_process => 1,
                                  heartbeat => '10s');
my $ngx = $gw->ngx;
ok wait_until(sub { my @w = $ngx->worker_pids; @w == 2 }, 10), 'two workers';

my $C = 'gw41-c';
my $T = 'gw41-t';
$gw->create_cluster($C);
$gw->create_tenant($T, $C);
$gw->create_app($T, 'base');

my $op = $gw->operator;
my $off = $ngx->error_log_offset;
$op->open('s', hello => { cluster => $C,
                          applied => $gw->in_sync_applied($C) });
my $w = $op->msg('s', 'welcome', 10);
is_deeply [@{ $w->{msg} }{qw(updates deletes)}], [0, 0],
    'a cluster in sync: nothing to send';
my $stream_worker = $gw->stream_worker($C, $off);
ok $stream_worker, "the stream is served by worker $stream_worker";

# --- live delivery, across workers --------------------------------------

my (%served, @latency, $cross, $lost);
for my $i (1 .. 40) {
    my $t0 = time;
    my $r = $gw->create_app($T, "live$i");
    my $u = $op->msg('s', 'update', 10);
    if (!$u || $u->{msg}{name} ne "$T/live$i") {
        $lost = "write $i (worker $r->{worker}): "
            . ($u ? "got $u->{msg}{name}" : 'nothing within 10 s');
        last;
    }
    push @latency, time - $t0;
    $served{$r->{worker} == $stream_worker ? 'same' : 'other'}++;
    is $u->{msg}{generation},
        $gw->desired_generation($C, 'Application', "$T/live$i"),
        "write $i (worker $r->{worker}) arrived at its generation"
        if $i <= 2;
    last if $i >= 6 && $served{same} && $served{other};
}
ok !$lost, 'every REST write arrived on the stream' or diag $lost;
ok $served{other}, 'writes served by the other worker arrived '
    . '(' . ($served{other} // 0) . ' of them)';
ok $served{same}, 'writes served by the stream\'s worker arrived '
    . '(' . ($served{same} // 0) . ' of them)';
note sprintf 'delivery: %d writes, slowest %.0f ms (POST to receipt)',
    scalar @latency, 1000 * (sort { $b <=> $a } @latency)[0];

# a change: the new document, at a new generation
my $before = $gw->desired_generation($C, 'Application', "$T/live1");
$gw->api_ok(PUT => "tenants/$T/apps/live1",
            KubeNova::Gateway::app_document('live1', 'nginx:1.27'));
my $u = $op->msg('s', 'update', 10);
is $u->{msg}{name}, "$T/live1", 'a PUT arrives';
cmp_ok $u->{msg}{generation}, '>', $before, '... at a newer generation';
like $u->{msg}{payload_text}, qr/nginx:1\.27/, '... with the new document';
my $live1_gen = $u->{msg}{generation};

# a tenant change reaches the cluster too
$gw->api_ok(PATCH => "tenants/$T", { labels => { team => 'blue' } });
$u = $op->msg('s', 'update', 10);
is "$u->{msg}{kind} $u->{msg}{name}", "Tenant $T", 'a tenant PATCH arrives';
like $u->{msg}{payload_text}, qr/"team": ?"blue"/, '... with the new labels';

# a write for a tenant on another cluster does not
{
    $gw->create_cluster('gw41-other');
    $gw->create_tenant('gw41-elsewhere', 'gw41-other');
    $gw->create_app('gw41-elsewhere', 'x');
    my @stray = $op->msgs('s', undef, 1);
    is_deeply [map { $_->{msg}{name} } @stray], [],
        'writes for another cluster are not sent';
}

# --- acks ---------------------------------------------------------------

sub sync_of {
    my ($app) = @_;
    my $j = $gw->api(GET => "tenants/$T/apps/$app")->{json};
    my ($s) = grep { $_->{cluster} eq $C } @{ $j->{sync} || [] };
    return $s;
}

is sync_of('live1')->{state}, 'pending', 'before any ack: pending';

$op->send('s', { ack => { kind => 'Application', name => "$T/live1",
                          generation => $live1_gen, ok => json_true } });
ok wait_until(sub { sync_of('live1')->{state} eq 'synced' }, 10),
    'an ok ack: sync state synced';
is sync_of('live1')->{applied_generation}, $live1_gen,
    '... applied_generation is the acked one';

$gw->api_ok(PUT => "tenants/$T/apps/live1",
            KubeNova::Gateway::app_document('live1', 'nginx:does-not-exist'));
$u = $op->msg('s', 'update', 10);
$op->send('s', { ack => { kind => 'Application', name => "$T/live1",
                          generation => $u->{msg}{generation}, ok => json_false,
                          error => 'ImagePullBackOff: nginx:does-not-exist' } });
ok wait_until(sub { sync_of('live1')->{state} eq 'error' }, 10),
    'a failed ack: sync state error';
my $s = sync_of('live1');
is $s->{error}, 'ImagePullBackOff: nginx:does-not-exist',
    '... with the cluster\'s message';
is $s->{applied_generation}, $live1_gen,
    '... and the last generation applied stays';
is $s->{generation}, $u->{msg}{generation}, '... while the desired one is newer';

# an ack of an older generation than the failed one changes nothing
$op->send('s', { ack => { kind => 'Application', name => "$T/live1",
                          generation => $live1_gen, ok => json_true } });
$op->send('s', { usage => { sequence => 1, window_start_unix => 1,
                            window_end_unix => 2 } });    # a barrier
ok $op->msg('s', 'usage_ack', 10), '(barrier)';
is sync_of('live1')->{state}, 'error', 'a late ok ack of an older one: still error';

# the app deleted: an ObjectDelete; its ok ack finishes the deletion
my $d = $gw->api(DELETE => "tenants/$T/apps/live2");
is $d->{status}, 202, 'DELETE of an app on a connected cluster: 202';
my $del = $op->msg('s', 'delete', 10);
is "$del->{msg}{kind} $del->{msg}{name}", "Application $T/live2",
    'the deletion arrives live';
$op->send('s', { ack => { kind => 'Application', name => "$T/live2",
                          generation => $del->{msg}{generation},
                          ok => json_true } });
ok wait_until(sub {
        ($gw->api(GET => "tenants/$T/apps/live2")->{status} // 0) == 404
    }, 10), 'acked: the app is gone';

# --- usage --------------------------------------------------------------

my $usage = {
    sequence => 42, window_start_unix => 1700000000,
    window_end_unix => 1700000300,
    tenants => [{ tenant => $T, cpu_request_millicores => 1500,
                  memory_request_bytes => 3 * 2**30, pods => 7,
                  applications => 3 }],
};
$op->send('s', { usage => $usage });
my $ua = $op->msg('s', 'usage_ack', 10);
is $ua->{msg}{sequence}, 42, 'a usage report: UsageAck with its sequence';
$op->send('s', { usage => $usage });
$ua = $op->msg('s', 'usage_ack', 10);
is $ua->{msg}{sequence}, 42, 'the same report again: acked again';
is psql("SELECT count(*) FROM usage_reports WHERE cluster = '$C' AND sequence = 42"),
    1, 'stored once (usage_reports)';
is psql("SELECT tenant, cpu_request_millicores, memory_request_bytes, pods, "
        . "applications, load_balancers, window_start = to_timestamp(1700000000) "
        . "FROM tenant_usage WHERE cluster = '$C' AND sequence = 42"),
    "$T|1500|3221225472|7|3|0|t", 'stored once (tenant_usage), as sent';
$usage->{tenants}[0]{pods} = 99;    # a repeat that differs is still a repeat
$op->send('s', { usage => $usage });
ok $op->msg('s', 'usage_ack', 10), 'a differing repeat: acked';
is psql("SELECT pods FROM tenant_usage WHERE cluster = '$C' AND sequence = 42"),
    7, '... and not stored';

# --- application status -------------------------------------------------

my $status = { tenant => $T, app => 'live1', generation => $live1_gen,
               phase => 'running', observed_generation => $live1_gen,
               workflow_state => 'succeeded',
               services => [{ name => 'web', healthy => json_true,
                              message => 'Ready:1/1' }] };
$op->send('s', { app_status => $status });
my $sa = $op->msg('s', 'status_ack', 10);
is_deeply [@{ $sa->{msg} }{qw(tenant app generation)}],
    [$T, 'live1', $live1_gen], 'an application status: StatusAck';
my $cs = $gw->api(GET => "tenants/$T/apps/live1")->{json}{cluster_status};
is scalar @$cs, 1, 'GET app: one cluster_status';
is_deeply [@{ $cs->[0] }{qw(cluster generation phase observed_generation
                            workflow_state)}],
    [$C, $live1_gen, 'running', $live1_gen, 'succeeded'],
    '... with what the cluster reported';
is_deeply $cs->[0]{services},
    [{ name => 'web', healthy => json_true, message => 'Ready:1/1' }],
    '... and its services';

$op->send('s', { app_status => { %$status, app => 'no-such-app' } });
ok $op->msg('s', 'status_ack', 10),
    'a status of an app that does not exist: acked all the same';

$op->close('s');
is $op->end('s', 10)->{code}, 'OK', 'the stream ends OK when the Operator closes it';

# --- writes that commit while a hello runs ---------------------------------
#
# A write that commits after the hello's difference was read, but whose
# notification reaches the worker before the hello's answer, must still
# reach the stream (docs/api-design.md: live delivery is lossless).  The
# gateway registers a stream for changes only once its hello answered, so
# such a notification finds no stream and the change is lost until the next
# reconnect.  Several clusters with a large difference (a slow hello) and a
# REST writer running while they connect make the window likely to be hit.

{
    my @cl = map { "gw41-race$_" } 1 .. 6;
    $gw->create_cluster($_) for @cl;
    my $RT = 'gw41-race-t';
    $gw->create_tenant($RT, @cl);
    my $list = join ',', map { "('$_')" } @cl;
    psql("INSERT INTO desired_state (cluster, kind, name, tenant, spec) "
         . "SELECT c, 'Application', '$RT/bulk' || i, '$RT', "
         . "jsonb_build_object('pad', repeat('x', 200)) "
         . "FROM (VALUES $list) AS v (c), generate_series(1, 2000) AS i");

    my $writer = fork // die "fork: $!";
    if ($writer == 0) {
        my $deadline = time + 4;
        for (my $i = 1; time < $deadline; $i++) {
            KubeNova::Nginx::http_request(
                port => $ngx->port, method => 'POST',
                path => "/api/v1/tenants/$RT/apps",
                headers => { Authorization => "Bearer $ENV{TEST_NGINX_ADMIN_TOKEN}",
                             'Content-Type' => 'application/json' },
                body => JSON::PP->new->encode(
                    KubeNova::Gateway::app_document("w$i")));
        }
        POSIX::_exit(0);
    }

    my $rop = $gw->operator;
    for my $c (@cl) {
        Time::HiRes::sleep(0.4);
        $rop->open($c, hello => { cluster => $c });
    }
    waitpid $writer, 0;
    my (%got, @missing);
    # until nothing more comes for a second (at most 30 s)
    my $deadline = time + 30;
    while (time < $deadline) {
        my @m = $rop->take_all(sub {
            $_[0]{ev} eq 'msg' && $_[0]{type} eq 'update' }, 1);
        last unless @m;
        $got{$_->{id}}{$_->{msg}{name}} = 1 for @m;
    }
    my @ended = map { "$_->{id}: $_->{code} $_->{details}" }
                $rop->take_all(sub { $_[0]{ev} eq 'end' }, 0);
    is_deeply \@ended, [], 'the streams are still open';
    for my $c (@cl) {
        my @want = split /\n/, psql("SELECT name FROM desired_state WHERE "
                                    . "cluster = '$c' AND kind = 'Application' "
                                    . "AND NOT deleted ORDER BY generation");
        my @lost = grep { !$got{$c}{$_} } @want;
        push @missing, "$c: " . @lost . " of " . @want . " lost (@lost)"
            if @lost;
    }
    is scalar(@missing), 0,
        'every write reached every cluster, in the difference or live'
        or diag join "\n", @missing;
    $rop->quit;
}

$op->quit;
is_deeply $gw->log_problems(0), [], 'no [alert] or [emerg]';
$gw->stop;
done_testing;
