# Usage and billing, the Manager side: usage reports sent through the real
# gateway by python3-grpcio Operators (t/lib/kubenova_grpc_client.py),
# then read back with the REST API:
#
#   * GET /tenants/{t}/usage and GET /usage: exact figures per hour, day
#     and month (windows split across buckets by the second, several
#     clusters summed), JSON and CSV (Accept: text/csv), pages;
#   * a resent report changes nothing; a cluster deleted and created again
#     under its name starts its sequence afresh and is not taken for the
#     old one; reports of tenants the Manager does not know are kept;
#   * who may read what (members of the tenant, admins; 403/404 as
#     elsewhere); bad parameters are 400 invalid_query;
#   * GET /tenants/{t}/invoice on fixed plan and price history rows: a
#     mid-month plan change and a mid-month price change, with the exact
#     cents (rounded half up per line); plan changes through the API are
#     recorded;
#   * the per-tenant gauges of /metrics, and their bound.
use strict;
use warnings;

use Test::More;

use KubeNova::Gateway qw(wait_until free_port);
use KubeNova::Nginx;
use KubeNova::Pg qw(require_pg psql);
use JSON::PP ();

require_pg();

my $JSON = JSON::PP->new->utf8->canonical->allow_nonref;

my $SERIES = 8;      # kubenova_usage_metrics_series
my $mport = free_port();
my $gw = KubeNova::Gateway->start(
    tls => 1, workers => 2, master_process => 1,
    http_config => join("\n",
        "kubenova_usage_metrics_series $SERIES;",
        'server {',
        "    listen 127.0.0.1:$mport;",
        '    location = /metrics { kubenova_metrics; }',
        '}'));
my $ngx = $gw->ngx;

# 2024-02-01T00:00:00Z; February 2024 has 29 days
my $T0 = 1706745600;
my ($H, $D) = (3600, 86400);
my $GiB = 2**30;

# --- fixtures --------------------------------------------------------------

# registered through the API: each stream presents its cluster's certificate
$gw->create_cluster($_) for qw(u69-c1 u69-c2);
$gw->create_tenant($_) for qw(u69-a u69-b);

sub token_for {
    my ($tenant, $user, $role) = @_;
    $gw->api_ok(POST => "tenants/$tenant/users", { name => $user, role => $role });
    return $gw->api_ok(POST => "users/$user/tokens", { name => 't69' })->{json}{token};
}

my %tok = (
    admin => $ENV{TEST_NGINX_ADMIN_TOKEN},
    owner => token_for('u69-a', 'u69-a-owner', 'owner'),
    ro    => token_for('u69-a', 'u69-a-ro', 'readonly'),
    other => token_for('u69-b', 'u69-b-owner', 'owner'),
);

