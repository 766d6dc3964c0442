# PostgreSQL restarted and stopped under a running nginx: broken connections
# (idle ones too) are noticed and replaced, readyz answers 503 while the
# database is away and 200 again as soon as it is back, without touching
# nginx.
use strict;
use warnings;

use Test::More;
use Time::HiRes qw(time sleep);

use KubeNova::Nginx;
use KubeNova::Pg qw(pg_ctl require_pg conninfo);

require_pg();

my $ngx = KubeNova::Nginx->new(log_level => 'info', workers => 2,
                               master_process => 1);
$ngx->setup_servroot;
$ngx->write_config(
    http_config => qq{kubenova_postgres "} . conninfo() . qq{" pool=3;},
    config      => join("\n",
        'location = /readyz  { kubenova_readyz; }',
        'location = /metrics { kubenova_metrics; }'),
);
my $master = $ngx->start;

sub readyz { ($ngx->get('/readyz', timeout => 10))[0] // 'none' }
sub metrics { ($ngx->get('/metrics'))[2] // '' }

sub wait_for {
    my ($cond, $timeout) = @_;
    my $deadline = time + ($timeout // 10);
    while (time < $deadline) {
        return 1 if $cond->();
        sleep 0.05;
    }
    return 0;
}

ok wait_for(sub { my @w = $ngx->worker_pids; @w == 2 }), "two workers";
my @workers = sort $ngx->worker_pids;
ok wait_for(sub { metrics() =~ /state="idle"\} 6$/m }),
    'both workers connected 3 each' or diag metrics();
like metrics(), qr/^kubenova_workers 2$/m, 'metrics add up both workers';
is readyz(), 200, 'ready before the restart';

pg_ctl('restart');
is readyz(), 200, 'the first request after a restart succeeds';
my @after = map { readyz() } 1 .. 10;
is_deeply \@after, [(200) x 10], 'and every one after it';
ok wait_for(sub { metrics() =~ /state="idle"\} 6$/m }),
    'every idle connection was replaced' or diag metrics();
my ($reconnects) = metrics() =~ /^kubenova_pg_reconnects_total (\d+)$/m;
cmp_ok $reconnects, '>=', 6, "reconnects counted ($reconnects)";

pg_ctl('kill');    # immediate shutdown, like a crash
my $t0 = time;
is readyz(), 503, 'database down: 503';
cmp_ok time - $t0, '<', 5, 'answered without waiting for a timeout';
my (undef, undef, $body) = $ngx->get('/readyz');
like $body, qr/"code":"database_unavailable"/, 'with a JSON error';

pg_ctl('start');
ok wait_for(sub { readyz() == 200 }, 10), 'ready again once it is back';
is_deeply [map { readyz() } 1 .. 10], [(200) x 10], 'and stays ready';

is $ngx->pid, $master, 'same nginx master throughout';
is_deeply [sort $ngx->worker_pids], \@workers, 'same workers throughout';
unlike scalar $ngx->error_log_since(0), qr/\[(?:alert|emerg)\]/,
    'no [alert] or [emerg]';

$ngx->stop;
done_testing;
