# Cluster configuration, components and health (issue 6).
#
# The Manager half, with grpcio as the Operator: PUT /clusters/{c}/config
# validates (422 naming the field, nothing stored), stores, and sends the
# normalised config as desired state kind ClusterConfig; the ack shows in
# config_sync, a ComponentStatus in GET /clusters/{c}; a cluster silent
# longer than kubenova_cluster_unavailable_after is "unavailable" in the
# API and in /metrics, and connected again when it speaks.
#
# The Operator half, on a real control plane: the bundles of the enabled
# components (operator/bundles/) applied, CRDs first, and their objects
# in the cluster; per-component status in GET; a restarted Operator
# applies nothing again; a disabled component's objects removed, its CRDs
# kept.
use strict;
use warnings;

use Test::More;
use Cwd ();
use File::Basename qw(dirname);
use Time::HiRes qw(time sleep);

use KubeNova::Api qw(json_decode);
use KubeNova::Gateway qw(wait_until json_true json_false);
use KubeNova::K8s;
use KubeNova::Operator;
use KubeNova::Nginx;
use KubeNova::Pg qw(require_pg);

require_pg();

my $Repo = dirname(__FILE__) . '/..';

my $gw = KubeNova::Gateway->start(
    master_process => 1, heartbeat => '1s',
    http_config => 'kubenova_cluster_unavailable_after 3s;',
    config_extra => "location = /metrics { kubenova_metrics; }");

sub cluster { my ($c) = @_; $gw->api(GET => "clusters/$c")->{json} || {} }

sub metrics {
    my $r = KubeNova::Nginx::http_request(port => $gw->ngx->port,
                                          method => 'GET', path => '/metrics');
    return $r->{body} // '';
}

sub metric {
    my ($name, $c) = @_;
    return metrics() =~ /^\Q$name\E\{cluster="\Q$c\E"\} (\S+)$/m ? $1 : undef;
}

# --- the shipped versions: the Manager's list is the Operator's bundles -----

my %bundles;
for my $dir (glob "$Repo/operator/bundles/*/*") {
    next unless -d $dir;
    my ($comp, $ver) = $dir =~ m{([^/]+)/([^/]+)$};
    push @{ $bundles{$comp} }, $ver;
}
my $versions = json_decode(KubeNova::Pg::psql('SELECT api.component_versions()'));
is_deeply { map { $_ => [sort @{ $versions->{$_} }] } keys %$versions },
    { map { $_ => [sort @{ $bundles{$_} }] } keys %bundles },
    'api.component_versions() lists exactly the bundles in operator/bundles/';

# --- config: validation ------------------------------------------------------

my $C = 't75-m';
$gw->create_cluster($C);

my $c = cluster($C);
is $c->{state}, 'pending', 'a new cluster: state pending';
ok !$c->{connected}, '... not connected';
is $c->{config}, undef, '... no config';
is $c->{components}, undef, '... no components';

sub fields {
    my ($r) = @_;
    return [sort map { $_->{field} } @{ $r->{json}{error}{details} || [] }];
}

my $r = $gw->api(PUT => "clusters/$C/config",
                 { components => { capsule => { enabled => json_true },
                                   istio => { enabled => json_true } } });
is $r->{status}, 422, 'an unknown component: 422';
is_deeply fields($r), ['components.istio'], '... naming components.istio';
like $r->{json}{error}{details}[0]{message}, qr/unknown component; known: capsule, capsule-proxy, kubevela/,
    '... and the known ones';

$r = $gw->api(PUT => "clusters/$C/config",
              { components => { capsule => { enabled => json_true, version => '9.9.9' },
                                'capsule-proxy' => { enabled => 'yes' },
                                kubevela => { enabled => json_true, channel => 'x' } },
                defaults => { labels => { 'bad key!' => 'x' }, colour => 'red' } });