# GET below /api/v1 as $who (a key of %tok, or undef: no token)
sub get {
    my ($who, $path, %h) = @_;
    my $r = KubeNova::Nginx::http_request(
        port => $ngx->port, method => 'GET', path => "/api/v1/$path",
        headers => { ($who ? (Authorization => "Bearer $tok{$who}") : ()), %h },
        timeout => 10);
    $r->{json} = eval { $JSON->decode($r->{body}) }
        if ($r->{headers}{'content-type'} // '') =~ m{^application/json};
    return $r;
}

sub metrics {
    my (undef, undef, $body) = KubeNova::Nginx::http_get($mport, '/metrics');
    return $body // '';
}

# the value of one gauge line, or undef
sub gauge {
    my ($text, $name, $tenant, $cluster) = @_;
    my $labels = qq{{tenant="$tenant",cluster="$cluster"}};
    return $text =~ /^\Q$name$labels\E (-?\d+)$/m ? $1 : undef;
}

my $op = $gw->operator;
my %stream = (s1 => 'u69-c1', s2 => 'u69-c2');
for my $s (sort keys %stream) {
    $op->open($s, hello => { cluster => $stream{$s} });
    ok $op->msg($s, 'welcome', 10), "$s: welcome";
}

# a report on stream $s, acknowledged (UsageAck with its sequence)
sub report {
    my ($s, $seq, $start, $end, @tenants) = @_;
    $op->send($s, { usage => { sequence => $seq, window_start_unix => $start,
                               window_end_unix => $end, tenants => \@tenants } });
    my $ack = $op->msg($s, 'usage_ack', 10);
    return $ack && $ack->{msg}{sequence} == $seq;
}

sub rows_of {
    my ($cluster, $seq) = @_;
    return psql("SELECT count(*) FROM tenant_usage WHERE cluster = '$cluster' "
                . "AND sequence = $seq");
}

# --- reports ----------------------------------------------------------------

ok report('s1', 1, $T0, $T0 + $H,
          { tenant => 'u69-a', cpu_request_millicores => 1500,
            memory_request_bytes => 2 * $GiB, storage_request_bytes => 10 * $GiB,
            load_balancers => 1, pods => 3, namespaces => 2, applications => 1,
            quota_violations => 1 },
          { tenant => 'u69-b', cpu_request_millicores => 250, pods => 1 }),
    'c1 #1 (00:00-01:00): acked';
ok report('s2', 1, $T0, $T0 + $H,
          { tenant => 'u69-a', cpu_request_millicores => 500, pods => 2,
            quota_violations => 2 }),
    'c2 #1 (00:00-01:00), the same sequence on another cluster: acked';
is rows_of('u69-c2', 1), 1, '... and stored';

my $m = metrics();
is gauge($m, 'kubenova_tenant_cpu_request_millicores', 'u69-a', 'u69-c1'), 1500,
    'metrics: the latest CPU figure of (u69-a, u69-c1)';
is gauge($m, 'kubenova_tenant_cpu_request_millicores', 'u69-a', 'u69-c2'), 500,
    'metrics: ... and of (u69-a, u69-c2), a series of its own';
is gauge($m, 'kubenova_tenant_memory_request_bytes', 'u69-a', 'u69-c1'), 2 * $GiB,
    'metrics: memory';
is gauge($m, 'kubenova_tenant_pods', 'u69-b', 'u69-c1'), 1, 'metrics: pods of u69-b';
is gauge($m, 'kubenova_tenant_quota_violations', 'u69-a', 'u69-c2'), 2,
    'metrics: quota violations';
is gauge($m, 'kubenova_tenant_usage_window_end_seconds', 'u69-a', 'u69-c1'), $T0 + $H,
    'metrics: the end of the window the figures are for';
like $m, qr/^kubenova_tenant_usage_series 3$/m, 'metrics: 3 series';

ok report('s1', 2, $T0 + $H + 1800, $T0 + 3 * $H,
          { tenant => 'u69-a', cpu_request_millicores => 1000,
            storage_request_bytes => 10 * $GiB, pods => 4 }),
    'c1 #2 (01:30-03:00, across an hour): acked';
ok report('s1', 3, $T0 + 23 * $H, $T0 + 25 * $H,
          { tenant => 'u69-a', cpu_request_millicores => 2000, gpu_requests => 1,
            pods => 2 }),
    'c1 #3 (23:00-01:00, across a day): acked';

# --- a resent report changes nothing -----------------------------------------

my $q_hour = 'from=2024-02-01&to=2024-02-02&granularity=hour';
my $before = get(admin => "tenants/u69-a/usage?$q_hour")->{body};
my $reports = psql('SELECT count(*) FROM usage_reports');
ok report('s1', 1, $T0, $T0 + $H,
          { tenant => 'u69-a', cpu_request_millicores => 99999, pods => 99 },
          { tenant => 'u69-new', pods => 1 }),
    'c1 #1 again, with other figures: acked again';
is psql('SELECT count(*) FROM usage_reports'), $reports, '... no new report';
is rows_of('u69-c1', 1), 2, '... no new tenant row';
is get(admin => "tenants/u69-a/usage?$q_hour")->{body}, $before,
    '... the usage reads the same';
is psql("SELECT cpu_request_millicores FROM tenant_usage WHERE cluster = 'u69-c1' "
        . "AND sequence = 1 AND tenant = 'u69-a'"), 1500, '... the first figures stand';

# a new report of an older window for u69-b: stored, but the gauge keeps
# the latest window's figures
ok report('s1', 4, $T0 - $H, $T0,
          { tenant => 'u69-b', cpu_request_millicores => 999 }),
    'c1 #4, an older window: acked';
is rows_of('u69-c1', 4), 1, '... stored';

$m = metrics();
is gauge($m, 'kubenova_tenant_cpu_request_millicores', 'u69-a', 'u69-c1'), 2000,
    'metrics: the latest report of (u69-a, u69-c1), not the resent one';
is gauge($m, 'kubenova_tenant_gpu_requests', 'u69-a', 'u69-c1'), 1, 'metrics: GPUs';
is gauge($m, 'kubenova_tenant_cpu_request_millicores', 'u69-b', 'u69-c1'), 250,
    'metrics: an older window does not replace a newer one';
is gauge($m, 'kubenova_tenant_pods', 'u69-new', 'u69-c1'), undef,
    'metrics: nothing from a repeat';

# --- figures -------------------------------------------------------------------

my @COLS = qw(tenant start end cpu_core_hours memory_gib_hours storage_gib_hours
              load_balancer_hours gpu_hours pods_avg pods_max namespaces_avg
              namespaces_max applications_avg applications_max quota_violations);

# the items of a JSON answer as CSV-like lines (numbers as the API wrote them)
sub lines_of {
    my ($r) = @_;
    return [map { my $i = $_; join ',', map { $i->{$_} } @COLS }
            @{ ($r->{json} && $r->{json}{items}) || [] }];
}

my $hourly = get(admin => "tenants/u69-a/usage?$q_hour");
is $hourly->{status}, 200, 'hourly usage of u69-a: 200';
is_deeply [@{ $hourly->{json} }{qw(tenant from to granularity continue)}],
    ['u69-a', '2024-02-01T00:00:00Z', '2024-02-02T00:00:00Z', 'hour', undef],
    '... for what was asked';
is_deeply lines_of($hourly), [
    # both clusters in 00:00; 01:30-02:00 is half an hour; 23:00-01:00 is cut at to
    'u69-a,2024-02-01T00:00:00Z,2024-02-01T01:00:00Z,2,2,10,1,0,5,5,2,2,1,1,3',
    'u69-a,2024-02-01T01:00:00Z,2024-02-01T02:00:00Z,0.5,0,5,0,0,2,4,0,0,0,0,0',
    'u69-a,2024-02-01T02:00:00Z,2024-02-01T03:00:00Z,1,0,10,0,0,4,4,0,0,0,0,0',
    'u69-a,2024-02-01T23:00:00Z,2024-02-02T00:00:00Z,2,0,0,0,1,2,2,0,0,0,0,0',
], '... exact figures per hour';

my $daily = get(admin => 'tenants/u69-a/usage?from=2024-02-01&to=2024-02-03&granularity=day');
is_deeply lines_of($daily), [
    # pods: (5*3600 + 4*1800 + 4*3600 + 2*3600) / 86400; peak 4 (c1) + 2 (c2)
    'u69-a,2024-02-01T00:00:00Z,2024-02-02T00:00:00Z,5.5,2,25,1,1,0.541667,6,0.083333,2,0.041667,1,3',
    'u69-a,2024-02-02T00:00:00Z,2024-02-03T00:00:00Z,2,0,0,0,1,0.083333,2,0,0,0,0,0',
], 'per day: exact figures, the window across midnight split by the second';

my $monthly = get(admin => 'tenants/u69-a/usage?from=2024-02-01T00:00:00Z&to=2024-03-01T00:00:00Z'
                           . '&granularity=month');
is_deeply lines_of($monthly), [
    'u69-a,2024-02-01T00:00:00Z,2024-03-01T00:00:00Z,7.5,2,25,1,2,0.021552,6,0.002874,2,0.001437,1,3',
], 'per month: exact figures (averages over the 29 days)';

my $cut = get(admin => 'tenants/u69-a/usage?from=2024-02-01T01:45:00Z&to=2024-02-01T02:30:00Z'
                       . '&granularity=hour');
is_deeply lines_of($cut), [
    'u69-a,2024-02-01T01:45:00Z,2024-02-01T02:00:00Z,0.25,0,2.5,0,0,4,4,0,0,0,0,0',
    'u69-a,2024-02-01T02:00:00Z,2024-02-01T02:30:00Z,0.5,0,5,0,0,4,4,0,0,0,0,0',
], 'buckets cut to [from, to), averages over what is left of them';

my $all = get(admin => 'usage?from=2024-02-01&to=2024-02-02&granularity=day');
is $all->{status}, 200, 'GET /usage (admin): 200';
is_deeply [grep { /^u69-/ } @{ lines_of($all) }], [
    'u69-a,2024-02-01T00:00:00Z,2024-02-02T00:00:00Z,5.5,2,25,1,1,0.541667,6,0.083333,2,0.041667,1,3',
    'u69-b,2024-02-01T00:00:00Z,2024-02-02T00:00:00Z,0.25,0,0,0,0,0.041667,1,0,0,0,0,0',
], '... every tenant, by name';
is_deeply lines_of(get(admin => 'usage?from=2024-01-31&to=2024-02-02&granularity=day&tenant=u69-b')), [
    'u69-b,2024-01-31T00:00:00Z,2024-02-01T00:00:00Z,0.999,0,0,0,0,0,0,0,0,0,0,0',
    'u69-b,2024-02-01T00:00:00Z,2024-02-02T00:00:00Z,0.25,0,0,0,0,0.041667,1,0,0,0,0,0',
], '... ?tenant= filters';

# --- pages and CSV -------------------------------------------------------------

my $p1 = get(admin => "tenants/u69-a/usage?$q_hour&limit=2");
is scalar @{ $p1->{json}{items} }, 2, 'limit=2: two rows';
ok $p1->{json}{continue}, '... and a continue';
my $p2 = get(admin => "tenants/u69-a/usage?$q_hour&limit=2&continue=$p1->{json}{continue}");
is_deeply [@{ lines_of($p1) }, @{ lines_of($p2) }], lines_of($hourly),
    'the next page has the rest';
is $p2->{json}{continue}, undef, '... and is the last';

my $csv = get(admin => "tenants/u69-a/usage?$q_hour", Accept => 'text/csv');
is $csv->{status}, 200, 'Accept: text/csv: 200';
like $csv->{headers}{'content-type'}, qr{^text/csv\b}, '... Content-Type text/csv';
is $csv->{body}, join('', map { "$_\r\n" } join(',', @COLS), @{ lines_of($hourly) }),
    '... a header line, then one line per bucket, as the JSON says';
ok !exists $csv->{headers}{'kubenova-continue'}, '... on one page: no KubeNova-Continue';

my $c1 = get(admin => "tenants/u69-a/usage?$q_hour&limit=3", Accept => 'text/csv');
is $c1->{headers}{'kubenova-continue'}, get(admin => "tenants/u69-a/usage?$q_hour&limit=3")->{json}{continue},
    'CSV pages: the continue in KubeNova-Continue';
my $c2 = get(admin => "tenants/u69-a/usage?$q_hour&limit=3&continue=$c1->{headers}{'kubenova-continue'}",
             Accept => 'text/csv');
my @csv_lines = ((split /\r\n/, $c1->{body}), (split /\r\n/, $c2->{body}));
is_deeply [grep { $_ ne join(',', @COLS) } @csv_lines], lines_of($hourly),
    '... the second page has the rest, each with its header line';

is get(admin => "tenants/u69-a/usage?$q_hour", Accept => 'application/json, text/csv;q=0.5')
       ->{headers}{'content-type'}, 'application/json',
    'JSON preferred by q: JSON';
like get(admin => "usage?$q_hour&tenant=u69-b", Accept => 'text/html, text/csv;q=0.9, */*;q=0.1')
       ->{headers}{'content-type'}, qr{^text/csv},
    'text/csv preferred to the wildcard: CSV (GET /usage too)';
like get(admin => "tenants/u69-a/usage?granularity=week", Accept => 'text/csv')
       ->{headers}{'content-type'}, qr{^application/json},
    'errors stay JSON whatever Accept says';

# names that need quoting in CSV
ok report('s1', 6, $T0, $T0 + $H, { tenant => 'u69-x, "quoted"', pods => 1 }),
    'a report of a tenant whose name has a comma and quotes: acked';
like get(admin => 'usage?from=2024-02-01&to=2024-02-02&tenant=' . 'u69-x%2C%20%22quoted%22',
         Accept => 'text/csv')->{body},
    qr/\r\n"u69-x, ""quoted""",2024-02-01T00:00:00Z,/, '... quoted as RFC 4180 says';

# --- who may read -------------------------------------------------------------

my %who = (
    "tenants/u69-a/usage?$q_hour" => { admin => 200, owner => 200, ro => 200, other => 404, '' => 401 },
    'tenants/u69-a/invoice?month=2024-02' => { admin => 200, owner => 200, ro => 200, other => 404, '' => 401 },
    "usage?$q_hour"                => { admin => 200, owner => 403, ro => 403, other => 403, '' => 401 },
    "tenants/u69-zz/usage?$q_hour" => { admin => 404, owner => 404, ro => 404, other => 404 },
);
for my $path (sort keys %who) {
    for my $w (sort keys %{ $who{$path} }) {
        my $r = get($w || undef, $path);
        is $r->{status}, $who{$path}{$w}, ($w || 'no token') . ": GET $path";
    }
}
is_deeply lines_of(get(ro => "tenants/u69-a/usage?$q_hour")), lines_of($hourly),
    'a read-only member reads the same figures';

# --- bad parameters -------------------------------------------------------------

for my $bad ('granularity=week', 'granularity=', 'from=2024-02-30', 'from=yesterday',
             'from=2024-02-01T00:00:00', 'to=1969-12-31', 'from=2024-02-02&to=2024-02-01',
             'from=2024-02-01&to=2024-02-01', 'limit=0', 'limit=10001', 'limit=x',
             'continue=not-a-page', 'continue=' . ('A' x 500)) {
    my $r = get(admin => "tenants/u69-a/usage?$bad");
    is $r->{status}, 400, "usage?$bad: 400";
    is $r->{json}{error}{code}, 'invalid_query', '... invalid_query';
}
is get(admin => 'usage?tenant=')->{status}, 400, 'usage?tenant= (empty): 400';
for my $bad (qw(2024-13 2024-00 24-01 2024-1 1969-12 2024-02-01 x)) {
    my $r = get(admin => "tenants/u69-a/invoice?month=$bad");
    is $r->{status}, 400, "invoice?month=$bad: 400";
    like $r->{json}{error}{message}, qr/month/, '... saying what is wrong';
}

# --- storage: re-created clusters, unknown and deleted tenants -----------------

$gw->api_ok(DELETE => 'clusters/u69-c2');
my $end = $op->end('s2', 10);
is $end && $end->{code}, 'ABORTED', 'a deleted cluster: its stream ends';
$gw->create_cluster('u69-c2');
$op->open('s2b', hello => { cluster => 'u69-c2' });
ok $op->msg('s2b', 'welcome', 10), 'the cluster created again under its name connects';
my $june = 1717200000;    # 2024-06-01T00:00:00Z
ok report('s2b', 1, $june, $june + $H, { tenant => 'u69-a', cpu_request_millicores => 100 }),
    '... its sequence 1: acked';
is rows_of('u69-c2', 1), 2, '... and stored: not taken for the old cluster\'s sequence 1';
is psql("SELECT count(DISTINCT cluster_id) FROM usage_reports WHERE cluster = 'u69-c2'"), 2,
    '... as another cluster id';
is_deeply lines_of(get(admin => 'tenants/u69-a/usage?from=2024-06-01&to=2024-06-02')), [
    'u69-a,2024-06-01T00:00:00Z,2024-06-02T00:00:00Z,0.1,0,0,0,0,0,0,0,0,0,0,0',
], '... and read';
is_deeply [psql("SELECT stored, status FROM gateway.usage('u69-c9', 1, 0, 1, '[]')")], ['f|16'],
    'a report of a cluster that does not exist: not stored, refused (16)';

# what gateway.usage refuses (3), checked in one pass or, for the
# unusual, tenant by tenant; unusual but fine forms are stored
my $seq = 500;
for my $case (
    ['[{"tenant":"u69-a","pods":-1}]', 'tenants[0].pods must be a non-negative integer'],
    ['[{"tenant":"u69-a"},{"tenant":"u69-b","gpu_requests":1.5}]',
     'tenants[1].gpu_requests must be a non-negative integer'],
    ['[{"tenant":"u69-a","pods":"x"}]', 'tenants[0].pods must be a non-negative integer'],
    ['[{"tenant":"u69-a","pods":true}]', 'tenants[0].pods must be a non-negative integer'],
    ['[{"tenant":"u69-a","pods":99999999999999999999}]',
     'tenants[0].pods must be a non-negative integer'],
    ['[{"tenant":""}]', 'tenants[0].tenant must be a string of 1 to 253 characters'],
    ['[{"tenant":"' . ('t' x 254) . '"}]', 'tenants[0].tenant must be a string of 1 to 253 characters'],
    ['[{"tenant":"u69-a"},{"tenant":"u69-a"}]', 'tenants: u69-a is listed more than once'],
    ['[1]', 'tenants[0]: must be an object'],
    ['{"tenant":"u69-a"}', 'tenants must be an array of TenantUsage objects'],
) {
    $seq++;
    is psql("SELECT stored || ' ' || status || ' ' || message FROM gateway.usage("
            . "'u69-c1', $seq, $T0, $T0 + 60, '$case->[0]')"),
        "false 3 $case->[1]", "gateway.usage refuses $case->[0]";
}
is psql("SELECT count(*) FROM usage_reports WHERE cluster = 'u69-c1' AND sequence > 500"), 0,
    '... storing nothing';
is psql("SELECT stored FROM gateway.usage('u69-c1', 600, $T0, $T0, "
        . q{'[{"tenant":"u69-s","pods":"12","cpu_request_millicores":1.0,"gpu_requests":null}]')}),
    't', 'integers as strings, as 1.0 and null: stored';
