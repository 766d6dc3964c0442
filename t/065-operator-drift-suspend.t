# Drift correction (operator/src/kn_drift.c) and suspend/resume of a
# tenant's workloads (kn_suspend.c) end to end: the real Manager, a real
# control plane (t/k8s/control-plane.sh) and the Operator with its least-privilege
# kubeconfig; every change a user would make is made with Debian's kubectl.
#
# Drift: the NetworkPolicy deleted, a quota limit raised, a RoleBinding
# deleted, a label removed: each is restored from the last spec applied;
# after a kube-apiserver restart the watches recover and a deletion is
# restored again; and once restored, nothing is applied again (no loop).
# Suspend: Deployments and a StatefulSet scaled to 0 with their counts
# remembered, quota pods "0"; a plan change while suspended keeps the
# counts; a workload scaled up or created while suspended is scaled down;
# resume restores the counts and the quota.
use strict;
use warnings;

use Test::More;
use Time::HiRes qw(time sleep);

use KubeNova::Gateway qw(wait_until json_true json_false);
use KubeNova::K8s;
use KubeNova::Operator;
use KubeNova::Pg qw(require_pg);

require_pg();

my $k8s = KubeNova::K8s->start;
ok $k8s->{kubeconfig} && -x $k8s->{kubectl},
    'a control plane, with Debian\'s kubectl';

my $bin = eval { KubeNova::Operator::build() };
ok $bin, 'make -C operator builds kubenova-operator' or BAIL_OUT($@);

my $gw = KubeNova::Gateway->start(tls => 1, heartbeat => '1s');

my $C = 't65-c';
my $T = 't65-t';
my $APPS = "$T-apps";
my $OWNER = "$T-owner";
my $identity = $gw->create_cluster($C);
$gw->create_tenant($T, $C);

sub sync_of {
    my ($path) = @_;
    my $j = $gw->api(GET => $path)->{json};
    my ($s) = grep { $_->{cluster} eq $C } @{ ref $j ? $j->{sync} || [] : [] };
    return $s || { state => 'none' };
}

sub kget { $k8s->kubectl_json('get', @_) }

sub kubectl_ok {
    my ($what, @args) = @_;
    my $out = $k8s->kubectl(@args);
    ok $? == 0, $what or diag $out;
}

sub hard {
    my $q = kget('resourcequota', 'kubenova-quota', '-n', $_[0]);
    return $q ? $q->{spec}{hard} : {};
}