is $r->{status}, 422, 'a version not shipped, a bad type, unknown fields: 422';
is_deeply fields($r),
    ['components.capsule.version', 'components.kubevela.channel',
     'components["capsule-proxy"].enabled', 'defaults.colour',
     'defaults.labels["bad key!"]'],
    '... every bad field named';
my ($vmsg) = map { $_->{message} } grep { $_->{field} eq 'components.capsule.version' }
    @{ $r->{json}{error}{details} };
like $vmsg, qr/version 9\.9\.9 is not shipped by the Operator; shipped: \Q@{[ join ', ', @{ $versions->{capsule} } ]}\E/,
    '... the version\'s message lists what is shipped';
is $gw->api(PUT => "clusters/$C/config", '[1]')->{status}, 422, 'not an object: 422';
is $gw->api(PUT => "clusters/t75-none/config", {})->{status}, 404, 'no such cluster: 404';
is cluster($C)->{config}, undef, 'nothing stored';
is $gw->desired_generation($C, 'ClusterConfig', $C), '', '... nothing placed on the cluster';

# --- config: stored, sent, acked -------------------------------------------

my $cfg = { components => { capsule => { enabled => json_true } },
            defaults => { labels => { 'example.com/zone' => 'a' } } };
$r = $gw->api(PUT => "clusters/$C/config", $cfg);
is $r->{status}, 200, 'PUT config: 200';
my $newest = sub { $versions->{$_[0]}[-1] };
is_deeply { map { $_ => $r->{json}{components}{$_} } keys %{ $r->{json}{components} } },
    { capsule => { enabled => json_true, version => $newest->('capsule') },
      'capsule-proxy' => { enabled => json_false, version => $newest->('capsule-proxy') },
      kubevela => { enabled => json_false, version => $newest->('kubevela') } },
    '... normalised: every component, the newest version when none is named';
my $gen = $r->{json}{generation};
ok $gen, "... placed on the cluster at generation $gen";
is $r->{json}{sync}{state}, 'pending', '... pending';
is $gw->api(PUT => "clusters/$C/config", $cfg)->{json}{generation}, $gen,
    'the same config again: the same generation';
my ($audit) = grep { $_->{action} eq 'cluster_config.put' }
    @{ $gw->api(GET => 'audit?limit=500')->{json}{items} || [] };
is $audit && $audit->{resource}, "clusters/$C/config", 'audited as clusters/<c>/config';
is $gw->api(GET => "clusters/$C/config")->{json}{generation}, $gen,
    'GET config: the same';

my $op = $gw->operator;
$op->open('s', hello => { cluster => $C });
ok $op->msg('s', 'welcome', 10), 'an Operator connects';
my $u = $op->msg('s', 'update', 10);
is $u && "$u->{msg}{kind} $u->{msg}{name} $u->{msg}{generation}",
    "ClusterConfig $C $gen", '... and is sent its ClusterConfig';
my $spec = json_decode($u ? $u->{msg}{payload_text} : '{}') || {};
is_deeply $spec->{defaults}, { labels => { 'example.com/zone' => 'a' } },
    '... with the defaults';
is $spec->{components}{capsule}{enabled}, json_true, '... and the components';

$op->send('s', { ack => { kind => 'ClusterConfig', name => $C,
                          generation => $gen, ok => json_true } });
