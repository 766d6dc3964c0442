# The tenant reconciler (operator/src/kn_tenant.c) end to end: the real
# Manager, a real control plane (t/k8s/control-plane.sh) and the Operator
# with its least-privilege ClusterRole (operator/deploy/).  A tenant created through the REST API becomes
# a NovaTenant, two namespaces, quota, limits, network policy, service
# accounts and role bindings (checked with Debian's kubectl); a plan change
# and a suspension change the quota; a restarted Operator finds its tenant
# in the cluster and is sent nothing again; a deletion removes everything
# and the tombstone clears.
use strict;
use warnings;

use Test::More;
use Time::HiRes qw(time sleep);

use KubeNova::Gateway qw(wait_until json_true);
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

my $C = 't63-c';
my $T = 't63-t';
my $identity = $gw->create_cluster($C);
$gw->create_tenant($T, $C);

sub cluster { $gw->api(GET => "clusters/$C")->{json} || {} }

sub sync_of {
    my ($path) = @_;
    my $j = $gw->api(GET => $path)->{json};
    my ($s) = grep { $_->{cluster} eq $C } @{ ref $j ? $j->{sync} || [] : [] };
    return $s || { state => 'none' };
}

sub kget { $k8s->kubectl_json('get', @_) }

sub start_operator {
    return KubeNova::Operator->start(
        manager_url => 'https://localhost:' . $gw->gw_port,
        cluster => $C, identity => $identity,
        args => ['--heartbeat', '1s', '--reconnect-max', '3s',
                 '--kubeconfig', $k8s->operator_kubeconfig]);
}

my $op = start_operator();

ok $op->wait_log(qr/tenants: CRDs novatenants\.kubenova\.io and novaclusterconfigs\.kubenova\.io applied/, 30),
    'the Operator applies its CRDs' or diag $op->log_text;
for my $crd (qw(novatenants novaclusterconfigs)) {
    my $c = kget('crd', "$crd.kubenova.io");
    is $c && $c->{spec}{scope}, 'Cluster', "CRD $crd.kubenova.io: cluster-scoped";
    my ($v) = @{ $c ? $c->{spec}{versions} : [] };
    ok $v && $v->{name} eq 'v1alpha1' && exists $v->{subresources}{status},
        '... v1alpha1 with a status subresource';
}

ok wait_until(sub { cluster()->{connected} }, 30),
    'the Operator connects' or diag $op->log_text;
