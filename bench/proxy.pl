# Run by bench/proxy (under t/harness, for its PostgreSQL and the t/lib
# helpers); prints its figures as diagnostics.  See bench/proxy.
use strict;
use warnings;

use Test::More;
use File::Temp qw(tempdir);
use MIME::Base64 ();

use KubeNova::Gateway qw(free_port wait_until kube_proxy_forward);
use KubeNova::K8s;
use KubeNova::Operator;
use KubeNova::Pg qw(require_pg);

require_pg();

my $secs = $ENV{BENCH_SECONDS} || 10;
my $dir = tempdir(CLEANUP => 1);

my $k8s = KubeNova::K8s->start;
KubeNova::Operator::build();

system("openssl req -x509 -newkey rsa:2048 -nodes -days 2 "
       . "-subj /CN=kubenova-manager -addext subjectAltName=IP:127.0.0.1 "
       . "-keyout $dir/proxy.key -out $dir/proxy.crt >/dev/null 2>&1") == 0
    or BAIL_OUT('openssl cannot make a certificate');

# the Operator-issued kubeconfigs are stored sealed with this key
open my $kf, '>', "$dir/secret.key" or die $!;
print $kf MIME::Base64::encode_base64(join('', map { chr int rand 256 } 1 .. 32), '');
close $kf;

my $kp_port = free_port();
my $workers = $ENV{BENCH_WORKERS} || 2;
my $gw = KubeNova::Gateway->start(heartbeat => '1s', workers => $workers,
    master_process => 1, log_level => 'warn', worker_connections => 1024,
    pool => 16,
    http_config => join "\n",
    "kubenova_kube_proxy_url https://127.0.0.1:$kp_port/k8s;",
    "kubenova_secret_key_file $dir/secret.key;",
    'server {',
    "    listen 127.0.0.1:$kp_port ssl;",
    "    ssl_certificate $dir/proxy.crt;",
    "    ssl_certificate_key $dir/proxy.key;",
    '    access_log off;',
    '    location /k8s/ { kubenova_kube_proxy; }',
    kube_proxy_forward(),
    '}');

my ($C, $T) = ('bench-c', 'bench-t');
my $identity = $gw->create_cluster($C);
$gw->create_tenant($T, $C);
$gw->api_ok(POST => "tenants/$T/users", {name => 'bench-owner', role => 'owner'});
my $token = $gw->api_ok(POST => 'users/bench-owner/tokens', {name => 'cli'})
    ->{json}{token};

my $op = KubeNova::Operator->start(
    manager_url => 'https://localhost:' . $gw->gw_port,
    cluster => $C, identity => $identity,
    args => ['--heartbeat', '1s', '--kubeconfig', $k8s->operator_kubeconfig]);
$op->wait_log(qr/credentials: the owner kubeconfig of tenant "$T" is issued/, 120)
    or BAIL_OUT("the tenant is not in place:\n" . $op->log_text);

# the same identity both ways: the tenant's ServiceAccount token of the
# Operator-issued kubeconfig for direct, the user's token through the proxy
my $kc = wait_until(sub {
    my $r = KubeNova::Nginx::http_request(port => $gw->ngx->port,
        path => "/api/v1/tenants/$T/kubeconfig?cluster=$C&role=owner&via=direct",
        headers => {Authorization => "Bearer $token"});
    $r->{status} == 200 ? $r->{body} : undef;
}, 60) or BAIL_OUT('no Operator-issued kubeconfig');
my ($sa_token) = $kc =~ /^\s*token:\s*"?([^"\s]+)/m;

for my $i (1 .. 20) {
    $k8s->apply({apiVersion => 'v1', kind => 'ConfigMap',
                 metadata => {name => "cm$i", namespace => "$T-apps"},
                 data => {k => 'v' x 200}});
}

my $path = "/api/v1/namespaces/$T-apps/configmaps";
my %url = (direct  => "$k8s->{server}$path",
           manager => "https://127.0.0.1:$kp_port/k8s/clusters/$C$path");
my %auth = (direct => $sa_token, manager => $token);

sub ms {
    my ($v, $unit) = @_;
    return $v / 1000 if $unit eq 'us';
    return $v * 1000 if $unit eq 's';
    return $v;
}

sub wrk {
    my ($how, $conns) = @_;
    my $out = `wrk -t 1 -c $conns -d ${secs}s --latency -H 'Authorization: Bearer $auth{$how}' '$url{$how}' 2>&1`;
    BAIL_OUT("$how: non-2xx answers:\n$out") if $out =~ /Non-2xx/;
    my %r;
    ($r{rps}) = $out =~ /^Requests\/sec:\s+([\d.]+)/m;
    for my $p (50, 99) {
        my ($v, $u) = $out =~ /^\s+$p%\s+([\d.]+)(us|ms|s)\b/m;
        $r{"p$p"} = defined $v ? ms($v, $u) : undef;
    }
    BAIL_OUT("$how: cannot read wrk's output:\n$out") unless $r{rps};
    return \%r;
}

my (%lat, %rps);
for my $how (qw(direct manager)) {
    wrk($how, 4);                                      # warm-up
    $lat{$how} = wrk($how, 1);
    $rps{$how} = wrk($how, 32)->{rps};
}

diag sprintf "kube proxy: GET %s (20 configmaps), %d s per figure, "
             . "%d Manager worker(s), TLS both ways", $path, $secs, $workers;
for my $how (qw(direct manager)) {
    diag sprintf "  %-8s median %7.2f ms   p99 %7.2f ms   %8.0f req/s at 32 "
                 . "clients", $how, $lat{$how}{p50}, $lat{$how}{p99},
                 $rps{$how};
}
diag sprintf "  ratio manager/direct: median %.2fx, p99 %.2fx, "
             . "throughput %.2fx", $lat{manager}{p50} / $lat{direct}{p50},
             $lat{manager}{p99} / $lat{direct}{p99},
             $rps{manager} / $rps{direct};

ok 1, 'measured';
done_testing;