# name -> resourceVersion of everything labelled with the tenant
sub owned_versions {
    my %rv;
    for my $kind (qw(namespaces resourcequotas limitranges networkpolicies
                     serviceaccounts rolebindings))
    {
        my $l = $k8s->kubectl_json('get', $kind, '-A', '-l',
                                   "kubenova.io/tenant=$T") or return undef;
        $rv{"$kind/" . ($_->{metadata}{namespace} // '') . "/$_->{metadata}{name}"}
            = $_->{metadata}{resourceVersion} for @{ $l->{items} };
    }
    return \%rv;
}

my $op = KubeNova::Operator->start(
    manager_url => 'https://localhost:' . $gw->gw_port,
    cluster => $C, identity => $identity,
    args => ['--heartbeat', '1s', '--reconnect-max', '3s',
             '--kubeconfig', $k8s->operator_kubeconfig]);

ok wait_until(sub { sync_of("tenants/$T")->{state} eq 'synced' }, 60),
    'the tenant is synced' or diag $op->log_text;

for my $r (qw(namespaces resourcequotas limitranges networkpolicies
              serviceaccounts rolebindings deployments statefulsets))
{
    ok $op->wait_log(qr/drift: watching $r\b/, 30),
        "the Operator watches $r" or diag $op->log_text;
}

# Waits until nothing the tenant owns changes and the Operator does no
# tenant work for $quiet seconds (bounded); true when it did.
sub settles {
    my ($quiet, $bound) = @_;
    my $deadline = time + $bound;
    while (time < $deadline) {
        my $off = $op->log_offset;
        my $before = owned_versions();
        sleep $quiet;
        my $after = owned_versions();
        return 1 if $before && $after
            && join(',', map { "$_=$before->{$_}" } sort keys %$before)
               eq join(',', map { "$_=$after->{$_}" } sort keys %$after)
            && !$op->grep_log(qr/tenants: (resyncing|applying) /, $off);
    }
    return 0;
}

ok settles(3, 60), 'the tenant\'s objects settle once applied'
    or diag $op->log_text;

# --- drift -------------------------------------------------------------------

my $np0 = kget('networkpolicy', 'kubenova-default-deny', '-n', $APPS);
my $off = $op->log_offset;
kubectl_ok('kubectl deletes the NetworkPolicy of the apps namespace',
           'delete', 'networkpolicy', 'kubenova-default-deny', '-n', $APPS);
my $np;
ok wait_until(sub {
        $np = kget('networkpolicy', 'kubenova-default-deny', '-n', $APPS);
        $np && $np->{metadata}{uid} ne $np0->{metadata}{uid}
    }, 30), '... it comes back' or diag $op->log_text;
is_deeply $np && $np->{spec}, $np0->{spec}, '... with the same spec';
ok $op->wait_log(qr/drift: NetworkPolicy \Q$APPS\E\/kubenova-default-deny deleted: resyncing tenant "$T"/, 1, $off),
    '... restored by drift correction' or diag $op->log_text;
ok $op->wait_log(qr/tenants: resynced "$T"/, 10, $off), '... a resync';

my $hard0 = hard($OWNER);
is $hard0->{'limits.cpu'}, '1', 'the quota of the owner namespace: limits.cpu 1';
kubectl_ok('kubectl patch raises limits.cpu to 64 and pods to 1000',
           'patch', 'resourcequota', 'kubenova-quota', '-n', $OWNER,
           '--type', 'merge', '-p',
           '{"spec":{"hard":{"limits.cpu":"64","pods":"1000"}}}');
ok wait_until(sub { my $h = hard($OWNER);
                    ($h->{'limits.cpu'} // '') eq '1'
                    && ($h->{pods} // '') eq '20' }, 30),
    '... restored to the plan\'s values' or diag $op->log_text;
is_deeply hard($OWNER), $hard0, '... every limit as before';

my $rb0 = kget('rolebinding', 'kubenova-readonly', '-n', $OWNER);
kubectl_ok('kubectl deletes the RoleBinding kubenova-readonly',
           'delete', 'rolebinding', 'kubenova-readonly', '-n', $OWNER);
my $rb;
ok wait_until(sub {
        $rb = kget('rolebinding', 'kubenova-readonly', '-n', $OWNER);
        $rb && $rb->{metadata}{uid} ne $rb0->{metadata}{uid}
    }, 30), '... it comes back' or diag $op->log_text;
is_deeply $rb && [$rb->{roleRef}, $rb->{subjects}],
    [$rb0->{roleRef}, $rb0->{subjects}], '... the same role and subjects';

kubectl_ok('kubectl removes the tenant label from the LimitRange',
           'label', 'limitrange', 'kubenova-defaults', '-n', $APPS,
           'kubenova.io/tenant-');
ok wait_until(sub {
        my $lr = kget('limitrange', 'kubenova-defaults', '-n', $APPS);
        $lr && ($lr->{metadata}{labels}{'kubenova.io/tenant'} // '') eq $T
    }, 30), '... it is labelled again' or diag $op->log_text;

ok settles(4, 60), 'then all is quiet: nothing changes, no tenant work'
    or diag $op->log_text;
my @resyncs = $op->grep_log(qr/tenants: resyncing "$T"/, $off);
ok @resyncs >= 4 && @resyncs <= 8,
    'four drifts took ' . scalar(@resyncs) . ' resyncs (at most two each)';

# --- a kube-apiserver restart --------------------------------------------------

ok $k8s->restart_apiserver, 'kube-apiserver restarted (its watch cache anew)';
ok wait_until(sub { kget('namespace', $APPS) }, 30), '... and serving';

$np0 = kget('networkpolicy', 'kubenova-default-deny', '-n', $APPS);
$off = $op->log_offset;
kubectl_ok('kubectl deletes the NetworkPolicy again',
           'delete', 'networkpolicy', 'kubenova-default-deny', '-n', $APPS);
ok wait_until(sub {
        $np = kget('networkpolicy', 'kubenova-default-deny', '-n', $APPS);
        $np && $np->{metadata}{uid} ne $np0->{metadata}{uid}
    }, 90), '... it comes back: the watches recovered' or diag $op->log_text;
ok $op->wait_log(qr/drift: NetworkPolicy \Q$APPS\E\/kubenova-default-deny deleted/, 1, $off),
    '... by drift correction';
ok settles(4, 60), '... and all is quiet again' or diag $op->log_text;

# --- suspend and resume --------------------------------------------------------

sub workload {
    my ($kind, $name, $replicas) = @_;
    my %spec = (
        replicas => $replicas,
        selector => { matchLabels => { app => $name } },
        template => {
            metadata => { labels => { app => $name } },
            spec => { containers => [{ name => 'c', image => 'nginx' }] },
        },
    );
    $spec{serviceName} = $name if $kind eq 'StatefulSet';
    return { apiVersion => 'apps/v1', kind => $kind,
             metadata => { name => $name, namespace => $APPS },
             spec => \%spec };
}

my %want = ('deployment/web' => 2, 'deployment/api' => 3,
            'statefulset/db' => 1);
ok $k8s->apply(workload('Deployment', 'web', 2)), 'kubectl: Deployment web, 2 replicas';
ok $k8s->apply(workload('Deployment', 'api', 3)), 'kubectl: Deployment api, 3 replicas';
ok $k8s->apply(workload('StatefulSet', 'db', 1)), 'kubectl: StatefulSet db, 1 replica';

# "replicas/remembered" of a workload
sub scale_of {
    my ($kind, $name) = split m{/}, $_[0], 2;
    my $w = kget($kind, $name, '-n', $APPS);
    return 'none' unless $w;
    return ($w->{spec}{replicas} // 'unset') . '/'
        . ($w->{metadata}{annotations}{'kubenova.io/replicas'} // '-');
}
sub scales { my %s = map { $_ => scale_of($_) } @_; \%s }

$off = $op->log_offset;
$gw->api_ok(PATCH => "tenants/$T", { suspended => json_true });
ok wait_until(sub {
        my $s = scales(keys %want);
        !grep { $s->{$_} ne "0/$want{$_}" } keys %want
    }, 30), 'suspended: every workload at 0 replicas, its count remembered'
    or diag explain scales(keys %want), $op->log_text;
ok wait_until(sub { (hard($APPS)->{pods} // '') eq '0'
                    && (hard($OWNER)->{pods} // '') eq '0' }, 20),
    '... and quota pods "0"';
ok wait_until(sub { sync_of("tenants/$T")->{state} eq 'synced' }, 20),
    '... synced';
ok $op->wait_log(qr/workloads: Deployment \Q$APPS\E\/web scaled to 0/, 1, $off),
    '... the Operator says so';

$gw->api_ok(PATCH => "tenants/$T", { plan => 'medium' });
ok wait_until(sub { (hard($APPS)->{'limits.cpu'} // '') eq '4' }, 20),
    'plan medium while suspended: the quota follows';
is hard($APPS)->{pods}, '0', '... pods still "0"';
ok wait_until(sub { sync_of("tenants/$T")->{state} eq 'synced' }, 20),
    '... synced';
is_deeply scales(keys %want), { map { $_ => "0/$want{$_}" } keys %want },
    '... the remembered counts are kept (suspending again remembers no 0)';

kubectl_ok('kubectl scales web to 5 while suspended',
           'scale', 'deployment', 'web', '--replicas=5', '-n', $APPS);
ok wait_until(sub { scale_of('deployment/web') eq '0/2' }, 30),
    '... scaled down again, the count it had before the suspension kept'
    or diag scale_of('deployment/web'), $op->log_text;

ok $k8s->apply(workload('Deployment', 'late', 4)),
    'kubectl: Deployment late, 4 replicas, created while suspended';
$want{'deployment/late'} = 4;
ok wait_until(sub { scale_of('deployment/late') eq '0/4' }, 30),
    '... scaled to 0 by the drift watch, 4 remembered'
    or diag scale_of('deployment/late'), $op->log_text;

my $odd = workload('Deployment', 'odd', 0);
$odd->{metadata}{annotations} = { 'kubenova.io/replicas' => 'banana' };
ok $k8s->apply($odd), 'kubectl: Deployment odd, 0 replicas, an invalid '
    . 'kubenova.io/replicas annotation';

$off = $op->log_offset;
$gw->api_ok(PATCH => "tenants/$T", { suspended => json_false });
ok wait_until(sub {
        my $s = scales(keys %want);
        !grep { $s->{$_} ne "$want{$_}/-" } keys %want
    }, 30), 'resumed: every workload back at its count, the annotation gone'
    or diag explain scales(keys %want), $op->log_text;
ok wait_until(sub { (hard($APPS)->{pods} // '') eq '100'
                    && (hard($OWNER)->{pods} // '') eq '100' }, 20),
    '... and the quota of the plan again (pods "100")';
ok wait_until(sub { sync_of("tenants/$T")->{state} eq 'synced' }, 20),
    '... synced';
ok $op->wait_log(qr/workloads: StatefulSet \Q$APPS\E\/db restored to 1/, 1, $off),
    '... the Operator says so';
is scale_of('deployment/odd'), '0/-',
    '... the invalid annotation removed, the replicas left as they were';
ok $op->wait_log(qr/\[warn\] workloads: Deployment \Q$APPS\E\/odd: an invalid kubenova\.io\/replicas annotation removed/, 1, $off),
    '... with a warning';

my $w0 = scales(keys %want);
ok settles(4, 60), 'then all is quiet' or diag $op->log_text;
is_deeply scales(keys %want), $w0, '... the workloads left alone';

is $op->stop(10), 0, 'SIGTERM: the Operator exits 0';
is_deeply [$op->sanitizer_reports], [], '... no sanitizer report';
is_deeply [grep { /\[error\]/ } $op->log_since(0)], [],
    'no [error] in the Operator\'s log';
diag "the Operator's log:\n" . $op->log_text
    unless Test::More->builder->is_passing;
$gw->stop;
done_testing;