ok wait_until(sub { (cluster()->{kubernetes_version} // '') =~ /^v1\./ }, 5),
    'the cluster reports its kubernetes_version: '
    . (cluster()->{kubernetes_version} // 'none');

ok wait_until(sub { sync_of("tenants/$T")->{state} eq 'synced' }, 30),
    'the tenant is synced' or diag $op->log_text;
my $gen = sync_of("tenants/$T")->{generation};

# --- what the cluster holds ------------------------------------------------

my $nt = kget('novatenants', $T);
ok $nt, "NovaTenant $T exists";
is $nt->{metadata}{annotations}{'kubenova.io/generation'}, "$gen",
    '... with the Manager generation in kubenova.io/generation';
is $nt->{spec}{plan}, 'small', '... the spec: plan small';
is $nt->{spec}{quota}{cpu}, '1', '... and its quota';
my ($ready) = grep { $_->{type} eq 'Ready' } @{ $nt->{status}{conditions} || [] };
is $ready && $ready->{status}, 'True', '... status: Ready True';
is $nt->{status}{observedGeneration}, $nt->{metadata}{generation},
    '... and observedGeneration';
my $uid = $nt->{metadata}{uid};

for my $ns ("$T-owner", "$T-apps") {
    my $n = kget('namespace', $ns);
    ok $n, "namespace $ns exists";
    is $n->{metadata}{labels}{'kubenova.io/tenant'}, $T, '... labelled with the tenant';
    is $n->{metadata}{labels}{'kubenova.io/tier'}, 'small', '... and the tier';
    my ($o) = @{ $n->{metadata}{ownerReferences} || [] };
    ok $o && $o->{kind} eq 'NovaTenant' && $o->{uid} eq $uid,
        '... owned by the NovaTenant';

    my $q = kget('resourcequota', 'kubenova-quota', '-n', $ns);
    is_deeply $q && $q->{spec}{hard}, {
        'requests.cpu' => '1', 'limits.cpu' => '1',
        'requests.memory' => '2Gi', 'limits.memory' => '2Gi',
        'requests.storage' => '10Gi', 'pods' => '20',
        'services.loadbalancers' => '0',
    }, "... ResourceQuota kubenova-quota: the small plan";

    my $lr = kget('limitrange', 'kubenova-defaults', '-n', $ns);
    my ($l) = @{ $lr ? $lr->{spec}{limits} : [] };
    is_deeply $l && [$l->{type}, $l->{default}, $l->{defaultRequest}],
        ['Container', { cpu => '500m', memory => '512Mi' },
         { cpu => '100m', memory => '128Mi' }],
        '... LimitRange kubenova-defaults';

    my $np = kget('networkpolicy', 'kubenova-default-deny', '-n', $ns);
    ok $np, '... NetworkPolicy kubenova-default-deny';
    is_deeply $np && $np->{spec}{podSelector}, {}, '... for every pod';
    is_deeply $np && [sort @{ $np->{spec}{policyTypes} }],
        ['Egress', 'Ingress'], '... Ingress and Egress';
    is $np && $np->{spec}{ingress}[0]{from}[0]{namespaceSelector}{matchLabels}{'kubenova.io/tenant'},
        $T, '... ingress from the tenant\'s namespaces';
    is $np && $np->{spec}{egress}[0]{to}[0]{namespaceSelector}{matchLabels}{'kubenova.io/tenant'},
        $T, '... egress to them';
    is_deeply $np && [sort map { "$_->{protocol}/$_->{port}" }
                      @{ $np->{spec}{egress}[1]{ports} }],
        ['TCP/53', 'UDP/53'], '... and DNS egress';
    is $np && $np->{spec}{egress}[1]{to}[0]{namespaceSelector}{matchLabels}{'kubernetes.io/metadata.name'},
        'kube-system', '... to kube-system';

    ok kget('serviceaccount', $_, '-n', $ns), "... ServiceAccount $_"
        for qw(owner readonly);

    for my $rb (['kubenova-owner', 'admin', 'owner'],
                ['kubenova-readonly', 'view', 'readonly'])
    {
        my $b = kget('rolebinding', $rb->[0], '-n', $ns);
        is $b && "$b->{roleRef}{kind}/$b->{roleRef}{name}",
            "ClusterRole/$rb->[1]", "... RoleBinding $rb->[0]: $rb->[1]";
        is_deeply $b && [sort map { "$_->{namespace}/$_->{name}" }
                         @{ $b->{subjects} }],
            ["$T-apps/$rb->[2]", "$T-owner/$rb->[2]"],
            "... to the $rb->[2] service accounts of both namespaces";
    }
}

# --- a plan change, a suspension -------------------------------------------

sub hard { my $q = kget('resourcequota', 'kubenova-quota', '-n', $_[0]);
           $q ? $q->{spec}{hard} : {} }

$gw->api_ok(PATCH => "tenants/$T", { plan => 'medium' });
ok wait_until(sub { (hard("$T-apps")->{'limits.cpu'} // '') eq '4' }, 20),
    'plan medium: the quota follows' or diag $op->log_text;
my $h = hard("$T-owner");
is_deeply [@$h{qw(requests.cpu requests.memory requests.storage pods services.loadbalancers)}],
    ['4', '8Gi', '50Gi', '100', '2'], '... in both namespaces';
is kget('namespace', "$T-apps")->{metadata}{labels}{'kubenova.io/tier'},
    'medium', '... and the tier label';
ok wait_until(sub { sync_of("tenants/$T")->{state} eq 'synced' }, 10),
    '... synced';

$gw->api_ok(PATCH => "tenants/$T", { suspended => json_true });
ok wait_until(sub { (hard("$T-apps")->{pods} // '') eq '0'
                    && (hard("$T-owner")->{pods} // '') eq '0' }, 20),
    'suspended: quota pods "0"';
ok wait_until(sub { sync_of("tenants/$T")->{state} eq 'synced' }, 10),
    '... synced';
$gen = sync_of("tenants/$T")->{generation};
ok wait_until(sub {
        my $n = kget('novatenants', $T);
        $n && ($n->{status}{appliedGeneration} // 0) == $gen
    }, 10), '... and the NovaTenant status says that generation is applied';

# --- a restarted Operator ----------------------------------------------------

is $op->stop(10), 0, 'SIGTERM: the Operator exits 0';
is_deeply [$op->sanitizer_reports], [], '... no sanitizer report';
ok wait_until(sub { !cluster()->{connected} }, 10), '... disconnected';

my $op2 = start_operator();
ok $op2->wait_log(qr/tenants: the cluster holds NovaTenant "$T" at generation $gen already/, 30),
    'restarted, it finds the tenant in the cluster' or diag $op2->log_text;
like $op2->wait_log(qr/connected to the Manager/, 30) // '',
    qr/0 update\(s\) and 0 deletion\(s\) follow/,
    '... its hello lists it: nothing is sent again';
sleep 1;
is_deeply [$op2->grep_log(qr/tenants: (applying|deleting) /)], [],
    '... and it does no tenant work';
is sync_of("tenants/$T")->{state}, 'synced', '... still synced';

# --- deletion --------------------------------------------------------------

my $del = $gw->api(DELETE => "tenants/$T");
ok $del->{status} == 202 || $del->{status} == 204,
    "DELETE the tenant: $del->{status}";
ok wait_until(sub {
        !kget('namespace', "$T-owner") && !kget('namespace', "$T-apps")
    }, 120), 'its namespaces are gone' or diag $op2->log_text;
ok !kget('novatenants', $T), '... and so is the NovaTenant';
ok wait_until(sub { $gw->api(GET => "tenants/$T")->{status} == 404 }, 30),
    '... and the tenant is gone from the Manager (tombstone cleared)';
ok $op2->wait_log(qr/tenants: deleted "$T"/, 1), '... deleted by the reconciler';

is $op2->stop(10), 0, 'SIGTERM: exit 0';
is_deeply [$op2->sanitizer_reports], [], 'no sanitizer report';
is_deeply [grep { /\[error\]/ } $op->log_since(0), $op2->log_since(0)], [],
    'no [error] in the Operator\'s logs';
diag "the Operator's logs:\n" . $op->log_text . "\n---\n" . $op2->log_text
    unless Test::More->builder->is_passing;
$gw->stop;
done_testing;
