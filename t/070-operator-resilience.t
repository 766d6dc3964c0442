# The Operator across the failures of its peers, end to end: the real
# Manager (nginx), a real control plane (t/k8s/control-plane.sh) and the
# Operator with its least-privilege kubeconfig.
#
#   * the Manager stopped for a while: the Operator keeps what the cluster
#     holds, retries with growing, jittered delays between --reconnect-min
#     and --reconnect-max, and the changes made meanwhile (through a second
#     Manager on the same database, serving the REST API only) arrive once
#     the Manager is back: a new tenant, a plan change, a deletion;
#   * the Operator restarted (SIGTERM, then SIGKILL): it finds its tenants
#     in the cluster, its hello lists them, the Manager sends nothing and
#     no object of the cluster is written again (resourceVersions);
#   * kube-apiserver restarted: the requests for a tenant created while it
#     is down fail and are tried again, a change of it meanwhile replaces
#     the generation waiting to be tried again, and the tenant is applied
#     completely, as is one created just after.
use strict;
use warnings;

use Test::More;
use File::Temp qw(tempdir);
use IO::Socket::INET;
use POSIX ();
use Time::HiRes qw(time sleep);

use KubeNova::Gateway qw(wait_until);
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
# a second Manager on the same database, REST API only: how changes are
# made while the first one (and its gateway) is down
my $api = KubeNova::Gateway->start(
    api_only => 1, servroot => tempdir('kn-t67-api.XXXXXX', TMPDIR => 1,
                                       CLEANUP => 1));

my $C = 't67-c';
my ($T1, $T2, $T3, $T4, $T5) = map { "t67-t$_" } 1 .. 5;
my ($MIN, $MAX) = (100, 1600);      # --reconnect-min/--reconnect-max, ms
my $identity = $gw->create_cluster($C);
$gw->create_tenant($_, $C) for $T1, $T2;

my @ops;                            # every Operator started, for the end

sub start_operator {
    my (%env) = @_;
    my $op = KubeNova::Operator->start(
        manager_url => 'https://localhost:' . $gw->gw_port,
        cluster => $C, identity => $identity, env => \%env,
        args => ['--heartbeat', '1s', '--reconnect-min', "${MIN}ms",
                 '--reconnect-max', "${MAX}ms",
                 '--kube-qps', '50', '--kube-burst', '100',
                 '--kubeconfig', $k8s->operator_kubeconfig]);
    push @ops, $op;
    return $op;
}

sub kget { $k8s->kubectl_json('get', @_) }

