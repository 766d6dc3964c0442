# The tenant-scoped kube proxy end to end: Debian's kubectl 1.20 with a
# proxy kubeconfig (GET /api/v1/tenants/{t}/kubeconfig) against the real
# Manager with two workers, the real Operator and a real control plane
# (t/k8s/control-plane.sh).  Every kubectl run is a new connection, landing
# on either worker; the one without the cluster's stream relays it
# (docs/adr/0005).
#
#   - as owner: get ns (exactly the tenant's, also with --selector and -w);
#     create, apply, get, list, watch, delete configmaps in <t>-apps;
#     auth can-i answers as for the tenant; get pods -A lists the tenant's
#     pods only;
#   - isolation: another tenant's namespace, kube-system, cluster-scoped
#     writes, forged impersonation (--as), relabelling a namespace to
#     another tenant: refused, nothing changed in the cluster;
#   - readonly: reads pass, writes are Forbidden;
#   - a watch goes on while other requests flow on the same stream;
#   - kubectl exec (a connection upgrade) is refused, saying so;
#   - cluster-scoped lists: no StorageClass until an admin names
#     storageclasses in the tenant's cluster_resources (the new tenant spec
#     reaches the cluster), another tenant still none, nodes never;
#   - the Operator gone: a clear 503 at once, no hang.
use strict;
use warnings;

use Test::More;
use File::Temp qw(tempdir);
use JSON::PP ();
use POSIX qw(WNOHANG);
use Time::HiRes qw(time sleep);

use KubeNova::Gateway qw(free_port wait_until kube_proxy_forward);
use KubeNova::K8s;
use KubeNova::Operator;
use KubeNova::Pg qw(require_pg);

require_pg();

my $k8s = KubeNova::K8s->start;
ok $k8s->{kubeconfig} && -x $k8s->{kubectl}, 'a control plane, with kubectl';

my $bin = eval { KubeNova::Operator::build() };
ok $bin, 'the Operator builds' or BAIL_OUT($@);

# kubectl sends its token over TLS only: the proxy's certificate, from a CA
# the proxy kubeconfigs carry
my $dir = tempdir(CLEANUP => 1);
system("openssl req -x509 -newkey rsa:2048 -nodes -days 2 "
       . "-subj /CN=kubenova-manager -addext subjectAltName=IP:127.0.0.1 "
       . "-keyout $dir/proxy.key -out $dir/proxy.crt >/dev/null 2>&1") == 0
    or BAIL_OUT('openssl cannot make a certificate');

my $kp_port = free_port();
my $gw = KubeNova::Gateway->start(heartbeat => '1s', workers => 2,
    master_process => 1, http_config => join "\n",
    "kubenova_kube_proxy_url https://127.0.0.1:$kp_port/k8s;",
    "kubenova_kube_proxy_ca_file $dir/proxy.crt;",
    'log_format kp77 "$remote_addr $pid $status $request_method $uri $server_protocol";',
    'server {',
    "    listen 127.0.0.1:$kp_port ssl http2;",
    "    ssl_certificate $dir/proxy.crt;",
    "    ssl_certificate_key $dir/proxy.key;",
    '    access_log logs/kp77.log kp77;',
    '    location /k8s/ {',
    '        kubenova_kube_proxy;',
    '        send_timeout 1h;',
    '    }',
    kube_proxy_forward(),
    '}');

my $C = 't77-c';
my ($A, $B) = ('t77-a', 't77-b');
my $identity = $gw->create_cluster($C);
$gw->create_tenant($A, $C);
$gw->create_tenant($B, $C);

sub user_token {
    my ($tenant, $user, $role) = @_;
    $gw->api_ok(POST => "tenants/$tenant/users", {name => $user, role => $role});
    return $gw->api_ok(POST => "users/$user/tokens", {name => 'cli'})
        ->{json}{token};
}

my %token = (
    owner  => user_token($A, 't77-owner', 'owner'),
    reader => user_token($A, 't77-reader', 'readonly'),
);

my $op = KubeNova::Operator->start(
    manager_url => 'https://localhost:' . $gw->gw_port,
    cluster => $C, identity => $identity,
    args => ['--heartbeat', '1s', '--reconnect-max', '3s',
             '--kubeconfig', $k8s->operator_kubeconfig]);

for my $t ($A, $B) {
    ok $op->wait_log(qr/credentials: the readonly kubeconfig of tenant "$t" is issued/, 120),
        "tenant $t is in place" or diag $op->log_text;
}

# --- the proxy kubeconfigs ---------------------------------------------------

