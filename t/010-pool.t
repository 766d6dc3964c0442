# The PostgreSQL pool under pressure: exhaustion, queueing, timeouts and
# clients that go away.  One nginx keeps running through each scenario, so
# this is plain Test::More on top of KubeNova::Nginx.
use strict;
use warnings;

use Test::More;
use IO::Socket::INET;
use Time::HiRes qw(time sleep);

use KubeNova::Nginx;
use KubeNova::Pg qw(psql hold_lock require_pg conninfo);

require_pg();

my $ngx = KubeNova::Nginx->new(log_level => 'info');

sub start_with {
    my ($pool_args) = @_;
    $ngx->stop if $ngx->is_running;
    $ngx->setup_servroot;
    $ngx->write_config(
        http_config => qq{kubenova_postgres "} . conninfo() . qq{" $pool_args;},
        config      => join("\n",
            'location = /readyz  { kubenova_readyz; }',
            'location = /metrics { kubenova_metrics; }'),
    );
    $ngx->start;
    wait_metric(qr/^kubenova_pg_pool_connections\{state="idle"\} [1-9]/m);
}

sub metrics { ($ngx->get('/metrics'))[2] // '' }

sub metric {
    my ($name) = @_;
    my ($v) = metrics() =~ /^\Q$name\E (\d+)$/m;
    return $v;
}

sub wait_metric {
    my ($re, $timeout) = @_;
    my $deadline = time + ($timeout // 5);
    while (time < $deadline) {
        return 1 if metrics() =~ $re;
        sleep 0.02;
    }
    diag metrics();
    return 0;
}

# sends GET /readyz and leaves the answer unread
sub send_readyz {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => $ngx->port) or die "$!";
    print $s "GET /readyz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    return $s;
}

sub read_all {
    my ($s) = @_;
    local $/;
    my $raw = <$s> // '';
    my ($status) = $raw =~ m{^HTTP/1\.1 (\d+)};
    my ($body) = $raw =~ /\r\n\r\n(.*)\z/s;
    return ($status, $body);
}

subtest 'pool exhausted: one busy, one queued, the next refused at once' => sub {
    start_with('pool=1 queue=1 queue_timeout=20s');
    my $lock = hold_lock('schema_migrations');

    my $a = send_readyz();
    ok wait_metric(qr/^kubenova_pg_pool_connections\{state="busy"\} 1$/m),
        'the only connection is busy';
    my $b = send_readyz();
    ok wait_metric(qr/^kubenova_pg_queued_requests 1$/m), 'one request queued';

    my $t0 = time;
    my ($status, undef, $body) = $ngx->get('/readyz', timeout => 15);
    my $took = time - $t0;
    is $status, 503, 'third request refused';
    is $body, '{"error":{"status":503,"code":"database_busy","message":'
            . '"all database connections are busy and the queue is full"}}' . "\n",
        'with a JSON error that says why';
    cmp_ok $took, '<', 10, 'without waiting for the 20 s queue timeout';
    is metric('kubenova_pg_queue_rejections_total'), 1, 'rejection counted';

    $lock->release;
    my ($sa) = read_all($a);
    my ($sb) = read_all($b);
    is $sa, 200, 'busy request completes once the lock is gone';
    is $sb, 200, 'queued request completes too';
    ok wait_metric(qr/^kubenova_pg_queued_requests 0$/m), 'queue empty';
};

subtest 'queue timeout gives 503 database_busy' => sub {
    start_with('pool=1 queue=4 queue_timeout=300ms');
    my $lock = hold_lock('schema_migrations');
    my $a = send_readyz();
    ok wait_metric(qr/^kubenova_pg_pool_connections\{state="busy"\} 1$/m),
        'connection busy';

    my ($status, undef, $body) = $ngx->get('/readyz', timeout => 10);
    is $status, 503, 'queued request gives up';
    like $body, qr/"code":"database_busy","message":"timed out waiting for a database connection"/,
        'after the queue timeout';
    is metric('kubenova_pg_queue_timeouts_total'), 1, 'timeout counted';

    $lock->release;
    is((read_all($a))[0], 200, 'the first request still completes');
};

subtest 'a client that goes away while queued leaves the queue at once' => sub {
    start_with('pool=1 queue=4 queue_timeout=20s');
    my $lock = hold_lock('schema_migrations');
    my $a = send_readyz();
    ok wait_metric(qr/^kubenova_pg_pool_connections\{state="busy"\} 1$/m), 'busy';
    my $b = send_readyz();
    ok wait_metric(qr/^kubenova_pg_queued_requests 1$/m), 'queued';
    close $b;
    ok wait_metric(qr/^kubenova_pg_queued_requests 0$/m), 'dequeued on close';
    ok $ngx->wait_for_error_log(qr/client prematurely closed connection/, 0, 5),
        'nginx saw the client go';
    $lock->release;
    is((read_all($a))[0], 200, 'the busy request is unaffected');
};

subtest 'a client that goes away mid-query frees its connection' => sub {
    start_with('pool=1 queue=4 queue_timeout=20s');
    my $lock = hold_lock('schema_migrations');
    my $a = send_readyz();
    ok wait_metric(qr/^kubenova_pg_pool_connections\{state="busy"\} 1$/m), 'busy';
    close $a;
    ok wait_metric(qr/^kubenova_http_requests_total\{handler="readyz",code="499"\} 1$/m),
        'request ended as 499';
    $lock->release;
    ok wait_metric(qr/^kubenova_pg_pool_connections\{state="idle"\} 1$/m),
        'the connection is idle again once the statement ends';
    my ($status) = $ngx->get('/readyz');
    is $status, 200, 'and serves the next request';
    is psql("SELECT count(*) FROM pg_stat_activity WHERE application_name = "
            . "'kubenova-manager' AND state <> 'idle'"), 0,
        'no session of ours is left inside a statement';
};

subtest 'the error log stayed clean' => sub {
    my $log = $ngx->error_log_since(0);
    unlike $log, qr/\[(?:alert|emerg)\]/, 'no [alert] or [emerg]';
};

$ngx->stop;
done_testing;
