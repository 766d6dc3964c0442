# The Operator's least-privilege role (operator/deploy/) on a real control
# plane: "kubectl apply -f operator/deploy/" takes it; the ClusterRole has no
# wildcard and is bound to the Operator's ServiceAccount alone; with that
# ServiceAccount's kubeconfig (a TokenRequest token), kubectl is allowed
# what the Operator does and refused the rest: secrets, cluster-wide RBAC
# but the component bundles' own roles and bindings (by name), RoleBindings
# to roles other than admin and view, impersonation, deleting namespaces.
# That the Operator does its whole job with this role is t/063, t/066 and
# t/075 (the bundles), which run it so.
use strict;
use warnings;

use File::Basename qw(dirname);
use JSON::PP ();
use Test::More;

use KubeNova::K8s;

my $repo = dirname(__FILE__) . '/..';
my $k8s = KubeNova::K8s->start;

my $kc = eval { $k8s->operator_kubeconfig };
ok $kc && -s $kc, 'operator/deploy/ applied; a kubeconfig for its '
    . 'ServiceAccount' or BAIL_OUT($@);
my $out = $k8s->kubectl('apply', '-f', "$repo/operator/deploy/");
ok $? == 0 && $out !~ /\b(created|configured)\b/,
    '... applying it again changes nothing' or diag $out;

my $sa = 'system:serviceaccount:kubenova-system:kubenova-operator';

# -- the objects --------------------------------------------------------------