is psql("SELECT pods || ' ' || cpu_request_millicores || ' ' || gpu_requests "
        . "FROM tenant_usage WHERE cluster = 'u69-c1' AND sequence = 600"), '12 1 0',
    '... as the integers they are';
is psql("SELECT stored || ' ' || status FROM gateway.usage('u69-c1', 600, $T0, $T0, '[1]')"),
    'false 0', 'a repeat is known by its key alone: acked, whatever it holds';
is psql("SELECT stored || ' ' || status || ' ' || message FROM gateway.usage("
        . "'u69-c1', 601, $T0, $T0 + 31 * 86400 + 1, '[]')"),
    'false 3 a usage window may last at most 2678400 seconds', 'a window over 31 days: 3';

ok report('s1', 7, $T0, $T0 + $H, { tenant => 'u69-ghost', cpu_request_millicores => 100 }),
    'a report of a tenant the Manager does not know: acked';
is rows_of('u69-c1', 7), 1, '... and kept';
is_deeply lines_of(get(admin => 'usage?from=2024-02-01&to=2024-02-02&tenant=u69-ghost')), [
    'u69-ghost,2024-02-01T00:00:00Z,2024-02-02T00:00:00Z,0.1,0,0,0,0,0,0,0,0,0,0,0',
], '... admins see it in GET /usage';
is get(admin => 'tenants/u69-ghost/usage')->{status}, 404,
    '... but it is no tenant (GET /tenants/u69-ghost/usage: 404)';