# the tenant's sync state on $C, asked of $m (either Manager)
sub sync_of {
    my ($t, $m) = @_;
    my $j = ($m // $gw)->api(GET => "tenants/$t")->{json};
    my ($s) = grep { $_->{cluster} eq $C }
              @{ ref $j ? $j->{sync} || [] : [] };
    return $s || { state => 'none' };
}

# synced at the generation the Manager wants now
sub synced {
    my ($t) = @_;
    my $s = sync_of($t);
    my $want = $gw->desired_generation($C, 'Tenant', $t);
    return $s->{state} eq 'synced' && $want
        && $s->{generation} == $want && $s->{applied_generation} == $want;
}

my $KINDS = 'resourcequota,limitrange,networkpolicy,serviceaccount,rolebinding';

# "Kind/namespace/name" => resourceVersion of everything the tenant is in
# the cluster (NovaTenant, namespaces, and what they hold)
sub objects_of {
    my ($t) = @_;
    my %rv;
    my $nt = kget('novatenants', $t) or return {};
    $rv{"NovaTenant/$t"} = $nt->{metadata}{resourceVersion};
    for my $ns ("$t-owner", "$t-apps") {
        my $n = kget('namespace', $ns) or next;
        $rv{"Namespace/$ns"} = $n->{metadata}{resourceVersion};
        my $l = kget($KINDS, '-n', $ns, '-l', "kubenova.io/tenant=$t");
        $rv{"$_->{kind}/$ns/$_->{metadata}{name}"}
            = $_->{metadata}{resourceVersion} for @{ $l ? $l->{items} : [] };
    }
    return \%rv;
}

# every object there (7 in each namespace), and the status says the
# generation the Manager wants was applied
sub complete {
    my ($t) = @_;
    return 0 unless keys %{ objects_of($t) } == 17;
    my $nt = kget('novatenants', $t);
    my ($ready) = grep { $_->{type} eq 'Ready' }
                  @{ $nt->{status}{conditions} || [] };
    return $ready && $ready->{status} eq 'True'
        && ($nt->{status}{appliedGeneration} // 0)
           == $gw->desired_generation($C, 'Tenant', $t);
}

# the controllers of kube-controller-manager are done with the tenant's
# objects (quota status, service account token secrets): whatever writes
# them later is the Operator
sub settled {
    my ($t) = @_;
    for my $ns ("$t-owner", "$t-apps") {
        my $q = kget('resourcequota', 'kubenova-quota', '-n', $ns) or return 0;
        return 0 unless $q->{status}{hard}
            && join(',', map { "$_=$q->{spec}{hard}{$_}" }
                         sort keys %{ $q->{spec}{hard} })
               eq join(',', map { "$_=$q->{status}{hard}{$_}" }
                            sort keys %{ $q->{status}{hard} });
        for my $sa (qw(owner readonly)) {
            my $s = kget('serviceaccount', $sa, '-n', $ns) or return 0;
            return 0 unless @{ $s->{secrets} || [] };
        }
    }
    return 1;
}

sub hard {
    my $q = kget('resourcequota', 'kubenova-quota', '-n', $_[0]);
    return $q ? $q->{spec}{hard} : {};
}

my $op = start_operator();
ok $op->wait_log(qr/Kubernetes requests: at most 50 per second, 100 at once/, 10),
    'the Operator limits its Kubernetes requests as told (--kube-qps, '
    . '--kube-burst)';
ok wait_until(sub { synced($T1) && synced($T2) }, 60),
    "tenants $T1 and $T2 are synced" or diag $op->log_text;
ok complete($T1) && complete($T2), '... and in the cluster';

# --- the Manager stopped for a while --------------------------------------

my %before = map { $_ => objects_of($_) } $T1, $T2;
my $off = $op->log_offset;
$gw->stop;
ok $op->wait_log(qr/grpc: the stream to the Manager ended/, 15, $off),
    'the Manager stops: the Operator sees its stream end';

$api->create_tenant($T3, $C);
$api->api_ok(PATCH => "tenants/$T1", { plan => 'medium' });
is $api->api(DELETE => "tenants/$T2")->{status}, 202,
    "meanwhile, through the other Manager: $T3 created, $T1 on plan "
    . "medium, $T2 deleted";
is sync_of($T3, $api)->{state}, 'pending', "... $T3 is pending";

# the delays: "reconnecting in D ms (attempt N, delay drawn from 0 to B ms)"
sub reconnects {
    return map { /reconnecting in (\d+) ms \(attempt (\d+), delay drawn from 0 to (\d+) ms\)/
                     ? { delay => $1, attempt => $2, bound => $3 } : () }
           $op->log_since($off);
}

ok wait_until(sub { my @r = reconnects(); @r >= 8 }, 60),
    'the Operator keeps trying to reconnect' or diag $op->log_text;
my @r = reconnects();
note 'reconnect delays (ms): '
    . join(', ', map { "$_->{delay} of 0..$_->{bound}" } @r);
is_deeply [map { $_->{attempt} } @r], [map { $_ + 1 } 1 .. @r],
    '... attempt after attempt';
ok $r[0]{bound} >= $MIN, "... the first delay bound is --reconnect-min "
    . "or more ($r[0]{bound} ms)";
is_deeply [map { $_->{bound} } @r[1 .. $#r]],
    [map { my $b = $_->{bound} * 2; $b > $MAX ? $MAX : $b } @r[0 .. $#r - 1]],
    '... each bound twice the one before, up to --reconnect-max';
is $r[-1]{bound}, $MAX, "... which it reaches ($MAX ms)";
is_deeply [grep { $_->{delay} > $_->{bound} } @r], [],
    '... every delay within its bound';
ok scalar(grep { $_->{delay} != $r[0]{delay} } @r),
    '... and the delays are not all equal (jitter)';

ok $op->alive, 'the Operator runs on without its Manager';
is_deeply { map { $_ => objects_of($_) } $T1, $T2 }, \%before,
    '... and the cluster keeps what it holds, untouched';
ok !kget('novatenants', $T3), "... $T3 is not there yet";

$off = $op->log_offset;
$gw->ngx->start;
like $op->wait_log(qr/connected to the Manager/, 30, $off) // '',
    qr/2 update\(s\) and 1 deletion\(s\) follow/,
    'the Manager is back: the Operator reconnects; the Welcome announces '
    . '2 updates and 1 deletion' or diag $op->log_text;

ok wait_until(sub { complete($T3) }, 60),
    "$T3, created meanwhile, is in the cluster with every object"
    or diag $op->log_text;
ok wait_until(sub { (hard("$T1-apps")->{'limits.cpu'} // '') eq '4'
                    && (hard("$T1-owner")->{'limits.cpu'} // '') eq '4' }, 30),
    "${T1}'s quota follows its plan change";
ok wait_until(sub { !kget('namespace', "$T2-owner")
                    && !kget('namespace', "$T2-apps") }, 120),
    "${T2}'s namespaces are gone" or diag $op->log_text;
ok !kget('novatenants', $T2), '... and so is its NovaTenant';
ok wait_until(sub { $gw->api(GET => "tenants/$T2")->{status} == 404 }, 30),
    '... and the Manager forgot it (tombstone cleared)';
ok wait_until(sub { synced($T1) && synced($T3) }, 30),
    "$T1 and $T3 are synced at the generations the Manager wants";
ok complete($T1), "$T1 is complete at its new generation";

# --- the Operator restarted ------------------------------------------------

# resync, and nothing done twice: the restarted Operator ($new) hears of no
# update or deletion, applies nothing, and no object changes
sub check_resync {
    my ($how, $new, $rv, $applied) = @_;
    like $new->wait_log(qr/connected to the Manager/, 30) // '',
        qr/ 0 update\(s\) and 0 deletion\(s\) follow/,
        "$how: it reconnects; nothing is to be sent again"
        or diag $new->log_text;
    ok $new->grep_log(qr/tenants: the cluster holds NovaTenant "$T1" at generation \d+ already/)
        && $new->grep_log(qr/tenants: the cluster holds NovaTenant "$T3" at generation \d+ already/),
        '... it found its tenants in the cluster';
    ok $new->grep_log(qr/grpc: hello lists 2 applied object\(s\)/),
        '... and its hello lists them';
    my $off = $new->log_offset;
    ok $new->wait_log(qr/grpc: heartbeat from the Manager/, 10, $off)
        && $new->wait_log(qr/grpc: heartbeat from the Manager/, 10,
                          $new->log_offset),
        '... heartbeats go on';
    is_deeply [$new->grep_log(qr/grpc: (?:update|delete) |tenants: (?:applying|deleting) /)],
        [], '... the Manager sent nothing and the Operator did nothing';
    is_deeply { map { $_ => objects_of($_) } $T1, $T3 }, $rv,
        '... no object was written again (resourceVersions unchanged)';
    is_deeply { map { $_ => sync_of($_)->{applied_generation} } $T1, $T3 },
        $applied, '... and the Manager\'s sync state is the same';
}

ok wait_until(sub { settled($T1) && settled($T3) }, 60),
    'kube-controller-manager is done with the tenants\' objects';
my %rv = map { $_ => objects_of($_) } $T1, $T3;
my %applied = map { $_ => sync_of($_)->{applied_generation} } $T1, $T3;

is $op->stop(10), 0, 'SIGTERM: the Operator exits 0';
$op = start_operator(KN_LOG_LEVEL => 'debug');
check_resync('SIGTERM, then started again', $op, \%rv, \%applied);

ok kill('KILL', $op->pid), 'SIGKILL to the Operator';
ok defined $op->wait_exit(10), '... it is gone';
$op = start_operator(KN_LOG_LEVEL => 'debug');
check_resync('SIGKILL, then started again', $op, \%rv, \%applied);

# --- kube-apiserver restarted -------------------------------------------

sub apiserver_up {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => $k8s->{port}, Timeout => 1);
    close $s if $s;
    return $s ? 1 : 0;
}

$off = $op->log_offset;
my $restart = fork;
die "fork: $!" unless defined $restart;
if ($restart == 0) {
    open STDOUT, '>>', "$k8s->{dir}/restart.log";
    open STDERR, '>&', \*STDOUT;
    exec(KubeNova::K8s::script(), 'restart-apiserver', $k8s->{dir})
        or POSIX::_exit(127);
}

ok wait_until(sub { !apiserver_up() }, 30), 'kube-apiserver is stopped';
$gw->create_tenant($T4, $C);
ok $op->wait_log(qr/tenants: cannot apply "$T4" at generation \d+/, 30, $off),
    "$T4, created meanwhile: the Operator's requests fail"
    or diag $op->log_text;
ok $op->wait_log(qr/tenants: "$T4": trying again in \d+ ms/, 5, $off),
    '... and it tries again later';
my $gen4 = $gw->desired_generation($C, 'Tenant', $T4);
$gw->api_ok(PATCH => "tenants/$T4", { plan => 'medium' });
ok $op->wait_log(qr/tenants: applying "$T4" at generation (?!$gen4\b)\d+/, 30, $off),
    '... changed meanwhile (plan medium): the Operator applies the newer '
    . 'generation' or diag $op->log_text;
# at once: the first thing it does about the tenant once the update came
# (debug log) is that generation, not the older one waiting to be tried
# again, which it drops
my @lines = $op->log_since($off);
my ($u) = grep { $lines[$_] =~ /grpc: update Tenant "$T4" generation (?!$gen4\b)\d+/ }
          0 .. $#lines;
my ($first) = grep { /tenants: .*"$T4"/ } @lines[($u // $#lines) + 1 .. $#lines];
like $first // '', qr/tenants: applying "$T4" at generation (?!$gen4\b)\d+/,
    '... at once, dropping the older one that waited to be tried again';

is waitpid($restart, 0) == $restart && $?, 0,
    'kube-apiserver is started again (t/k8s/control-plane.sh '
    . 'restart-apiserver)' or diag `tail -n 20 $k8s->{dir}/restart.log`;
$gw->create_tenant($T5, $C);

ok wait_until(sub { complete($T4) }, 120),
    "$T4 is applied completely once kube-apiserver is back"
    or diag $op->log_text;
ok wait_until(sub { complete($T5) }, 60),
    "$T5, created just after the restart, too" or diag $op->log_text;
ok wait_until(sub { synced($T4) && synced($T5) }, 30),
    '... and both are synced';
is hard("$T4-apps")->{pods}, '100', "... ${T4}'s quota: the medium plan";
is_deeply [$op->grep_log(qr/tenants: applied "$T4" at generation $gen4\b/)], [],
    "... and its first generation, replaced, was never applied";

# --- the end ---------------------------------------------------------------

is $op->stop(10), 0, 'SIGTERM: exit 0';
is_deeply [map { $_->sanitizer_reports } @ops], [], 'no sanitizer report';
is_deeply [grep { /\[error\]/ } map { $_->log_since(0) } @ops], [],
    'no [error] in the Operator\'s logs';
diag "the Operator's logs:\n"
    . join("\n---\n", map { $_->log_text } @ops)
    unless Test::More->builder->is_passing;
$api->stop;
$gw->stop;
done_testing;