my $role = $k8s->kubectl_json('get', 'clusterrole', 'kubenova-operator');
ok $role && @{ $role->{rules} }, 'ClusterRole kubenova-operator';
my @wild = grep { $_ eq '*' }
           map { @{ $_->{apiGroups} // [] }, @{ $_->{resources} // [] },
                 @{ $_->{verbs} // [] }, @{ $_->{resourceNames} // [] },
                 @{ $_->{nonResourceURLs} // [] } } @{ $role->{rules} };
is_deeply \@wild, [], '... without a wildcard';
is_deeply [grep { $_->{nonResourceURLs} } @{ $role->{rules} }], [],
    '... nor non-resource URLs';
is_deeply $role->{aggregationRule}, undef, '... nor aggregation';

my %secretish = map { $_ => 1 } qw(secrets clusterroles clusterrolebindings
    roles pods/exec nodes users groups);
is_deeply [grep { $secretish{$_} } map { @{ $_->{resources} } }
           grep { !$_->{resourceNames} } @{ $role->{rules} }], [],
    '... nothing on secrets, roles, cluster-wide bindings, nodes or '
    . 'identities (clusterroles only by name)';

my $crb = $k8s->kubectl_json('get', 'clusterrolebinding', 'kubenova-operator');
is $crb && "$crb->{roleRef}{kind}/$crb->{roleRef}{name}",
    'ClusterRole/kubenova-operator', 'ClusterRoleBinding kubenova-operator';
is_deeply $crb && [map { "$_->{kind}/$_->{namespace}/$_->{name}" }
                   @{ $crb->{subjects} }],
    ['ServiceAccount/kubenova-system/kubenova-operator'],
    '... to the Operator\'s ServiceAccount alone';

# -- what kubectl may do with the Operator's kubeconfig ----------------------

sub can_i {
    my $o = $k8s->kubectl_as($kc, 'auth', 'can-i', @_);
    $o =~ s/^Warning:.*\n//mg;
    chomp $o;
    return $o;
}

for my $yes (['create', 'namespaces'],
             ['patch', 'namespaces'],
             ['patch', 'resourcequotas', '-n', 'any'],
             ['create', 'networkpolicies.networking.k8s.io', '-n', 'any'],
             ['create', 'rolebindings.rbac.authorization.k8s.io', '-n', 'any'],
             ['bind', 'clusterroles.rbac.authorization.k8s.io/admin'],
             ['bind', 'clusterroles.rbac.authorization.k8s.io/view'],
             ['create', 'serviceaccounts/token', '-n', 'any'],
             ['patch', 'deployments.apps', '-n', 'any'],
             ['watch', 'pods', '--all-namespaces'],
             ['list', 'events', '--all-namespaces'],
             ['watch', 'customresourcedefinitions.apiextensions.k8s.io/'
                       . 'tenants.capsule.clastix.io'],
             # the component bundles (operator/bundles/), by name
             ['patch', 'customresourcedefinitions.apiextensions.k8s.io/'
                       . 'tenants.capsule.clastix.io'],
             ['escalate', 'clusterroles.rbac.authorization.k8s.io/capsule-manager'],
             ['bind', 'clusterroles.rbac.authorization.k8s.io/kubevela-vela-core'],
             ['patch', 'clusterrolebindings.rbac.authorization.k8s.io/capsule-proxy'],
             ['delete', 'deployments.apps/capsule-proxy', '-n', 'capsule-system'])
{
    is can_i(@$yes), 'yes', "can-i @$yes: yes";
}

for my $no (['get', 'secrets', '-n', 'kube-system'],
            ['list', 'secrets', '--all-namespaces'],
            ['create', 'clusterrolebindings.rbac.authorization.k8s.io'],
            ['create', 'clusterroles.rbac.authorization.k8s.io'],
            ['escalate', 'clusterroles.rbac.authorization.k8s.io'],
            ['bind', 'clusterroles.rbac.authorization.k8s.io/cluster-admin'],
            ['bind', 'clusterroles.rbac.authorization.k8s.io/edit'],
            ['create', 'roles.rbac.authorization.k8s.io', '-n', 'any'],
            ['impersonate', 'users'],
            ['impersonate', 'serviceaccounts', '-n', 'any'],
            ['delete', 'namespaces'],
            ['update', 'namespaces'],
            ['create', 'pods', '-n', 'any'],
            ['create', 'pods/exec', '-n', 'any'],
            ['delete', 'resourcequotas', '-n', 'any'],
            ['create', 'customresourcedefinitions.apiextensions.k8s.io'],
            ['delete', 'customresourcedefinitions.apiextensions.k8s.io/'
                       . 'tenants.capsule.clastix.io'],
            ['escalate', 'clusterroles.rbac.authorization.k8s.io/admin'],
            ['patch', 'clusterrolebindings.rbac.authorization.k8s.io/'
                      . 'cluster-admin'],
            ['create', 'deployments.apps', '-n', 'any'],
            ['delete', 'deployments.apps', '-n', 'any'],
            ['delete', 'customresourcedefinitions.apiextensions.k8s.io/'
                       . 'applications.core.oam.dev'],
            ['get', 'nodes'],
            ['*', '*'])
{
    is can_i(@$no), 'no', "can-i @$no: no";
}

# Custom resources this cluster does not serve: kubectl's can-i maps names
# through discovery, so ask the apiserver directly (SelfSubjectAccessReview,
# what can-i sends).
sub review {
    my (%attr) = @_;
    my $f = "$k8s->{dir}/ssar.json";
    open my $fh, '>', $f or die "$f: $!";
    print $fh JSON::PP::encode_json({
        apiVersion => 'authorization.k8s.io/v1',
        kind => 'SelfSubjectAccessReview',
        spec => { resourceAttributes => \%attr } });
    close $fh;
    my $o = $k8s->kubectl_as($kc, 'create', '-f', $f, '-o', 'json');
    my $r = eval { JSON::PP::decode_json($o) } or return "error: $o";
    return $r->{status}{allowed} ? 'yes' : 'no';
}

for my $c (['yes', 'delete', 'kubenova.io', 'novatenants'],
           ['yes', 'patch', 'kubenova.io', 'novatenants', 'status'],
           ['yes', 'update', 'kubenova.io', 'novatenants', 'finalizers'],
           ['no', 'update', 'kubenova.io', 'novatenants'],
           ['no', 'delete', 'kubenova.io', 'novatenants', 'status'],
           ['yes', 'create', 'capsule.clastix.io', 'tenants'],
           ['yes', 'patch', 'capsule.clastix.io', 'tenants'],
           ['no', 'delete', 'capsule.clastix.io', 'tenants'],
           ['no', 'create', 'capsule.clastix.io', 'capsuleconfigurations'],
           ['yes', 'create', 'core.oam.dev', 'applications'],
           ['yes', 'patch', 'core.oam.dev', 'applications'],
           ['yes', 'delete', 'core.oam.dev', 'applications'],
           ['no', 'update', 'core.oam.dev', 'applications'],
           ['no', 'patch', 'core.oam.dev', 'applications', 'status'],
           ['no', 'update', 'core.oam.dev', 'applications', 'status'])
{
    my ($want, $verb, $group, $res, $sub) = @$c;
    is review(verb => $verb, group => $group, resource => $res,
              subresource => $sub // ''), $want,
        "may $verb $res" . ($sub ? "/$sub" : '') . ".$group: $want";
}

# -- and the apiserver agrees when it is tried ---------------------------------

$out = $k8s->kubectl_as($kc, 'get', 'secrets', '-n', 'kube-system');
like $out, qr/Forbidden.*\Q$sa\E.*cannot list resource "secrets"/,
    'kubectl get secrets: Forbidden, as the Operator\'s ServiceAccount';
$out = $k8s->kubectl_as($kc, 'create', 'clusterrolebinding', 'kn67-x',
                        '--clusterrole=view', '--serviceaccount=default:x');
like $out, qr/Forbidden|forbidden/, 'kubectl create clusterrolebinding: '
    . 'Forbidden';

$out = $k8s->kubectl_as($kc, 'create', 'namespace', 'kn67');
is $?, 0, 'it creates a namespace' or diag $out;
$out = $k8s->kubectl_as($kc, '-n', 'kn67', 'create', 'rolebinding', 'a',
                        '--clusterrole=admin', '--serviceaccount=kn67:x');
is $?, 0, '... a RoleBinding to admin in it ("bind" is enough)' or diag $out;
$out = $k8s->kubectl_as($kc, '-n', 'kn67', 'create', 'rolebinding', 'e',
                        '--clusterrole=edit', '--serviceaccount=kn67:x');
like $out, qr/attempting to grant RBAC permissions not currently held/,
    '... but not one to edit: RBAC\'s escalation check refuses it';
$out = $k8s->kubectl_as($kc, 'delete', 'namespace', 'kn67');
like $out, qr/Forbidden.*cannot delete resource "namespaces"/,
    '... and it cannot delete the namespace';

done_testing;