$gw->create_tenant('u69-gone');
ok report('s1', 8, $T0, $T0 + $H, { tenant => 'u69-gone', cpu_request_millicores => 100 }),
    'a report of u69-gone';
$gw->api_ok(DELETE => 'tenants/u69-gone');
my $gone = get(admin => 'tenants/u69-gone/usage?from=2024-02-01&to=2024-02-02');
is $gone->{status}, 200, 'the tenant deleted: admins still read its usage';
is scalar @{ $gone->{json}{items} }, 1, '... all of it';
is get(admin => 'tenants/u69-gone/invoice?month=2024-02')->{status}, 200,
    '... and its invoices';

# a window longer than 31 days is refused: the stream ends, nothing stored
$op->open('s1b', hello => { cluster => 'u69-c1' });
ok $op->msg('s1b', 'welcome', 10), 'c1 again';
$op->send('s1b', { usage => { sequence => 9, window_start_unix => $T0,
                             window_end_unix => $T0 + 32 * $D,
                             tenants => [{ tenant => 'u69-a', pods => 1 }] } });
$end = $op->end('s1b', 10);
is $end && $end->{code}, 'INVALID_ARGUMENT', 'a window of 32 days: INVALID_ARGUMENT';
like $end && $end->{details}, qr/at most 2678400 seconds/, '... saying why';
is psql("SELECT count(*) FROM usage_reports WHERE cluster = 'u69-c1' AND sequence = 9"), 0,
    '... nothing stored';
