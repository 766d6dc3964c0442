# The Capsule Tenant (operator/src/kn_capsule.c) end to end: the real
# Manager, a real control plane, the Operator with its least-privilege
# ClusterRole (operator/deploy/), and a minimal Capsule Tenant CRD of our
# own (t/k8s/fixtures/capsule-tenant-crd.yaml; no Capsule controller).
#
#   - without the CRD, a tenant gets its native objects and nothing of
#     Capsule (the native objects in full are t/063);
#   - the CRD installed while the Operator runs: the tenant it holds gets its
#     Capsule Tenant (owners, namespace quota 2, the native quota's limits
#     at Tenant scope, the LimitRange and NetworkPolicy specs, owned by the
#     NovaTenant) and its namespaces join it (label and owner reference);
#   - a tenant created through REST then has its Capsule Tenant when it is
#     synced; a plan change and a suspension reach the Capsule Tenant;
#   - an Operator started with the CRD present restores a Capsule Tenant
#     deleted while it was down;
#   - a tenant's deletion takes its Capsule Tenant along;
#   - the CRD removed: noticed, and a new tenant gets the native objects.
use strict;
use warnings;

use File::Basename qw(dirname);
use Test::More;

use KubeNova::Gateway qw(wait_until json_true);
use KubeNova::K8s;
use KubeNova::Operator;
use KubeNova::Pg qw(require_pg);

require_pg();

my $crd_yaml = dirname(__FILE__) . '/k8s/fixtures/capsule-tenant-crd.yaml';

my $k8s = KubeNova::K8s->start;
my $kc = $k8s->operator_kubeconfig;
ok -s $kc, 'a control plane; the Operator\'s least-privilege kubeconfig';

my $bin = eval { KubeNova::Operator::build() };
ok $bin, 'make -C operator builds kubenova-operator' or BAIL_OUT($@);

my $gw = KubeNova::Gateway->start(tls => 1, heartbeat => '1s');

my $C = 't66-c';
my $identity = $gw->create_cluster($C);

sub sync_state {
    my ($t) = @_;
    my $j = $gw->api(GET => "tenants/$t")->{json};
    my ($s) = grep { $_->{cluster} eq $C } @{ ref $j ? $j->{sync} || [] : [] };
    return $s ? $s->{state} : 'none';
}

sub kget { $k8s->kubectl_json('get', @_) }
sub capsule { kget('tenants.capsule.clastix.io', $_[0]) }

sub start_operator {
    return KubeNova::Operator->start(
        manager_url => 'https://localhost:' . $gw->gw_port,
        cluster => $C, identity => $identity,
        args => ['--heartbeat', '1s', '--reconnect-max', '3s',
                 '--kubeconfig', $kc],
        env => { KN_LOG_LEVEL => 'debug' });
}

# The Capsule Tenant of $t mirrors what the native objects hold.
sub check_capsule_tenant {
    my ($t, $what) = @_;
    my $ct = capsule($t);
    ok $ct, "$what: Capsule Tenant $t exists" or return;
    my $nt = kget('novatenants', $t);
    my ($o) = @{ $ct->{metadata}{ownerReferences} || [] };
    ok $o && $o->{kind} eq 'NovaTenant' && $o->{uid} eq $nt->{metadata}{uid}
        && $o->{controller}, '... owned by the NovaTenant';
    is $ct->{metadata}{labels}{'kubenova.io/tenant'}, $t,
        '... labelled with the tenant';
    is_deeply $ct->{spec}{owners},
        [{ kind => 'ServiceAccount',
           name => "system:serviceaccount:$t-owner:owner",
           clusterRoles => ['admin'] }],
        '... owners: the owner ServiceAccount, bound to admin only';
    is $ct->{spec}{namespaceOptions}{quota}, 2,
        '... namespaceOptions.quota 2';

    my $q = kget('resourcequota', 'kubenova-quota', '-n', "$t-apps");
    is $ct->{spec}{resourceQuotas}{scope}, 'Tenant',
        '... resourceQuotas at Tenant scope';
    is_deeply $ct->{spec}{resourceQuotas}{items}, [{ hard => $q->{spec}{hard} }],
        '... with the native ResourceQuota\'s hard limits';
    my $lr = kget('limitrange', 'kubenova-defaults', '-n', "$t-apps");
    is_deeply $ct->{spec}{limitRanges}{items}, [$lr->{spec}],
        '... limitRanges: the native LimitRange\'s spec';
    my $np = kget('networkpolicy', 'kubenova-default-deny', '-n', "$t-apps");
    is_deeply $ct->{spec}{networkPolicies}{items}, [$np->{spec}],
        '... networkPolicies: the native NetworkPolicy\'s spec';

    for my $ns ("$t-owner", "$t-apps") {
        my $n = kget('namespace', $ns);
        is $n->{metadata}{labels}{'capsule.clastix.io/tenant'}, $t,
            "... namespace $ns: label capsule.clastix.io/tenant";
        my %refs = map { ("$_->{kind}/$_->{uid}" => $_) }
                   @{ $n->{metadata}{ownerReferences} || [] };
        ok $refs{"Tenant/$ct->{metadata}{uid}"}
            && !$refs{"Tenant/$ct->{metadata}{uid}"}{controller},
            '... an owner reference to the Capsule Tenant';
        ok $refs{"NovaTenant/$nt->{metadata}{uid}"}{controller},
            '... the NovaTenant still its controller';
        is $n->{metadata}{labels}{'kubenova.io/tenant'}, $t,
            '... and its own labels kept';
    }
    return $ct;
}

