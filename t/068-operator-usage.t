# Usage reporting by the Operator (operator/src/kn_usage.c, kn_spool.c,
# kn_quantity.c) end to end: the real Manager, a real control plane and
# the Operator with a 2 s window, running as its least-privilege
# ServiceAccount (operator/deploy/).
#
#   - operator/test/usage_unit_test.c (quantities, a pod's request, the
#     spool) built plainly and with ASan/UBSan, and run;
#   - a tenant whose namespaces get, from kubectl as admin, a Deployment
#     the quota cannot hold (the ReplicaSet controller records FailedCreate
#     "exceeded quota" Events: their counts arrive, each once, as quota
#     violations), then pods with known requests (an init container, a GPU,
#     a Failed one), claims, a LoadBalancer and a ClusterIP Service, and
#     KubeVela Applications once their CRD exists: the figures stored by
#     the Manager (tenant_usage) are exactly the expected ones, and agree
#     with what the ResourceQuotas count;
#   - the Operator SIGKILLed with reports spooled and unacked (Manager
#     stopped): after both restart, each arrives once, and no window is
#     reported twice;
#   - the Manager down for several windows: every window arrives when it
#     returns, once, contiguous, with contiguous sequences; the Manager's
#     usage API reads the same figures.
use strict;
use warnings;

use File::Temp qw(tempdir);
use JSON::PP;
use Test::More;
use Time::HiRes qw(time sleep);

use KubeNova::Gateway qw(wait_until);
use KubeNova::K8s;
use KubeNova::Operator;
use KubeNova::Pki;
use KubeNova::Pg qw(psql require_pg);

require_pg();

my $repo = do { my $d = __FILE__; $d =~ s{[^/]*$}{}; $d = '.' if $d eq '';
                `cd $d/.. && pwd` };
chomp $repo;
my $tmp = tempdir('kn-068-XXXXXX', TMPDIR => 1, CLEANUP => 1);

my $k8s = KubeNova::K8s->start;
ok $k8s->{kubeconfig} && -x $k8s->{kubectl}, 'a control plane';

# --- the unit checks ------------------------------------------------------