$op->open('s1c', hello => { cluster => 'u69-c1' });
ok $op->msg('s1c', 'welcome', 10), 'c1 again';

# every page of one row, across tenants: the same rows as one page
{
    my $q = 'usage?from=2024-01-31&to=2024-02-03&granularity=hour';
    my (@rows, $next, $pages);
    do {
        my $r = get(admin => "$q&limit=1" . ($next ? "&continue=$next" : ''));
        push @rows, @{ lines_of($r) };
        $next = $r->{json}{continue};
    } while ($next && ++$pages < 1000);
    is_deeply \@rows, lines_of(get(admin => $q)), 'pages of one row: every row, once, in order';
}

# --- plan history through the API -----------------------------------------------

sub plan_ok {
    my ($name, %o) = @_;
    $gw->api_ok(POST => 'plans', { name => $name, cpu => '8', memory => '16Gi',
                                   storage => '100Gi', pods => 50, %o });
}
plan_ok('u69-p1', price_monthly => 2900,
        usage_prices => { cpu_core_hour => 3.5, memory_gib_hour => 0.5,
                          storage_gib_hour => 0.02, load_balancer_hour => 2.5,
                          gpu_hour => 150 });
plan_ok('u69-p2', price_monthly => 5800,
        usage_prices => { cpu_core_hour => 3, memory_gib_hour => 0.4,
                          storage_gib_hour => 0.015, load_balancer_hour => 2,
                          gpu_hour => 120 });