# --- no Capsule ------------------------------------------------------------

$gw->create_tenant('t66-a', $C);
my $op = start_operator();

ok $op->wait_log(qr/capsule: CRD tenants\.capsule\.clastix\.io is not installed/, 30),
    'the Operator finds Capsule not installed' or diag $op->log_text;
ok wait_until(sub { sync_state('t66-a') eq 'synced' }, 60),
    'tenant t66-a is synced' or diag $op->log_text;
ok kget('resourcequota', 'kubenova-quota', '-n', 't66-a-apps')
    && kget('networkpolicy', 'kubenova-default-deny', '-n', 't66-a-owner'),
    '... with its native objects';
ok !exists kget('namespace', 't66-a-apps')->{metadata}{labels}{'capsule.clastix.io/tenant'},
    '... and nothing of Capsule on its namespaces';

# --- Capsule installed while the Operator runs -----------------------------

my $off = $op->log_offset;
my $out = $k8s->kubectl('apply', '-f', $crd_yaml);
is $?, 0, 'the Capsule Tenant CRD installed' or diag $out;
ok $op->wait_log(qr/capsule: CRD tenants\.capsule\.clastix\.io serves v1beta2/, 60, $off),
    'the Operator notices it' or diag $op->log_text;
ok $op->wait_log(qr/capsule: caught up: each of the 1 tenant\(s\)/, 60, $off),
    '... and catches up with the tenant it holds' or diag $op->log_text;
my $cta = check_capsule_tenant('t66-a', 'caught up');
is_deeply $cta && $cta->{spec}{resourceQuotas}{items}[0]{hard}, {
    'requests.cpu' => '1', 'limits.cpu' => '1',
    'requests.memory' => '2Gi', 'limits.memory' => '2Gi',
    'requests.storage' => '10Gi', 'pods' => '20',
    'services.loadbalancers' => '0' }, '... the small plan';

my $ns = kget('namespace', 't66-a-apps');
my ($mf) = grep { $_->{manager} eq 'kubenova-capsule' }
           @{ $ns->{metadata}{managedFields} || [] };
ok $mf && exists $mf->{fieldsV1}{'f:metadata'}{'f:labels'}{'f:capsule.clastix.io/tenant'},
    'the join is field manager kubenova-capsule\'s'
    or diag explain $ns->{metadata}{managedFields};

# --- a tenant created with Capsule present ---------------------------------

$gw->create_tenant('t66-b', $C);
ok wait_until(sub { sync_state('t66-b') eq 'synced' }, 60),
    'tenant t66-b created through REST is synced' or diag $op->log_text;
ok capsule('t66-b'), '... and its Capsule Tenant was there when it was';
check_capsule_tenant('t66-b', 'the reconciler');

sub capsule_hard { my $c = capsule($_[0]); $c ? $c->{spec}{resourceQuotas}{items}[0]{hard} : {} }

