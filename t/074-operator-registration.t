# Cluster registration end to end (issue 6): the real Manager with its
# gateway over TLS (kubenova_ca), a real control plane, Debian's kubectl
# and the Operator binary.  A cluster created through the API; its join
# command (kubectl apply -f <install_url>) run as the cluster admin; the
# kubenova-join Secret read back with kubectl and written to a directory;
# the Operator run out of cluster with that directory, keeping its
# identity in the Secret install.yaml lets it write (--identity-secret,
# with its ServiceAccount's token only): it registers, connects over
# mTLS, the cluster is connected and a tenant reaches it.  A restart reuses
# the identity (the token is spent); a short validity is renewed over the
# stream, stored, and used after the first certificate expired.
use strict;
use warnings;

use Test::More;
use MIME::Base64 qw(decode_base64);
use Time::HiRes qw(time sleep);

use KubeNova::Gateway qw(wait_until);
use KubeNova::K8s;
use KubeNova::Nginx;
use KubeNova::Operator;
use KubeNova::Pki;
use KubeNova::Pg qw(require_pg);

require_pg();

my $k8s = KubeNova::K8s->start;
ok $k8s->{kubeconfig} && -x $k8s->{kubectl},
    'a control plane, with Debian\'s kubectl';

my $bin = eval { KubeNova::Operator::build() };
ok $bin, 'make -C operator builds kubenova-operator' or BAIL_OUT($@);

# certificates valid 60 s (the least kubenova_ca takes): renewed at 40 s
my $VALID = 60;
my $gw = KubeNova::Gateway->start(tls => 1, heartbeat => '1s',
                                  cert_validity => "${VALID}s");

my $C = 't74-c';
my $T = 't74-t';
my $ID = 'kubenova-operator-identity';

sub cluster { $gw->api(GET => "clusters/$C")->{json} || {} }

# --- the cluster, its join command ---------------------------------------

my $r = $gw->api_ok(POST => 'clusters', { name => $C });
my $token = $r->{json}{join_token} // '';
like $token, qr/^knjt_/, 'POST /clusters: a join token';
like $r->{json}{join_command} // '',
    qr{^kubectl apply -f '(http://127\.0\.0\.1:\d+/api/v1/clusters/$C/install\.yaml\?token=\Q$token\E)'$},
    '... and the join command';