sub proxy_kubeconfig {
    my ($who, $role, $tenant) = @_;
    $tenant //= $A;
    my $r = KubeNova::Nginx::http_request(
        port => $gw->ngx->port,
        path => "/api/v1/tenants/$tenant/kubeconfig?cluster=$C&role=$role",
        headers => {Authorization => "Bearer $token{$who}"});
    is $r->{status}, 200, "$who gets a $role proxy kubeconfig";
    my $file = "$dir/$who-$role.kubeconfig";
    open my $fh, '>', $file or die $!;
    print $fh $r->{body};
    close $fh;
    return $file;
}

my $kc_owner = proxy_kubeconfig(owner => 'owner');
my $kc_reader = proxy_kubeconfig(reader => 'readonly');

sub kc {
    my ($kc, @args) = @_;
    my $out = $k8s->kubectl_as($kc, '--request-timeout=60s', @args);
    return wantarray ? ($out, $?) : $out;
}

sub names { join ' ', sort grep { length } split /\s+/, $_[0] // '' }

sub admin_names { names(scalar $k8s->kubectl(@_, '-o', 'name')) }

# --- namespaces: the tenant's only -------------------------------------------

my $mine = admin_names('get', 'ns', '-l', "kubenova.io/tenant=$A");
is $mine, "namespace/$A-apps namespace/$A-owner",
    'the tenant has its two namespaces (admin view)';

my ($out, $rc) = kc($kc_owner, 'get', 'ns', '-o', 'name');
is $rc, 0, 'kubectl get ns through the proxy' or diag $out;
is names($out), $mine, '... exactly the tenant\'s namespaces';

is names(scalar kc($kc_owner, 'get', 'ns', '-o', 'name', '--selector',
                   "kubenova.io/tenant=$A")), $mine, '... also with --selector';
($out) = kc($kc_owner, 'get', 'ns', '-o', 'name', '--selector',
            "kubenova.io/tenant=$B");
unlike $out, qr{namespace/}, 'another tenant\'s label selects nothing';

($out, $rc) = kc($kc_owner, 'get', 'ns', "$B-apps");
isnt $rc, 0, 'get of another tenant\'s namespace fails';
like $out, qr/NotFound|not found/, '... NotFound';

# a watch in the background, while other requests flow

sub background {
    my (@cmd) = @_;
    my $file = "$dir/bg." . time . ".$$";
    my $pid = fork // die;
    if ($pid == 0) {
        open STDOUT, '>', $file;
        open STDERR, '>&', \*STDOUT;
        exec @cmd;
        exit 127;
    }
    return ($pid, $file);
}

sub slurp { return "" unless -e $_[0]; local (@ARGV, $/) = @_; <> // "" }

my ($wpid, $wout) = background('timeout', '60', $k8s->{kubectl},
    '--kubeconfig', $kc_owner, 'get', 'ns', '-w', '-o', 'name');
ok wait_until(sub { names(slurp($wout)) eq $mine }, 30),
    'kubectl get ns -w: the tenant\'s namespaces' or diag slurp($wout);

my ($cpid, $cout) = background('timeout', '90', $k8s->{kubectl},
    '--kubeconfig', $kc_owner, 'get', 'cm', '-n', "$A-apps", '-w', '-o', 'name');
sleep 1;

# --- work in <t>-apps ----------------------------------------------------------

($out, $rc) = kc($kc_owner, 'create', 'configmap', 'c1', '-n', "$A-apps",
                 '--from-literal=k=v1');
is $rc, 0, 'create a configmap' or diag $out;

my $yaml = "$dir/c2.yaml";
open my $fh, '>', $yaml or die $!;
print $fh "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c2\n"
        . "  namespace: $A-apps\ndata:\n  big: \"" . ('z' x 200_000) . "\"\n";
close $fh;
($out, $rc) = kc($kc_owner, 'apply', '-f', $yaml);
is $rc, 0, 'apply a 200 KB configmap (a body past the 64 KiB window)'
    or diag $out;
is length(($k8s->kubectl_json('get', 'cm', 'c2', '-n', "$A-apps") // {})
          ->{data}{big} // ''), 200_000, '... all of it in the cluster';

my $got = JSON::PP->new->decode(
    scalar kc($kc_owner, 'get', 'cm', 'c1', '-n', "$A-apps", '-o', 'json'));
is $got->{data}{k}, 'v1', 'get it back';
is names(scalar kc($kc_owner, 'get', 'cm', '-n', "$A-apps", '-o', 'name')),
    names(admin_names('get', 'cm', '-n', "$A-apps")), 'list';

ok wait_until(sub { slurp($cout) =~ m{configmap/c2} }, 30),
    'the watch of configmaps saw what was created meanwhile'
    or diag slurp($cout);
ok !waitpid($cpid, WNOHANG), '... and is still open';
ok !waitpid($wpid, WNOHANG), 'so is the namespace watch';

($out, $rc) = kc($kc_owner, 'delete', 'cm', 'c1', '-n', "$A-apps");
is $rc, 0, 'delete it' or diag $out;
ok wait_until(sub { !$k8s->kubectl_json('get', 'cm', 'c1', '-n', "$A-apps") },
              10), '... gone from the cluster';

kill 'TERM', $cpid, $wpid;
waitpid($_, 0) for $cpid, $wpid;

# --- can-i, as for the tenant ---------------------------------------------

for my $case (['create', 'configmaps', '-n', "$A-apps", 'yes'],
              ['create', 'configmaps', '-n', "$B-apps", 'no'],
              ['get', 'secrets', '-n', 'kube-system', 'no'],
              ['create', 'namespaces', 'no'],
              ['list', 'nodes', 'no'])
{
    my $want = pop @$case;
    ($out) = kc($kc_owner, 'auth', 'can-i', @$case);
    is((split /\n/, $out)[-1], $want, "owner: can-i @$case: $want");
}
($out) = kc($kc_reader, 'auth', 'can-i', 'create', 'configmaps', '-n',
            "$A-apps");
is((split /\n/, $out)[-1], 'no', 'reader: can-i create configmaps: no');

# --- pods of all namespaces: the tenant's ------------------------------------

for my $ns ("$A-apps", "$B-apps") {
    $k8s->apply({apiVersion => 'v1', kind => 'Pod',
                 metadata => {name => 'p', namespace => $ns},
                 spec => {containers => [{name => 'c', image => 'nginx:1.25',
                     resources => {requests => {cpu => '10m', memory => '16Mi'},
                                   limits => {cpu => '10m', memory => '16Mi'}}}]}});
}
ok $k8s->kubectl_json('get', 'pod', 'p', '-n', "$B-apps"),
    'pods in both tenants\' namespaces (admin)';
($out, $rc) = kc($kc_owner, 'get', 'pods', '-A', '-o', 'name');
is $rc, 0, 'get pods -A' or diag $out;
is names($out), 'pod/p', '... one pod';
like scalar(kc($kc_owner, 'get', 'pods', '-A')), qr/^\Q$A\E-apps\s+p\s/m,
    '... the tenant\'s';

($out, $rc) = kc($kc_owner, 'exec', 'p', '-n', "$A-apps", '--', 'true');
isnt $rc, 0, 'kubectl exec fails';
like $out, qr/not supported through the KubeNova kube proxy/,
    '... saying connection upgrades are not supported' or diag $out;

# --- isolation ----------------------------------------------------------------

($out, $rc) = kc($kc_owner, 'get', 'cm', '-n', "$B-apps");
isnt $rc, 0, 'another tenant\'s namespace: refused';
like $out, qr/Forbidden|forbidden|NotFound|not found/, '... Forbidden';

($out, $rc) = kc($kc_owner, 'get', 'pods', '-n', 'kube-system');
isnt $rc, 0, 'kube-system: refused';

($out, $rc) = kc($kc_owner, 'create', 'ns', 't77-evil');
isnt $rc, 0, 'a cluster-scoped write: refused';
($out, $rc) = kc($kc_owner, '--as=system:admin', '--as-group=system:masters',
                 'create', 'ns', 't77-evil');
isnt $rc, 0, 'forged impersonation: refused';
ok !$k8s->kubectl_json('get', 'ns', 't77-evil'), '... no namespace made';

($out, $rc) = kc($kc_owner, 'label', 'ns', "$A-apps", '--overwrite',
                 "kubenova.io/tenant=$B");
isnt $rc, 0, 'relabelling a namespace to another tenant: refused';
is $k8s->kubectl_json('get', 'ns', "$A-apps")->{metadata}{labels}
    {'kubenova.io/tenant'}, $A, '... the label is unchanged';

# --- readonly -----------------------------------------------------------------

($out, $rc) = kc($kc_reader, 'get', 'cm', '-n', "$A-apps", '-o', 'name');
is $rc, 0, 'reader: list' or diag $out;
like $out, qr{configmap/c2}, '... sees the tenant\'s configmaps';
($out, $rc) = kc($kc_reader, 'create', 'configmap', 'r1', '-n', "$A-apps");
isnt $rc, 0, 'reader: create refused';
like $out, qr/[Ff]orbidden/, '... Forbidden';
ok !$k8s->kubectl_json('get', 'cm', 'r1', '-n', "$A-apps"), '... nothing made';

# --- cluster-scoped lists: what the admin lets each tenant see ---------------

$token{b_owner} = user_token($B, 't77-b-owner', 'owner');
my $kc_b = proxy_kubeconfig(b_owner => 'owner', $B);

ok $k8s->apply({ apiVersion => 'storage.k8s.io/v1', kind => 'StorageClass',
                 metadata => { name => 't77-fast' },
                 provisioner => 'kubernetes.io/no-provisioner' }),
    '(a StorageClass made by the cluster admin)';
like admin_names('get', 'storageclasses'), qr{storageclass\S*/t77-fast},
    '... the admin sees it';

for ([owner => $kc_owner], [$B => $kc_b]) {
    ($out, $rc) = kc($_->[1], 'get', 'storageclasses', '-o', 'name');
    is $rc, 0, "$_->[0]: kubectl get storageclasses" or diag $out;
    unlike $out, qr{storageclass}, '... none by default';
}

my $gen = $gw->desired_generation($C, 'Tenant', $A);
my $r = $gw->api(PATCH => "tenants/$A",
                 { cluster_resources => ['storageclasses'] });
is_deeply [$r->{status}, $r->{json}{cluster_resources}], [200, ['storageclasses']],
    "the admin lets $A see storageclasses";
cmp_ok $gw->desired_generation($C, 'Tenant', $A), '>', $gen,
    '... a new generation of its spec';

ok wait_until(sub {
        scalar(kc($kc_owner, 'get', 'storageclasses', '-o', 'name'))
            =~ m{storageclass\S*/t77-fast} }, 90),
    "once the Operator applied it, ${A}'s kubectl get storageclasses lists the cluster's"
    or diag scalar(kc($kc_owner, 'get', 'storageclasses')), $op->log_text;
is names(scalar kc($kc_owner, 'get', 'storageclasses', '-o', 'name')),
    admin_names('get', 'storageclasses'), '... all of them, as the admin sees them';
($out, $rc) = kc($kc_owner, 'get', 'storageclass', 't77-fast', '-o', 'json');
is $rc, 0, '... and gets one' or diag $out;
($out, $rc) = kc($kc_owner, 'delete', 'storageclass', 't77-fast');
isnt $rc, 0, '... but may not delete it';
ok $k8s->kubectl_json('get', 'storageclass', 't77-fast'), '... it is still there';

($out, $rc) = kc($kc_b, 'get', 'storageclasses', '-o', 'name');
is $rc, 0, "$B: kubectl get storageclasses" or diag $out;
unlike $out, qr{storageclass}, '... still none: that was not its setting';

($out, $rc) = kc($kc_owner, 'get', 'nodes', '-o', 'name');
unlike $out, qr{node/}, "$A sees no node (never listable)";

# --- both workers served, the other relaying to the stream's owner -----------

my $owner = $gw->stream_worker($C, 0);
my (@lines, $relayed, $elsewhere);
wait_until(sub {
    @lines = grep { m{/k8s/} } split /\n/,
        slurp($gw->ngx->servroot . '/logs/kp77.log');
    $relayed = grep { /^unix: $owner / } @lines;
    # all but exec, refused by any worker before it looks for the stream
    $elsewhere = grep { /^127\.0\.0\.1 (\d+) (\d+) / && $1 != $owner
                        && $2 != 501 } @lines;
    $relayed == $elsewhere;
}, 10);
is $relayed, $elsewhere,
    "what landed on the other worker ($elsewhere) was relayed to the owner";
diag "kubectl requests: " . scalar(@lines) . ", relayed: $relayed";
ok((grep { m{^127\.0\.0\.1 .* HTTP/2\.0$} } @lines)
   && (grep { m{^unix: .* HTTP/1\.1$} } @lines),
   'kubectl spoke HTTP/2 over TLS; the relay HTTP/1.1');

# --- the Operator gone ------------------------------------------------------

$op->stop;
ok wait_until(sub { !($gw->api(GET => "clusters/$C")->{json} || {})->{connected} },
              30), 'the Operator is gone';
($out, $rc) = kc($kc_owner, 'get', 'ns');
isnt $rc, 0, 'kubectl fails';
like $out, qr/no Operator connected|Operator disconnected/,
    '... saying the cluster has no Operator' or diag $out;

is_deeply $gw->log_problems(0), [], 'no alerts';

done_testing;