{
    my @pkgs = qw(libcurl jansson yaml-0.1 libprotobuf-c);
    my $cflags = `pkg-config --cflags @pkgs`;
    my $libs = `pkg-config --libs @pkgs`;
    BAIL_OUT("pkg-config @pkgs failed: run scripts/install-deps.sh build")
        if $? != 0;
    chomp($cflags, $libs);

    system('protoc-c', "--proto_path=$repo/proto", "--c_out=$tmp",
           "$repo/proto/kubenova.proto") == 0
        or BAIL_OUT('protoc-c failed');

    my @srcs = ("$repo/operator/test/usage_unit_test.c",
                (map { "$repo/operator/src/kn_$_.c" }
                     qw(usage spool quantity kube kubeconfig loop log)),
                "$repo/ngx_kubenova_yaml.c", "$tmp/kubenova.pb-c.c");

    local $ENV{ASAN_OPTIONS} = 'detect_leaks=1:exitcode=86';
    local $ENV{UBSAN_OPTIONS} = 'print_stacktrace=1:halt_on_error=1';

    for my $v (['plain', ''],
               ['sanitized', '-fsanitize=address,undefined '
                             . '-fno-sanitize-recover=all '
                             . '-fno-omit-frame-pointer'])
    {
        my ($name, $san) = @$v;
        my $bin = "$tmp/usage_unit_test.$name";
        my $log = `gcc -std=gnu11 -Wall -Wextra -Werror -O1 -g $san -I$repo/operator/src -I$tmp -I$repo $cflags -o $bin @srcs $libs 2>&1`;
        ok $? == 0, "usage_unit_test builds ($name)" or diag $log;
        mkdir "$tmp/unit-$name";
        my $out = `$bin $tmp/unit-$name 2>&1`;
        my $rc = $? >> 8;
        my @not = grep { /^not ok/ } split /\n/, $out;
        my ($n) = $out =~ /^1\.\.(\d+)$/m;
        ok $rc == 0 && $n && !@not && $out !~ /runtime error|Sanitizer/,
            "unit checks: quantities, pod requests, times, the spool "
            . "($name, " . ($n // 0) . " checks)" or diag $out;
    }
}

# --- the Manager, a tenant, the Operator ---------------------------------

my $bin = eval { KubeNova::Operator::build() };
ok $bin, 'make -C operator builds kubenova-operator' or BAIL_OUT($@);

# --- bad settings: refused with a clear message ---------------------------

{
    open my $fh, '>', "$tmp/not-a-dir" or die; close $fh;
    # a valid identity of cluster t68-x: the settings checked come after
    my $ca = KubeNova::Pki::make_ca($tmp, 't68-ca');
    my $csr = KubeNova::Pki::key_and_csr($tmp, 't68-x', 'CN=t68-x');
    my @base = ('--manager-url', 'https://127.0.0.1:1', '--cluster', 't68-x',
                '--manager-ca', $ca->{cert},
                KubeNova::Operator::identity_args(
                    { key => $csr->{key},
                      cert => KubeNova::Pki::sign_client($tmp, $ca, $csr, 't68-x') },
                    "$tmp/identity", 1));
    for my $case (
        [['--usage-window', '1500ms'], 2, qr/--usage-window \(1500ms\) must be whole seconds/],
        [['--usage-window', '500ms'], 2, qr/--usage-window: "500ms" is out of range/],
        [['--usage-window', '2d'], 2, qr/--usage-window: "2d" is not a valid duration/],
        [['--usage-spool-max', '0'], 2, qr/--usage-spool-max: "0" is out of range/],
        [['--usage-spool-dir', "$tmp/not-a-dir"], 1,
         qr/usage: cannot open the spool directory "\Q$tmp\E\/not-a-dir": Not a directory/],
        [['--usage-spool-dir', "$tmp/no/such/dir"], 1,
         qr/usage: cannot create the spool directory "\Q$tmp\E\/no\/such\/dir": No such file/])
    {
        my ($args, $code, $re) = @$case;
        my $out = `$bin @base @$args 2>&1`;
        is $? >> 8, $code, "@$args: exit status $code";
        like $out, $re, '... saying why';
    }
}

my $gw = KubeNova::Gateway->start(tls => 1, heartbeat => '1s');

my $C = 't68-c';
my $T = 't68-t';
my ($OWNER, $APPS) = ("$T-owner", "$T-apps");
my $spool = "$tmp/spool";

$gw->api_ok(POST => 'plans', { name => 't68-plan', cpu => '4',
                               memory => '8Gi', storage => '20Gi',
                               pods => 10, load_balancers => 1, gpus => 2,
                               price_monthly => 100 });
my $identity = $gw->create_cluster($C);
$gw->api_ok(POST => 'tenants', { name => $T, plan => 't68-plan',
                                 placement => { clusters => [$C] } });

sub start_operator {
    return KubeNova::Operator->start(
        manager_url => 'https://localhost:' . $gw->gw_port,
        cluster => $C, identity => $identity,
        args => ['--heartbeat', '1s', '--reconnect-min', '100ms',
                 '--reconnect-max', '1s',
                 '--kubeconfig', $k8s->operator_kubeconfig,
                 '--usage-window', '2s', '--usage-spool-dir', $spool]);
}

my @counters = qw(cpu_request_millicores memory_request_bytes
                  storage_request_bytes load_balancers pods namespaces
                  applications gpu_requests quota_violations);

# the tenant's rows, oldest first: [{sequence, window_start, window_end,
# counters...}]
sub rows {
    my ($where) = @_;
    my $out = psql("SELECT r.sequence, extract(epoch FROM r.window_start)::bigint, "
                   . "extract(epoch FROM r.window_end)::bigint, "
                   . join(', ', map { "coalesce(u.$_, -1)" } @counters)
                   . " FROM usage_reports r LEFT JOIN tenant_usage u "
                   . "ON u.cluster = r.cluster AND u.sequence = r.sequence "
                   . "AND u.tenant = '$T' WHERE r.cluster = '$C' "
                   . ($where ? "AND $where " : '')
                   . "ORDER BY r.sequence");
    my @rows;
    for my $line (split /\n/, $out) {
        my @f = split /\|/, $line;
        my %r = (sequence => shift @f, window_start => shift @f,
                 window_end => shift @f);
        @r{@counters} = @f;
        push @rows, \%r;
    }
    return @rows;
}

sub figures { my ($r) = @_; return { map { $_ => $r->{$_} + 0 } @counters } }

sub latest { my @r = rows(); return @r ? $r[-1] : undef }

# the latest report after $seq with these figures, within $timeout s
sub wait_figures {
    my ($want, $timeout) = @_;
    my $got;
    my $ok = wait_until(sub {
        $got = latest();
        $got && $got->{pods} >= 0 && eq_hash(figures($got), $want);
    }, $timeout);
    diag explain { want => $want, got => $got && figures($got) } unless $ok;
    return $ok;
}

my $op = start_operator();

ok wait_until(sub { ($gw->api(GET => "clusters/$C")->{json} || {})->{connected} }, 30),
    'the Operator connects' or diag $op->log_text;
ok $op->wait_log(qr/usage: a report every 2 s/, 5), 'usage: a window of 2 s';
ok $op->wait_log(qr/tenants: applied "$T"/, 30), 'the tenant is applied'
    or diag $op->log_text;

my %zero = map { $_ => 0 } @counters;
ok wait_figures({ %zero, namespaces => 2 }, 20),
    'reports arrive: the tenant, its 2 namespaces, nothing else (no '
    . 'KubeVela: 0 applications)' or diag $op->log_text;

my $r = latest();
is $r->{window_end} - $r->{window_start}, 2, 'a window is 2 s';
is $r->{window_start} % 2, 0, '... aligned to the epoch';

# --- quantities and helpers for kubectl -------------------------------

# a quota's canonical quantity, in milli-units (integers only)
my %mult = ('' => 1000, m => 1, k => 1e6, M => 1e9, G => 1e12, T => 1e15,
            Ki => 1024 * 1000, Mi => 1024**2 * 1000, Gi => 1024**3 * 1000,
            Ti => 1024**4 * 1000);
sub milli {
    my ($q) = @_;
    return 0 unless defined $q;
    $q =~ /^(\d+)(m|k|M|G|T|Ki|Mi|Gi|Ti)?$/ or die "quantity $q";
    return $1 * $mult{$2 // ''};
}

sub container {
    my ($name, $cpu, $mem, %extra) = @_;
    my %res = (cpu => $cpu, memory => $mem, %extra);
    return { name => $name, image => 'busybox',
             resources => { requests => {%res}, limits => {%res} } };
}

sub pod {
    my ($ns, $name, %spec) = @_;
    return { apiVersion => 'v1', kind => 'Pod',
             metadata => { name => $name, namespace => $ns },
             spec => { %spec } };
}

# until the service account admission lets pods in (the default
# ServiceAccount is created by the controller-manager)
sub apply_ok {
    my ($obj, $what) = @_;
    ok wait_until(sub { $k8s->apply($obj) }, 30), $what;
}

sub quota_used {
    my ($key) = @_;
    my $sum = 0;
    for my $ns ($OWNER, $APPS) {
        my $q = $k8s->kubectl_json('get', 'resourcequota', 'kubenova-quota',
                                   '-n', $ns) or return undef;
        $sum += milli($q->{status}{used}{$key});
    }
    return $sum;
}

sub quota_events {
    my $total = 0;
    for my $ns ($OWNER, $APPS) {
        my $e = $k8s->kubectl_json('get', 'events', '-n', $ns,
                                   '--field-selector', 'reason=FailedCreate')
            or return undef;
        $total += ($_->{count} || 1)
            for grep { ($_->{message} // '') =~ /exceeded quota/ }
                @{ $e->{items} };
    }
    return $total;
}

sub violations_reported {
    return psql("SELECT coalesce(sum(quota_violations), 0) FROM tenant_usage "
                . "WHERE cluster = '$C' AND tenant = '$T'");
}

# --- exceeded quota: a Deployment the quota cannot hold -------------------

# 5 replicas of 900m: 4 fit (3600m of 4), the fifth is refused; no quota
# is at its limit meanwhile, so every violation reported is a rejection
my $deploy = {
    apiVersion => 'apps/v1', kind => 'Deployment',
    metadata => { name => 'web', namespace => $APPS },
    spec => { replicas => 5, selector => { matchLabels => { app => 'web' } },
              template => { metadata => { labels => { app => 'web' } },
                            spec => { containers => [
                                container('web', '900m', '100Mi') ] } } } };
ok $k8s->apply($deploy), 'kubectl: a Deployment of 5 pods of 900m';

ok wait_until(sub { (quota_events() // 0) >= 1 }, 60),
    'the ReplicaSet controller records FailedCreate "exceeded quota" Events';
like $k8s->kubectl('get', 'events', '-n', $APPS, '--field-selector',
                   'reason=FailedCreate'), qr/exceeded quota/,
    '... as kubectl shows';

$k8s->kubectl('scale', 'deployment', 'web', '--replicas=4', '-n', $APPS);
ok wait_until(sub {
        my $rs = $k8s->kubectl_json('get', 'rs', '-n', $APPS, '-l', 'app=web');
        my ($x) = @{ $rs ? $rs->{items} : [] };
        $x && $x->{spec}{replicas} == 4 && ($x->{status}{replicas} // 0) == 4
    }, 30), 'scaled to 4: the ReplicaSet holds 4 pods and wants no more';

# equal when the Events and the reports have caught up (a late Event
# counts on both sides); a count taken twice would stay above
ok wait_until(sub {
        my $e = quota_events();
        defined $e && $e >= 1 && violations_reported() == $e
    }, 30), 'the violations reported add up to the rejections the Events '
    . 'count (' . (quota_events() // 'none') . ')'
    or diag 'reported ' . violations_reported();
my $seq = latest()->{sequence};
ok wait_until(sub { latest()->{sequence} >= $seq + 2 }, 20),
    '... two windows later';
is violations_reported(), quota_events(), '... still: none counted twice';

ok wait_figures({ %zero, namespaces => 2, pods => 4,
                  cpu_request_millicores => 3600,
                  memory_request_bytes => 4 * 100 * 1024**2 }, 20),
    'the Deployment\'s 4 pods: 4 x 900m, 4 x 100Mi, no violation now';

# --- known requests ------------------------------------------------------

apply_ok(pod($OWNER, 'p-two', containers => [
             container('a', '250m', '64Mi'), container('b', '0.5', '128M')]),
         'a pod of two containers: 250m + 0.5 cpu, 64Mi + 128M');
apply_ok(pod($OWNER, 'p-init',
             initContainers => [ container('i1', '1', '256Mi'),
                                 container('i2', '300m', '1Gi') ],
             containers => [ container('c1', '200m', '100Mi'),
                             container('c2', '100m', '50Mi') ]),
         'a pod with init containers: 1 and 300m / 256Mi and 1Gi, '
         . 'containers 200m + 100m / 100Mi + 50Mi');
apply_ok(pod($OWNER, 'p-gpu', containers => [
             container('g', '100m', '1e8', 'nvidia.com/gpu' => '1')]),
         'a pod with a GPU: 100m, 1e8 bytes, nvidia.com/gpu 1');
apply_ok(pod($OWNER, 'p-done', containers => [
             container('d', '500m', '32Mi')]), 'a pod that will fail');

# a pod that ran and failed: its status, as a kubelet would write it
my $patch = `curl -sS --cacert $k8s->{ca} --cert $k8s->{admin_cert} --key $k8s->{admin_key} -X PATCH -H 'Content-Type: application/merge-patch+json' -d '{"status":{"phase":"Failed"}}' $k8s->{server}/api/v1/namespaces/$OWNER/pods/p-done/status 2>&1`;
like $patch, qr/"phase":\s*"Failed"/, '... its status says Failed';

for my $pvc ([$OWNER, 'data', '1.5Gi'], [$APPS, 'cache', '500M']) {
    ok $k8s->apply({ apiVersion => 'v1', kind => 'PersistentVolumeClaim',
                     metadata => { name => $pvc->[1], namespace => $pvc->[0] },
                     spec => { accessModes => ['ReadWriteOnce'],
                               resources => { requests =>
                                              { storage => $pvc->[2] } } } }),
        "a claim of $pvc->[2] in $pvc->[0]";
}

for my $svc (['lb', 'LoadBalancer'], ['web', 'ClusterIP']) {
    ok $k8s->apply({ apiVersion => 'v1', kind => 'Service',
                     metadata => { name => $svc->[0], namespace => $OWNER },
                     spec => { type => $svc->[1], selector => { app => 'x' },
                               ports => [{ port => 80 }] } }),
        "a $svc->[1] Service";
}

# KubeVela's Application API, then three of them
ok $k8s->apply({
    apiVersion => 'apiextensions.k8s.io/v1', kind => 'CustomResourceDefinition',
    metadata => { name => 'applications.core.oam.dev' },
    spec => { group => 'core.oam.dev', scope => 'Namespaced',
              names => { plural => 'applications', singular => 'application',
                         kind => 'Application', listKind => 'ApplicationList' },
              versions => [{ name => 'v1beta1', served => JSON::PP::true,
                             storage => JSON::PP::true,
                             schema => { openAPIV3Schema => {
                                 type => 'object',
                                 'x-kubernetes-preserve-unknown-fields'
                                     => JSON::PP::true } } }] } }),
    'the applications.core.oam.dev CRD';
for my $app ([$APPS, 'a1'], [$APPS, 'a2'], [$OWNER, 'a3']) {
    ok wait_until(sub { $k8s->apply({
            apiVersion => 'core.oam.dev/v1beta1', kind => 'Application',
            metadata => { name => $app->[1], namespace => $app->[0] },
            spec => { components => [] } }) }, 30),
        "Application $app->[1] in $app->[0]";
}

my $mem = 4 * 100 * 1024**2                         # the Deployment
        + 64 * 1024**2 + 128_000_000                # p-two
        + 1024**3                                   # p-init: its i2
        + 100_000_000;                              # p-gpu
my %want = (
    pods => 7,                          # 4 + p-two, p-init, p-gpu
    cpu_request_millicores => 3600 + 750 + 1000 + 100,
    memory_request_bytes => $mem,
    storage_request_bytes => 1610612736 + 500_000_000,
    load_balancers => 1,
    namespaces => 2,
    applications => 3,
    gpu_requests => 1,
    quota_violations => 1,              # services.loadbalancers 1 of 1
);
ok wait_figures(\%want, 30),
    'the figures reported are exactly the expected ones: 7 pods (not the '
    . 'Failed one), 5450m, init containers by the max rule, 1.5Gi + 500M '
    . 'of claims, 1 LoadBalancer (at its quota: 1 violation), 3 '
    . 'Applications, 1 GPU' or diag $op->log_text;

my @oracle = ($want{cpu_request_millicores},
              $want{memory_request_bytes} * 1000,
              $want{storage_request_bytes} * 1000, $want{pods} * 1000,
              $want{gpu_requests} * 1000);
my @used;
wait_until(sub {
    @used = map { quota_used($_) // -1 } qw(requests.cpu requests.memory
        requests.storage pods requests.nvidia.com/gpu);
    eq_array(\@used, \@oracle) }, 20);
is_deeply \@used, \@oracle,
    '... and the ResourceQuotas count the same (their controller agrees)';

# --- SIGKILL with reports spooled and unacked -----------------------------

sub spooled {
    opendir my $d, $spool or return ();
    my @s = sort { $a <=> $b } map { /^usage-(\d{20})\.pb$/ ? $1 + 0 : () }
            readdir $d;
    closedir $d;
    return @s;
}

ok wait_until(sub { !spooled() }, 10), 'everything acked: the spool is empty';
my $before = latest()->{sequence};

$gw->ngx->stop;
ok wait_until(sub { spooled() >= 1 }, 15),
    'the Manager stopped: a report waits in the spool';
kill 'KILL', $op->pid;
is $op->wait_exit(10) & 127, 9, 'the Operator is SIGKILLed';
my @killed = spooled();
ok @killed >= 1 && $killed[0] > $before,
    "... with report(s) @killed spooled and unacked";

$gw->ngx->start;
my $op1 = $op;
$op = start_operator();
ok $op->wait_log(qr/usage: spool "\Q$spool\E": \d+ report\(s\) to send, next sequence/, 20),
    'restarted, the Operator finds the spool' or diag $op->log_text;
ok wait_until(sub {
        my $m = psql("SELECT coalesce(max(sequence), 0) FROM usage_reports "
                     . "WHERE cluster = '$C'");
        $m >= $killed[-1] && !grep { $_ <= $killed[-1] } spooled()
    }, 30), '... sends it, the Manager acks it, its file goes'
    or diag $op->log_text;
for my $s (@killed) {
    is psql("SELECT count(*) FROM usage_reports WHERE cluster = '$C' "
            . "AND sequence = $s") . '/'
       . psql("SELECT count(*) FROM tenant_usage WHERE cluster = '$C' "
              . "AND sequence = $s AND tenant = '$T'"), '1/1',
        "report $s arrived once";
}
is psql("SELECT count(*) FROM (SELECT window_start FROM usage_reports "
        . "WHERE cluster = '$C' GROUP BY window_start "
        . "HAVING count(*) > 1) d"), 0,
    'no window was reported twice';
ok wait_figures(\%want, 20), 'the restarted Operator reports the same figures';

# --- the Manager down for several windows --------------------------------

ok wait_until(sub { !spooled() }, 10), 'the spool is empty again';
my $last = latest()->{sequence};
$gw->ngx->stop;
ok wait_until(sub { spooled() >= 3 }, 30),
    'the Manager down: 3 windows wait in the spool' or diag $op->log_text;
my @down = spooled();
$gw->ngx->start;
ok wait_until(sub { !spooled() }, 30),
    'the Manager back: the spool empties' or diag $op->log_text;
ok wait_until(sub { latest()->{sequence} >= $down[-1] + 1 }, 20),
    '... and reports go on';

my @after = rows("r.sequence > $last");
my @seqs = map { $_->{sequence} } @after;
is_deeply \@seqs, [$last + 1 .. $seqs[-1]],
    'sequences are contiguous: ' . join(' ', @seqs);
ok !(grep { $_ < $down[0] || $_ > $down[-1] } @down)
   && (grep { $_ == $down[0] } @seqs) && (grep { $_ == $down[-1] } @seqs),
    "the reports spooled while it was down (@down) all arrived";
my @gaps = grep { $after[$_]{window_start} != $after[$_ - 1]{window_end} }
           1 .. $#after;
is_deeply \@gaps, [], 'every window arrived, none missing, none twice '
    . '(each starts where the one before ends)';
is_deeply [grep { !eq_hash(figures($_), \%want) } @after], [],
    '... each with the same figures';

# the same through the Manager's usage API: one window, as a bucket
my $w = $after[0];
my $iso = sub { my @t = gmtime shift;
                sprintf '%04d-%02d-%02dT%02d:%02d:%02dZ', $t[5] + 1900,
                        $t[4] + 1, @t[3, 2, 1, 0] };
my $u = $gw->api(GET => "tenants/$T/usage?granularity=hour&from="
                 . $iso->($w->{window_start}) . '&to='
                 . $iso->($w->{window_end}));
my @items = @{ ($u->{json} && $u->{json}{items}) || [] };
is_deeply [map { [@$_{qw(tenant pods_max namespaces_max applications_max
                         quota_violations cpu_core_hours gpu_hours)}] }
           @items],
    [[$T, 7, 2, 3, 1, '0.003028', '0.000556']],
    'GET /tenants/{t}/usage over one window: its figures (5450m and 1 GPU '
    . 'for 2 s: 0.003028 core-hours, 0.000556 GPU-hours)'
    or diag explain $u->{json};

is psql("SELECT count(*) - count(DISTINCT sequence) FROM usage_reports "
        . "WHERE cluster = '$C'"), 0, 'no sequence twice';
my ($min, $max, $n) = split /\|/, psql("SELECT min(sequence), max(sequence), "
    . "count(*) FROM usage_reports WHERE cluster = '$C'");
is $max - $min + 1, $n, "sequences $min to $max, without a gap, over the "
    . 'whole run (restart included)';

is $op->stop(10), 0, 'SIGTERM: the Operator exits 0';
is_deeply [$op->sanitizer_reports], [], 'no sanitizer report';
is_deeply [grep { /\[error\]/ } $op1->log_since(0), $op->log_since(0)], [],
    'no [error] in the Operators\' logs';
diag "the Operators' logs:\n" . $op1->log_text . "\n---\n" . $op->log_text
    unless Test::More->builder->is_passing;
$gw->stop;
done_testing;