$gw->api_ok(PATCH => 'tenants/t66-b', { plan => 'medium' });
ok wait_until(sub { (capsule_hard('t66-b')->{'limits.cpu'} // '') eq '4' }, 30),
    'plan medium: the Capsule Tenant\'s quota follows' or diag $op->log_text;
ok wait_until(sub { sync_state('t66-b') eq 'synced' }, 30), '... synced';
is_deeply capsule_hard('t66-b'),
    kget('resourcequota', 'kubenova-quota', '-n', 't66-b-owner')->{spec}{hard},
    '... the same as the native quota';

$gw->api_ok(PATCH => 'tenants/t66-b', { suspended => json_true });
ok wait_until(sub { (capsule_hard('t66-b')->{pods} // '') eq '0' }, 30),
    'suspended: the Capsule Tenant\'s quota says pods "0" too';

# --- restarted with Capsule present -----------------------------------------

is $op->stop(10), 0, 'SIGTERM: the Operator exits 0';
is_deeply [$op->sanitizer_reports], [], '... no sanitizer report';

$out = $k8s->kubectl('delete', 'tenants.capsule.clastix.io', 't66-a');
is $?, 0, 'Capsule Tenant t66-a deleted while the Operator is down'
    or diag $out;
ok wait_until(sub { !capsule('t66-a') }, 30), '... it is gone';

my $op2 = start_operator();
ok $op2->wait_log(qr/capsule: CRD tenants\.capsule\.clastix\.io serves v1beta2/, 30),
    'started again, the Operator finds Capsule installed' or diag $op2->log_text;
ok $op2->wait_log(qr/capsule: caught up: each of the 2 tenant\(s\)/, 60),
    '... and catches up with both tenants' or diag $op2->log_text;
my $cta2 = check_capsule_tenant('t66-a', 'restored');
isnt $cta2 && $cta2->{metadata}{uid}, $cta->{metadata}{uid},
    '... a new Capsule Tenant';
ok kget('namespace', 't66-a-apps'), '... the namespaces stayed meanwhile';

# --- deletion ---------------------------------------------------------------

my $del = $gw->api(DELETE => 'tenants/t66-b');
ok $del->{status} == 202 || $del->{status} == 204,
    "DELETE tenant t66-b: $del->{status}";
ok wait_until(sub { !kget('namespace', 't66-b-owner')
                    && !kget('namespace', 't66-b-apps') }, 150),
    'its namespaces are gone' or diag $op2->log_text;
ok wait_until(sub { !capsule('t66-b') }, 30),
    '... and so is its Capsule Tenant';
ok wait_until(sub { $gw->api(GET => 'tenants/t66-b')->{status} == 404 }, 30),
    '... and the tenant (tombstone cleared)';

# --- Capsule removed --------------------------------------------------------

$off = $op2->log_offset;
$out = $k8s->kubectl('delete', 'crd', 'tenants.capsule.clastix.io');
is $?, 0, 'the Capsule Tenant CRD removed' or diag $out;
ok $op2->wait_log(qr/capsule: CRD tenants\.capsule\.clastix\.io is gone/, 60, $off),
    'the Operator notices it' or diag $op2->log_text;

$gw->create_tenant('t66-c', $C);
ok wait_until(sub { sync_state('t66-c') eq 'synced' }, 60),
    'tenant t66-c is synced' or diag $op2->log_text;
ok kget('resourcequota', 'kubenova-quota', '-n', 't66-c-apps')
    && kget('limitrange', 'kubenova-defaults', '-n', 't66-c-owner')
    && kget('networkpolicy', 'kubenova-default-deny', '-n', 't66-c-apps')
    && kget('rolebinding', 'kubenova-owner', '-n', 't66-c-apps'),
    '... with its native objects';
ok !exists kget('namespace', 't66-c-owner')->{metadata}{labels}{'capsule.clastix.io/tenant'},
    '... and nothing of Capsule';

is $op2->stop(10), 0, 'SIGTERM: exit 0';
is_deeply [$op2->sanitizer_reports], [], 'no sanitizer report';
is_deeply [grep { /\[error\]/ } $op->log_since(0), $op2->log_since(0)], [],
    'no [error] in the Operator\'s logs';
diag "the Operator's logs:\n" . $op->log_text . "\n---\n" . $op2->log_text
    unless Test::More->builder->is_passing;
$gw->stop;
done_testing;