ok wait_until(sub { (cluster($C)->{config_sync}{state} // '') eq 'synced' }, 10),
    'acked: config_sync synced';

$op->send('s', { components => { config_generation => $gen, components => [
    { name => 'capsule', version => $newest->('capsule'), state => 'installed' },
    { name => 'kubevela', version => $newest->('kubevela'), state => 'removed' } ] } });
ok wait_until(sub { cluster($C)->{components} }, 10), 'a ComponentStatus: stored';
$c = cluster($C);
is $c->{components}{config_generation}, $gen, '... for that generation';
is_deeply [map { "$_->{name}=$_->{state}" } @{ $c->{components}{items} }],
    ['capsule=installed', 'kubevela=removed'], '... per component';

$op->send('s', { components => { config_generation => $gen - 1, components => [
    { name => 'capsule', state => 'failed' } ] } });
$op->send('s', { heartbeat => {} });
sleep 0.5;
is cluster($C)->{components}{items}[0]{state}, 'installed',
    'an older generation\'s status does not replace it';

# --- health -----------------------------------------------------------------

$op->heartbeats('s', 0.5);
ok wait_until(sub { cluster($C)->{state} eq 'connected' }, 10),
    'heartbeats: state connected';
ok cluster($C)->{connected}, '... connected true';
ok cluster($C)->{last_heartbeat_at}, '... last_heartbeat_at set';
is metric('kubenova_cluster_connected', $C), 1, '/metrics: kubenova_cluster_connected 1';
is metric('kubenova_cluster_unavailable', $C), 0, '... kubenova_cluster_unavailable 0';
my $hb = metric('kubenova_cluster_last_heartbeat_seconds', $C) // 0;
ok abs($hb - time) < 30, "... kubenova_cluster_last_heartbeat_seconds $hb: recent";

$op->heartbeats('s', 0);
ok wait_until(sub { cluster($C)->{state} eq 'unavailable' }, 20),
    'silent past kubenova_cluster_unavailable_after (3s): unavailable';
$c = cluster($C);
ok !$c->{connected}, '... connected false (the stream is still open)';
is metric('kubenova_cluster_connected', $C), 0, '/metrics: kubenova_cluster_connected 0';
is metric('kubenova_cluster_unavailable', $C), 1, '... kubenova_cluster_unavailable 1';
my ($listed) = grep { $_->{name} eq $C }
    @{ $gw->api(GET => 'clusters')->{json}{items} || [] };
is $listed && $listed->{state}, 'unavailable', '... and in GET /clusters';

$op->heartbeats('s', 0.5);
ok wait_until(sub { cluster($C)->{state} eq 'connected' }, 10),
    'heartbeats again: connected';
is metric('kubenova_cluster_unavailable', $C), 0, '... kubenova_cluster_unavailable 0';

$op->close('s');
ok wait_until(sub { cluster($C)->{state} eq 'disconnected' }, 10),
    'the stream closed: disconnected';
ok wait_until(sub { cluster($C)->{state} eq 'unavailable' }, 20),
    '... and unavailable after the silence';

# --- the known bug: a worker killed with SIGKILL never writes the disconnect -

my $off = $gw->ngx->error_log_offset;
$op->open('k', hello => { cluster => $C });
ok $op->msg('k', 'welcome', 10), 'the Operator connects again';
$op->heartbeats('k', 0.5);
ok wait_until(sub { cluster($C)->{state} eq 'connected' }, 10), '... connected';
my $worker = $gw->stream_worker($C, $off);
ok $worker && kill('KILL', $worker), "SIGKILL to worker $worker, which holds the stream";
ok $op->end('k', 10), '... the stream ends';
ok wait_until(sub { cluster($C)->{state} eq 'unavailable' }, 20),
    'unavailable after the silence';
is KubeNova::Pg::psql("SELECT connected FROM clusters WHERE name = '$C'"), 't',
    '... though nobody recorded the disconnect (connected still set in the table)';
ok !cluster($C)->{connected}, '... connected false in the API';
is metric('kubenova_cluster_connected', $C), 0, '... and in /metrics';

is_deeply $gw->log_problems(0, $worker), [], 'no [alert] or [emerg] in the error log';

# --- the Operator: bundles into a real control plane ------------------------

my $k8s = KubeNova::K8s->start;
ok $k8s->{kubeconfig} && -x $k8s->{kubectl}, 'a control plane, with Debian\'s kubectl';
ok eval { KubeNova::Operator::build() }, 'the Operator builds' or BAIL_OUT($@);

sub kget { $k8s->kubectl_json('get', @_) }

my $O = 't75-o';
my $oidentity = $gw->create_cluster($O);

sub start_operator {
    return KubeNova::Operator->start(
        manager_url => 'https://localhost:' . $gw->gw_port,
        cluster => $O, identity => $oidentity,
        args => ['--heartbeat', '1s', '--reconnect-max', '3s',
                 '--kubeconfig', $k8s->operator_kubeconfig,
                 '--bundles-dir', "$Repo/operator/bundles"]);
}

sub comp_states {
    my $cc = cluster($O)->{components} or return '';
    return join ' ', map { "$_->{name}=$_->{state}" } @{ $cc->{items} };
}

my $op1 = start_operator();
ok $op1->wait_log(qr/components: 3 bundle\(s\) loaded from /, 30),
    'the Operator loads the bundles' or diag $op1->log_text;
ok wait_until(sub { cluster($O)->{connected} }, 60), '... and connects'
    or diag $op1->log_text;

my $put = $gw->api(PUT => "clusters/$O/config", { components => {
    capsule => { enabled => json_true }, kubevela => { enabled => json_true } } });
is $put->{status}, 200, 'PUT config: capsule and kubevela';
my $g1 = $put->{json}{generation};
ok wait_until(sub { (cluster($O)->{config_sync}{state} // '') eq 'synced' }, 120),
    '... synced' or diag $op1->log_text;
ok wait_until(sub { comp_states() eq 'capsule=installed capsule-proxy=removed kubevela=installed' }, 20),
    'components: capsule and kubevela installed, capsule-proxy not ('
    . comp_states() . ')';
is cluster($O)->{components}{config_generation}, $g1, '... for that generation';

for my $crd (qw(tenants.capsule.clastix.io capsuleconfigurations.capsule.clastix.io
                applications.core.oam.dev componentdefinitions.core.oam.dev
                traitdefinitions.core.oam.dev applicationrevisions.core.oam.dev)) {
    my $c = kget('crd', $crd);
    ok $c && kn_established($c), "CRD $crd: Established";
}
ok !kget('crd', 'proxysettings.capsule.clastix.io'), 'no CRD of capsule-proxy';

for my $o (['namespace', 'capsule-system'], ['namespace', 'vela-system'],
           ['serviceaccount', 'capsule', '-n', 'capsule-system'],
           ['clusterrole', 'capsule-manager'], ['clusterrolebinding', 'capsule-manager'],
           ['capsuleconfigurations.capsule.clastix.io', 'default'],
           ['deployment', 'capsule-controller-manager', '-n', 'capsule-system'],
           ['serviceaccount', 'kubevela-vela-core', '-n', 'vela-system'],
           ['clusterrole', 'kubevela-vela-core'], ['clusterrolebinding', 'kubevela-vela-core'],
           ['deployment', 'kubevela-vela-core', '-n', 'vela-system']) {
    my $obj = kget(@$o);
    ok $obj, "@$o exists";
    ok $obj && grep({ $_->{manager} eq 'kubenova-operator' }
                    @{ $obj->{metadata}{managedFields} || [] }),
        '... applied by field manager kubenova-operator';
}
is kget('deployment', 'kubevela-vela-core', '-n', 'vela-system')
       ->{spec}{template}{spec}{containers}[0]{image},
    'oamdev/vela-core:v1.9.11', '... the image of the version';
ok !kget('deployment', 'capsule-proxy', '-n', 'capsule-system'),
    'no capsule-proxy Deployment';
ok !kget('validatingwebhookconfigurations') || !grep({ $_->{metadata}{name} =~ /capsule|vela/ }
        @{ kget('validatingwebhookconfigurations')->{items} || [] }),
    'no webhook of Capsule or KubeVela';

is Cwd::realpath("$Repo/operator/bundles/kubevela/1.9.11/00-crd-applications.yaml"),
   Cwd::realpath("$Repo/operator/deploy/crds/applications.core.oam.dev.yaml"),
    'the bundle\'s Application CRD is operator/deploy/crds\' (one source)';

my $ncc = kget('novaclusterconfigs', $O);
is $ncc && $ncc->{metadata}{annotations}{'kubenova.io/generation'}, "$g1",
    "NovaClusterConfig $O: the generation applied";
is $ncc && $ncc->{spec}{components}{kubevela}{version}, '1.9.11', '... its spec';
is $ncc && join(' ', map { "$_->{name}=$_->{state}" } @{ $ncc->{status}{components} || [] }),
    'capsule=installed capsule-proxy=removed kubevela=installed',
    '... and the components in its status';

# --- restart: nothing again --------------------------------------------------

is $op1->stop(10), 0, 'SIGTERM: the Operator exits 0';
is_deeply [$op1->sanitizer_reports], [], '... no sanitizer report';
ok wait_until(sub { !cluster($O)->{connected} }, 10), '... disconnected';
my $seen = cluster($O)->{components}{reported_at};

my $op2 = start_operator();
ok $op2->wait_log(qr/components: the cluster holds NovaClusterConfig "$O" at generation $g1 already/, 60),
    'restarted, it finds its NovaClusterConfig' or diag $op2->log_text;
like $op2->wait_log(qr/connected to the Manager/, 30) // '',
    qr/0 update\(s\) and 0 deletion\(s\) follow/, '... nothing is sent again';
sleep 1.5;
is_deeply [$op2->grep_log(qr/components: applying/)], [], '... nothing is applied';
ok wait_until(sub { (cluster($O)->{components}{reported_at} // '') ne ($seen // '') }, 10),
    '... and the components are reported on the new stream';
is comp_states(), 'capsule=installed capsule-proxy=removed kubevela=installed',
    '... as they were';

# --- a component disabled ------------------------------------------------------

$put = $gw->api(PUT => "clusters/$O/config", { components => {
    capsule => { enabled => json_true } } });
my $g2 = $put->{json}{generation};
ok $g2 > $g1, "kubevela disabled: generation $g2";
ok wait_until(sub { (cluster($O)->{config_sync}{state} // '') eq 'synced'
                    && cluster($O)->{config_sync}{applied_generation} == $g2 }, 60),
    '... synced' or diag $op2->log_text;
ok wait_until(sub { comp_states() eq 'capsule=installed capsule-proxy=removed kubevela=removed' }, 20),
    '... kubevela removed (' . comp_states() . ')';
ok wait_until(sub { !kget('deployment', 'kubevela-vela-core', '-n', 'vela-system') }, 30),
    '... its Deployment gone';
ok !kget('clusterrole', 'kubevela-vela-core'), '... its ClusterRole';
ok !kget('clusterrolebinding', 'kubevela-vela-core'), '... its ClusterRoleBinding';
ok !kget('serviceaccount', 'kubevela-vela-core', '-n', 'vela-system'), '... its ServiceAccount';
ok kget('crd', 'applications.core.oam.dev'), '... its CRDs kept';
ok kget('namespace', 'vela-system'), '... and its namespace';
ok kget('deployment', 'capsule-controller-manager', '-n', 'capsule-system'),
    'capsule stays';

is $op2->stop(10), 0, 'SIGTERM: exit 0';
is_deeply [$op2->sanitizer_reports], [], 'no sanitizer report';
is_deeply [grep { /\[error\]/ } $op1->log_since(0), $op2->log_since(0)], [],
    'no [error] in the Operator\'s logs';
diag "the Operator's logs:\n" . $op1->log_text . "\n---\n" . $op2->log_text
    unless Test::More->builder->is_passing;

sub kn_established {
    my ($crd) = @_;
    return grep { $_->{type} eq 'Established' && $_->{status} eq 'True' }
        @{ $crd->{status}{conditions} || [] };
}

$gw->stop;
done_testing;