plan_ok('u69-usd', price_monthly => 100, currency => 'USD');

my $p = get(admin => 'plans/u69-p1')->{json};
is_deeply $p->{usage_prices}, { cpu_core_hour => 3.5, memory_gib_hour => 0.5,
                                storage_gib_hour => 0.02, load_balancer_hour => 2.5,
                                gpu_hour => 150 },
    'a plan shows its usage prices';
is_deeply get(admin => 'plans/small')->{json}{usage_prices},
    { cpu_core_hour => 3.2, memory_gib_hour => 0.4, storage_gib_hour => 0.015,
      load_balancer_hour => 2, gpu_hour => 250 },
    'the seeded plans have prices';
my $bad_price = $gw->api(PATCH => 'plans/u69-p1', { usage_prices => { cpu_core_hour => 0.0000001,
                                                                      gpu => 1 } });
is $bad_price->{status}, 422, 'a price with 7 decimals, an unknown price: 422';
is_deeply [sort map { $_->{field} } @{ $bad_price->{json}{error}{details} }],
    ['usage_prices.cpu_core_hour', 'usage_prices.gpu'], '... both named';

sub history {
    my ($tenant) = @_;
    return psql("SELECT coalesce(plan, '-') FROM tenant_plan_history "
                . "WHERE tenant = '$tenant' ORDER BY valid_from");
}
$gw->api_ok(POST => 'tenants', { name => 'u69-hist' });
is history('u69-hist'), 'small', 'a new tenant: its plan is recorded';
$gw->api_ok(PATCH => 'tenants/u69-hist', { plan => 'u69-p1' });
is history('u69-hist'), "small\nu69-p1", 'a plan change through the API is recorded';
$gw->api_ok(PATCH => 'tenants/u69-hist', { labels => { x => 'y' } });
is history('u69-hist'), "small\nu69-p1", 'other changes are not';
$gw->api_ok(DELETE => 'tenants/u69-hist');
is history('u69-hist'), "small\nu69-p1\n-", 'the deletion is recorded';