my ($url) = ($r->{json}{join_command} // '') =~ /'([^']+)'/;

my $out = $k8s->kubectl('apply', '-f', $url // 'none');
is $?, 0, 'the join command, kubectl apply -f <install_url>, as the '
    . 'cluster admin' or diag $out;
like $out, qr{secret/kubenova-join created}, '... creates the join Secret';
like $out, qr{deployment\.apps/kubenova-operator created},
    '... and the Operator Deployment';

my $join = $k8s->kubectl_json('get', 'secret', 'kubenova-join',
                              '-n', 'kubenova-system');
is_deeply [sort keys %{ $join ? $join->{data} : {} }],
    [qw(ca.crt cluster gateway-url join-token register-url)],
    'kubenova-join holds cluster, join-token, register-url, gateway-url, '
    . 'ca.crt';

# the Secret's data as a volume would show it
my $jdir = "$k8s->{dir}/join";
mkdir $jdir;
for my $k (keys %{ $join ? $join->{data} : {} }) {
    open my $fh, '>', "$jdir/$k" or die "$jdir/$k: $!";
    print {$fh} decode_base64($join->{data}{$k});
    close $fh;
}

# the Operator's ServiceAccount: ClusterRole from operator/deploy, and the
# identity Role that install.yaml added
my $kc = $k8s->operator_kubeconfig;
like $k8s->kubectl_as($kc, 'auth', 'can-i', 'get', "secret/$ID",
                      '-n', 'kubenova-system'), qr/^yes/,
    'the Operator may read its identity Secret';
like $k8s->kubectl_as($kc, 'auth', 'can-i', 'get', 'secret/kubenova-join',
                      '-n', 'kubenova-system'), qr/^no/,
    '... and no other Secret';

my @ops;

sub start_operator {
    push @ops, KubeNova::Operator->start(
        args => ['--join-dir', $jdir,
                 '--identity-secret', "kubenova-system/$ID",
                 '--kubeconfig', $kc,
                 '--heartbeat', '1s', '--reconnect-min', '200ms',
                 '--reconnect-max', '2s']);
    return $ops[-1];
}

# --- registration ----------------------------------------------------------

my $t0 = time;
my $op = start_operator();

ok $op->wait_log(qr/identity: registered: certificate serial/, 30),
    'the Operator registers with the join token' or diag $op->log_text;
ok $op->wait_log(qr{identity: stored in Secret kubenova-system/$ID}, 15),
    '... and stores its identity in the Secret';
ok wait_until(sub { cluster()->{connected} }, 30),
    'it connects over mTLS: the cluster is connected'
    or diag $op->log_text;

my $sec = $k8s->kubectl_json('get', 'secret', $ID, '-n', 'kubenova-system');
is $sec && $sec->{type}, 'kubernetes.io/tls',
    "Secret $ID: type kubernetes.io/tls";
is_deeply [sort keys %{ $sec ? $sec->{data} : {} }],
    [qw(ca.crt tls.crt tls.key)], '... with tls.key, tls.crt, ca.crt';

sub secret_cert_field {
    my ($what) = @_;
    my $s = $k8s->kubectl_json('get', 'secret', $ID, '-n', 'kubenova-system');
    my $f = "$k8s->{dir}/id.crt";
    open my $fh, '>', $f or die $!;
    print {$fh} decode_base64($s ? $s->{data}{'tls.crt'} : '');
    close $fh;
    my $v = `openssl x509 -in $f -noout -$what 2>&1`;
    chomp $v;
    return $v;
}

like secret_cert_field('subject'), qr/CN\s*=\s*$C\b/,
    '... the certificate names the cluster';
like secret_cert_field('issuer'), qr/kubenova-ca/, '... signed by kubenova_ca';
my $serial = secret_cert_field('serial');

my $csr = KubeNova::Pki::key_and_csr($k8s->{dir}, 'again', "CN=$C");
my $reg = $gw->register($C, { join_token => $token, csr => $csr->{pem} });
is $reg->{status}, 401, 'the join token is spent (single use): a second '
    . 'registration is refused';

# --- a tenant reaches the cluster -------------------------------------------

$gw->create_tenant($T, $C);
ok wait_until(sub { $k8s->kubectl_json('get', 'novatenants', $T) }, 30),
    "tenant $T placed on $C becomes a NovaTenant in the cluster"
    or diag $op->log_text;
ok wait_until(sub { $k8s->kubectl_json('get', 'namespace', "$T-owner") }, 30),
    '... with its namespaces';

# --- a restart reuses the identity ------------------------------------------

is $op->stop, 0, 'SIGTERM: the Operator exits 0';
ok wait_until(sub { !cluster()->{connected} }, 15), 'the cluster disconnects';

$op = start_operator();
ok $op->wait_log(qr/identity: certificate serial \S+ for cluster "$C" loaded/, 20),
    'restarted, the Operator loads its identity from the Secret'
    or diag $op->log_text;
ok wait_until(sub { cluster()->{connected} }, 30),
    '... and connects with it' or diag $op->log_text;
unlike $op->log_text, qr/registering cluster/, '... without registering';

# --- renewal over the stream -----------------------------------------------

ok $op->wait_log(qr/identity: renewal requested for serial/, 2 * $VALID),
    'at 2/3 of the certificate\'s life a renewal is requested on the stream'
    or diag $op->log_text;
ok $op->wait_log(qr/identity: renewed: certificate serial/, 20),
    '... the Manager signs it' or diag $op->log_text;
ok $op->wait_log(qr{identity: stored in Secret kubenova-system/$ID}, 20),
    '... and the Secret is updated';
isnt secret_cert_field('serial'), $serial, '... with a new certificate';

# after the first certificate's end, a restart connects with the renewed one
my $wait = $t0 + $VALID + 3 - time;
sleep $wait if $wait > 0;
is $op->stop, 0, 'stopped after the first certificate expired';
ok wait_until(sub { !cluster()->{connected} }, 15), 'the cluster disconnects';
$op = start_operator();
ok wait_until(sub { cluster()->{connected} }, 30),
    'restarted, it connects with the renewed certificate'
    or diag $op->log_text;
unlike $op->log_text, qr/registering cluster/, '... without registering';

# --- deleted and made again: the revoked identity registers anew ----------

$gw->api_ok(DELETE => "clusters/$C");
ok $op->wait_log(qr/identity: the Manager refuses the certificate serial \S+ \(revoked\?\): registering again/, 30),
    'the cluster deleted, its certificate is refused: the Operator '
    . 'registers again' or diag $op->log_text;
ok $op->wait_log(qr/the Manager refused the registration: HTTP 401/, 15),
    '... refused while the join Secret holds the spent token';

$r = $gw->api_ok(POST => 'clusters', { name => $C });
($url) = ($r->{json}{join_command} // '') =~ /'([^']+)'/;
$out = $k8s->kubectl('apply', '-f', $url // 'none');
like $out, qr{secret/kubenova-join configured},
    'made again, its join command updates the join Secret';
$join = $k8s->kubectl_json('get', 'secret', 'kubenova-join',
                           '-n', 'kubenova-system');
open my $jfh, '>', "$jdir/join-token" or die $!;
print {$jfh} decode_base64($join ? $join->{data}{'join-token'} : '');
close $jfh;

ok $op->wait_log(qr/identity: registered: certificate serial/, 60),
    '... with whose new token the Operator registers' or diag $op->log_text;
ok wait_until(sub { cluster()->{connected} }, 30),
    '... and connects' or diag $op->log_text;
is $op->stop, 0, 'stopped';

is_deeply [map { $_->sanitizer_reports } @ops], [], 'no sanitizer reports'
    or diag join "\n", map { grep { /^    #\d|Sanitizer|Direct|Indirect/ } $_->log_since(0) } @ops;

done_testing;