# --- invoices on fixed history ------------------------------------------------------

$gw->create_tenant('u69-inv');
# on u69-p1 since January 15th, on u69-p2 from February 11th; u69-p2's
# price changes on March 16th (its first prices count from before)
psql(q{DELETE FROM tenant_plan_history WHERE tenant = 'u69-inv';
       INSERT INTO tenant_plan_history (tenant, valid_from, plan) VALUES
           ('u69-inv', '2024-01-15T00:00:00Z', 'u69-p1'),
           ('u69-inv', '2024-02-11T00:00:00Z', 'u69-p2');
       INSERT INTO plan_price_history
       SELECT plan, '2024-03-16T00:00:00Z', currency, 6200, 4, price_memory_gib_hour,
              price_storage_gib_hour, price_load_balancer_hour, price_gpu_hour
       FROM plan_price_history WHERE plan = 'u69-p2';
       INSERT INTO plan_price_history
       SELECT plan, '2024-01-01T00:00:00Z', currency, price_monthly, price_cpu_core_hour,
              price_memory_gib_hour, price_storage_gib_hour, price_load_balancer_hour,
              price_gpu_hour
       FROM plan_price_history WHERE plan = 'u69-p2' AND valid_from > '2025-01-01'});

ok report('s1c', 10, $T0 + 4 * $D, $T0 + 4 * $D + 10 * $H,
          { tenant => 'u69-inv', cpu_request_millicores => 1500,
            memory_request_bytes => 3 * $GiB, load_balancers => 1 }),
    'u69-inv: February 5th, 00:00-10:00';
ok report('s1c', 11, $T0 + 9 * $D + 20 * $H, $T0 + 10 * $D + 6 * $H,
          { tenant => 'u69-inv', cpu_request_millicores => 2000, gpu_requests => 1 }),
    'u69-inv: February 10th 20:00 to 11th 06:00, across the plan change';
ok report('s1c', 12, $T0 + 19 * $D, $T0 + 19 * $D + 1200,
          { tenant => 'u69-inv', cpu_request_millicores => 333,
            storage_request_bytes => 100 * $GiB }),
    'u69-inv: February 20th, 20 minutes';
my $M0 = $T0 + 29 * $D;    # 2024-03-01
ok report('s1c', 13, $M0 + 14 * $D + 22 * $H, $M0 + 15 * $D + 2 * $H,
          { tenant => 'u69-inv', cpu_request_millicores => 1000 }),
    'u69-inv: March 15th 22:00 to 16th 02:00, across the price change';

sub line {
    my ($from, $to, $plan, $resource, $unit, $quantity, $price, $amount) = @_;
    return { from => $from, to => $to, plan => $plan, resource => $resource,
             unit => $unit, quantity => $quantity, unit_price => $price,
             amount => $amount };
}

my $inv = get(owner => 'tenants/u69-inv/invoice?month=2024-02');
is $inv->{status}, 404, 'another tenant\'s invoice: 404';
$inv = get(admin => 'tenants/u69-inv/invoice?month=2024-02');
is $inv->{status}, 200, 'the invoice of February 2024: 200';
my ($f, $c, $e) = ('2024-02-01T00:00:00Z', '2024-02-11T00:00:00Z', '2024-03-01T00:00:00Z');
is_deeply $inv->{json}, {
    tenant => 'u69-inv', month => '2024-02', from => $f, to => $e,
    currency => 'EUR', final => JSON::PP::true,
    lines => [
        # 10 of 29 days: 2900 * 10 / 29
        line($f, $c, 'u69-p1', 'base', 'month', 0.344828, 2900, 1000),
        # 1.5 * 10 h + 2 * 4 h = 23 core-hours * 3.5 = 80.5: half up
        line($f, $c, 'u69-p1', 'cpu', 'core-hour', 23, 3.5, 81),
        line($f, $c, 'u69-p1', 'memory', 'GiB-hour', 30, 0.5, 15),
        line($f, $c, 'u69-p1', 'load_balancers', 'hour', 10, 2.5, 25),
        line($f, $c, 'u69-p1', 'gpus', 'hour', 4, 150, 600),
        # 19 of 29 days: 5800 * 19 / 29
        line($c, $e, 'u69-p2', 'base', 'month', 0.655172, 5800, 3800),
        # 2 * 6 h + 0.333 * 1/3 h = 12.111 core-hours * 3 = 36.333
        line($c, $e, 'u69-p2', 'cpu', 'core-hour', 12.111, 3, 36),
        # 100 GiB * 1/3 h = 33.33.. GiB-hours * 0.015 = exactly 0.5: half up
        line($c, $e, 'u69-p2', 'storage', 'GiB-hour', 33.333333, 0.015, 1),
        line($c, $e, 'u69-p2', 'gpus', 'hour', 6, 120, 720),
    ],
    total => 6278,
}, 'every line and the total, exact, the plan change priced by period';
is_deeply get(ro => 'tenants/u69-a/invoice?month=2024-02')->{json}{currency}, 'EUR',
    'a read-only member reads its tenant\'s invoice';

my ($m1, $m16, $m31) = ('2024-03-01T00:00:00Z', '2024-03-16T00:00:00Z', '2024-04-01T00:00:00Z');
is_deeply get(admin => 'tenants/u69-inv/invoice?month=2024-03')->{json}{lines}, [
    # 15 of 31 days at 5800: 2806.45...
    line($m1, $m16, 'u69-p2', 'base', 'month', 0.483871, 5800, 2806),
    line($m1, $m16, 'u69-p2', 'cpu', 'core-hour', 2, 3, 6),
    # 16 of 31 days at 6200
    line($m16, $m31, 'u69-p2', 'base', 'month', 0.516129, 6200, 3200),
    line($m16, $m31, 'u69-p2', 'cpu', 'core-hour', 2, 4, 8),
], 'March: the price change splits the month';
is get(admin => 'tenants/u69-inv/invoice?month=2024-03')->{json}{total}, 6020,
    '... total 6020';

my $jan = get(admin => 'tenants/u69-inv/invoice?month=2024-01')->{json};
is_deeply [map { "$_->{from} $_->{resource} $_->{amount}" } @{ $jan->{lines} }],
    ['2024-01-15T00:00:00Z base 1590'],
    'January: the base fee from the 15th on (2900 * 17 / 31, rounded)';
is_deeply [@{ get(admin => 'tenants/u69-inv/invoice?month=2023-12')->{json} }{qw(lines total)}],
    [[], 0], 'before the tenant existed: nothing';

$gw->create_tenant('u69-cur');
psql(q{DELETE FROM tenant_plan_history WHERE tenant = 'u69-cur';
       INSERT INTO tenant_plan_history (tenant, valid_from, plan) VALUES
           ('u69-cur', '2024-04-01T00:00:00Z', 'u69-p1'),
           ('u69-cur', '2024-04-15T00:00:00Z', 'u69-usd')});
my $cur = get(admin => 'tenants/u69-cur/invoice?month=2024-04');
is $cur->{status}, 409, 'plans of two currencies in one month: 409';
like $cur->{json}{error}{message}, qr/EUR and USD/, '... naming them';
is get(admin => 'tenants/u69-cur/invoice?month=2024-05')->{json}{currency}, 'USD',
    'the next month: USD';

# --- the gauges' bound -------------------------------------------------------------

$m = metrics();
my ($series) = $m =~ /^kubenova_tenant_usage_series (\d+)$/m;
my ($evicted) = $m =~ /^kubenova_tenant_usage_evictions_total (\d+)$/m;
cmp_ok $series, '<=', $SERIES, "at most $SERIES series so far ($series)";
my @many = map { { tenant => sprintf('u69-m%02d', $_), pods => $_ } } 1 .. 11;
push @many, { tenant => 'u69-m12 "q\\', pods => 12 };
$op->open('s3', hello => { cluster => 'u69-c1' });
ok $op->msg('s3', 'welcome', 10), 'c1 again';
ok report('s3', 20, $T0 + 2 * $D, $T0 + 2 * $D + $H, @many),
    'a report of 12 new tenants';
$m = metrics();
like $m, qr/^kubenova_tenant_usage_series $SERIES$/m, "metrics: still $SERIES series";
like $m, qr/^kubenova_tenant_usage_evictions_total @{[ $evicted + $series + 12 - $SERIES ]}$/m,
    '... the ones updated longest ago made room (counted)';
my @pods = $m =~ /^kubenova_tenant_pods\{/mg;
is scalar @pods, $SERIES, "... $SERIES lines per gauge";
is gauge($m, 'kubenova_tenant_pods', 'u69-m11', 'u69-c1'), 11, '... the newest are there';
is gauge($m, 'kubenova_tenant_pods', 'u69-m04', 'u69-c1'), undef, '... the oldest are not';
is gauge($m, 'kubenova_tenant_pods', 'u69-a', 'u69-c1'), undef, '... nor older tenants';
is gauge($m, 'kubenova_tenant_pods', 'u69-m12 \\"q\\\\', 'u69-c1'), 12,
    '... label values escaped';

is_deeply $gw->log_problems(0), [], 'no alert or emergency in the error log';

done_testing;
