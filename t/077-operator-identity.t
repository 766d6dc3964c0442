# The Operator's identity (issue 6) against a peer this test controls:
# python3-grpcio serving OperatorGateway with TLS that requires a client
# certificate of the "kubenova CA", and the registration endpoint of
# registration-interface.md next to it (t/lib/kubenova_grpc_server.py).
# A join directory as install.yaml's Secret holds it; registration with
# the join token (refused while the token is unknown, with the Manager's
# message), a locally made EC P-256 key and CSR, the identity stored 0600,
# the stream over mTLS bound to the certificate's CN; a restart reuses the
# identity (no second registration: the token is spent); a certificate of
# another CA is refused by the gateway; renewal over the stream at 2/3 of
# a short validity, the renewed certificate stored and used after the old
# one expired.
use strict;
use warnings;

use Test::More;
use File::Temp qw(tempdir);
use JSON::PP ();
use MIME::Base64 qw(decode_base64);
use Time::HiRes qw(time sleep);

use KubeNova::GrpcServer;
use KubeNova::Operator;

my $bin = eval { KubeNova::Operator::build() };
ok $bin, 'make -C operator builds kubenova-operator' or BAIL_OUT($@);

my $dir = tempdir('kn-t77.XXXXXX', TMPDIR => 1, CLEANUP => 1);

sub openssl {
    my ($args) = @_;
    return system("openssl $args 2>>$dir/openssl.log") == 0;
}

# the Manager's server CA and certificate; the kubenova CA that signs the
# Operators; another CA nobody trusts
{
    open my $fh, '>', "$dir/ext.cnf" or die $!;
    print {$fh} "subjectAltName=DNS:localhost,IP:127.0.0.1\n";
    close $fh;
    openssl("req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=t73-srv-ca "
            . "-keyout $dir/srv-ca.key -out $dir/srv-ca.crt")
    and openssl("req -newkey rsa:2048 -nodes -subj /CN=localhost "
                . "-keyout $dir/srv.key -out $dir/srv.csr")
    and openssl("x509 -req -in $dir/srv.csr -CA $dir/srv-ca.crt "
                . "-CAkey $dir/srv-ca.key -CAcreateserial -days 1 "
                . "-extfile $dir/ext.cnf -out $dir/srv.crt")
    and openssl("req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
                . "-nodes -days 1 -subj /CN=t73-kubenova-ca "
                . "-keyout $dir/kn-ca.key -out $dir/kn-ca.crt")
    and openssl("req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
                . "-nodes -days 1 -subj /CN=t73-other-ca "
                . "-keyout $dir/other-ca.key -out $dir/other-ca.crt")
    or BAIL_OUT('openssl could not make the test certificates');
}

my $srv = KubeNova::GrpcServer->new(
    tls_cert => "$dir/srv.crt", tls_key => "$dir/srv.key",
    client_ca => "$dir/kn-ca.crt", client_ca_key => "$dir/kn-ca.key");
ok $srv->tls_port && $srv->reg_port,
    'the grpcio gateway (mTLS) and the registration endpoint listen';

sub write_file {
    my ($path, $text) = @_;
    open my $fh, '>', $path or die "$path: $!";
    print {$fh} $text;
    close $fh;
}

sub slurp {
    my ($path) = @_;
    open my $fh, '<', $path or return undef;
    local $/;
    return scalar <$fh>;
}

# a join directory: the kubenova-join Secret's data
sub join_dir {
    my ($name, $cluster, $token) = @_;
    my $d = "$dir/$name";
    mkdir $d;
    write_file("$d/cluster", "$cluster\n");
    write_file("$d/join-token", "$token\n");
    write_file("$d/register-url", 'https://localhost:' . $srv->reg_port
               . "/api/v1/clusters/$cluster/register\n");
    write_file("$d/gateway-url", 'https://localhost:' . $srv->tls_port);
    system("cp $dir/srv-ca.crt $d/ca.crt");
    return $d;
}

sub cert_field {
    my ($file, $what) = @_;
    my $out = `openssl x509 -in $file -noout -$what 2>&1`;
    chomp $out;
    return $out;
}

my @OPS;

sub operator {
    my $op = KubeNova::Operator->start(args => [@_]);
    push @OPS, $op;
    return $op;
}

my @FAST = ('--heartbeat', '1s', '--reconnect-min', '200ms',
            '--reconnect-max', '1s');

# --- settings -----------------------------------------------------------

my $join = join_dir('join', 't73', 'knjt_t73_first');

for my $case (
    [ ['--join-dir', $join], qr/--join-dir needs a place to keep the identity/,
      'a join dir without --identity-dir or --identity-secret' ],
    [ ['--join-dir', "$dir/nowhere", '--identity-dir', "$dir/id"],
      qr/--join-dir: .*nowhere\/cluster: No such file/,
      'a join dir that is not there' ],
    [ ['--join-dir', $join, '--identity-secret', 'kubenova-system/x'],
      qr/--identity-secret needs Kubernetes/,
      '--identity-secret out of any cluster' ],
    [ ['--join-dir', $join, '--identity-secret', 'no-slash'],
      qr/--identity-secret "no-slash": expected NAMESPACE\/NAME/,
      '--identity-secret that is not NAMESPACE/NAME' ],
    [ ['--manager-url', 'http://127.0.0.1:1', '--cluster', 'c',
       '--identity-dir', "$dir/id"],
      qr/an identity \(client certificate\) needs an https:\/\/ Manager URL/,
      'an identity with a plain-text Manager URL' ])
{
    my ($args, $re, $name) = @$case;
    my $op = operator(@$args);
    my $st = $op->wait_exit(10);
    ok defined $st && $st >> 8 == 2 && $op->log_text =~ $re,
        "refused at start (exit 2): $name" or diag $op->log_text;
}

# --- registration -------------------------------------------------------

my $id = "$dir/id";
my $op = operator('--join-dir', $join, '--identity-dir', $id, @FAST);

my $ev = $srv->take(sub { $_[0]{ev} eq 'register' }, 15);
is $ev && $ev->{status}, 401, 'an unknown join token is refused (401)';
ok $op->wait_log(qr/the Manager refused the registration: HTTP 401: unknown or used join token/, 10),
    '... and the Operator says so with the Manager\'s message';
ok !-e "$id/tls.crt", '... and stores nothing';

$srv->cmd(op => 'join_token', cluster => 't73', token => 'knjt_t73_first');

$ev = $srv->take(sub { $_[0]{ev} eq 'register' && $_[0]{status} == 201 }, 20);
ok $ev, 'once the token is known the registration succeeds (201), retried '
    . 'without a restart' or diag $op->log_text;
my $serial = $ev ? $ev->{serial} : 'none';

my $c = $srv->event('connect', 15);
ok $c, 'the Operator connects to the gateway over mTLS' or diag $op->log_text;
is $c && $c->{cn}, 't73', '... with a certificate naming its cluster (CN)';
my $hello = $c ? $srv->msg($c->{n}, 'hello', 5) : undef;
is $hello && $hello->{msg}{cluster}, 't73', '... and says hello as t73';
is $hello && $hello->{msg}{cluster_secret}, '',
    '... with no cluster secret (retired)';
ok $op->wait_log(qr/grpc: connected to the Manager as cluster "t73"/, 10),
    '... and is welcomed';

for my $f ('tls.key', 'tls.crt', 'ca.crt') {
    my $mode = (stat "$id/$f")[2];
    is defined $mode ? sprintf('%o', $mode & 0777) : 'missing', '600',
        "the identity's $f is stored 0600";
}
is cert_field("$id/tls.crt", 'serial'), "serial=$serial",
    'tls.crt is the certificate the endpoint signed';
like cert_field("$id/tls.crt", 'subject'), qr/CN\s*=\s*t73\b/,
    '... for CN=t73';
like cert_field("$id/tls.crt", 'issuer'), qr/CN\s*=\s*t73-kubenova-ca/,
    '... by the kubenova CA';
like `openssl pkey -in $id/tls.key -noout -text 2>&1`, qr/NIST CURVE: P-256/,
    'tls.key is an EC P-256 key made by the Operator';
is slurp("$id/ca.crt"), slurp("$dir/kn-ca.crt"),
    'ca.crt is the CA the Manager returned';
unlike $op->log_text, qr/knjt_t73_first/, 'the join token is never logged';

is $op->stop, 0, 'SIGTERM: the Operator exits 0';

# --- a restart reuses the identity ------------------------------------

$op = operator('--join-dir', $join, '--identity-dir', $id, @FAST);
$c = $srv->event('connect', 15);
is $c && $c->{cn}, 't73', 'restarted, it connects over mTLS again'
    or diag $op->log_text;
like $op->log_text, qr/identity: certificate serial $serial for cluster "t73" loaded/,
    '... with the stored identity';
ok !$srv->take(sub { $_[0]{ev} eq 'register' }, 1),
    '... and no second registration (the token is spent)';
is $op->stop, 0, 'stopped';

# the token is single use: a fresh identity cannot register with it
$op = operator('--join-dir', $join, '--identity-dir', "$dir/id-second", @FAST);
$ev = $srv->take(sub { $_[0]{ev} eq 'register' }, 15);
is $ev && $ev->{status}, 401, 'the spent join token does not register '
    . 'another identity';
ok !$srv->take(sub { $_[0]{ev} eq 'connect' }, 2),
    '... which therefore never connects';
is $op->stop, 0, 'stopped';

# --- mTLS only: a certificate of another CA is refused ---------------

my $other = "$dir/id-other";
mkdir $other;
openssl("req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
        . "-subj /CN=t73 -keyout $other/tls.key -out $other/o.csr")
and openssl("x509 -req -in $other/o.csr -CA $dir/other-ca.crt "
            . "-CAkey $dir/other-ca.key -CAcreateserial -days 1 "
            . "-out $other/tls.crt")
or BAIL_OUT('openssl could not make the foreign certificate');

$op = operator('--join-dir', $join, '--identity-dir', $other, @FAST);
ok $op->wait_log(qr/identity: certificate serial \S+ for cluster "t73" loaded/, 10),
    'an identity from another CA loads (the Operator cannot tell)';
ok $op->wait_log(qr/stream to the Manager ended|reconnecting in/, 15),
    '... but its streams fail' or diag $op->log_text;
ok !$srv->take(sub { $_[0]{ev} eq 'connect' }, 3),
    '... the gateway never accepts one (its TLS refuses the certificate)';
is $op->stop, 0, 'stopped';

# --- renewal over the stream ------------------------------------------

my $VALID = 30;
$srv->cmd(op => 'mode', cert_validity => $VALID);
my $join2 = join_dir('join2', 't73', 'knjt_t73_second');
$srv->cmd(op => 'join_token', cluster => 't73', token => 'knjt_t73_second');
my $rid = "$dir/id-renew";

$op = operator('--join-dir', $join2, '--identity-dir', $rid, @FAST);
$ev = $srv->take(sub { $_[0]{ev} eq 'register' && $_[0]{status} == 201 }, 20);
ok $ev, "registered with a certificate valid $VALID s" or diag $op->log_text;
my $first = $ev ? $ev->{serial} : 'none';
my $registered_at = time;
$c = $srv->event('connect', 15);
ok $c, '... connected';

my $req = $c ? $srv->msg($c->{n}, 'certificate_request', 2 * $VALID) : undef;
ok $req, 'a CertificateRequest goes out on the stream' or diag $op->log_text;
my $after = time - $registered_at;
cmp_ok $after, '>=', $VALID * 2 / 3 - 3,
    sprintf('... at about 2/3 of the validity (%.0f s in)', $after);
like $req ? decode_base64($req->{msg}{csr_pem} // '') : '',
    qr/-----BEGIN CERTIFICATE REQUEST-----/, '... with a CSR';

my $iss = $srv->take(sub { $_[0]{ev} eq 'issued' }, 10);
ok $iss && !$iss->{error} && $iss->{cn} eq 't73',
    'the gateway stand-in signs it for t73';
ok $op->wait_log(qr/identity: renewed: certificate serial/, 10),
    'the Operator takes the renewed certificate';
ok $op->wait_log(qr/identity: stored in \Q$rid\E/, 10), '... and stores it';
my $renewed = $iss ? $iss->{serial} : 'none';
isnt $renewed, $first, '... a new serial';
is cert_field("$rid/tls.crt", 'serial'), "serial=$renewed",
    'tls.crt now holds the renewed certificate';

# past the first certificate's end, a new stream must use the renewed one
my $wait = $registered_at + $VALID + 2 - time;
sleep $wait if $wait > 0;
$srv->forget(sub { $_[0]{ev} eq 'connect' });
# (streams from now on leave renewals unanswered)
$srv->cmd(op => 'mode', renew => JSON::PP::false);
$srv->cmd(op => 'end', code => 'UNAVAILABLE', details => 't73 reconnect');
$c = $srv->event('connect', 15);
is $c && $c->{cn}, 't73', 'after the first certificate expired the '
    . 'Operator reconnects over mTLS: it uses the renewed one'
    or diag $op->log_text;

# renewals unanswered: at its end the certificate is registered anew with
# the (fresh) join token the join directory holds by then
$srv->cmd(op => 'join_token', cluster => 't73', token => 'knjt_t73_third');
write_file("$join2/join-token", "knjt_t73_third\n");
ok $op->wait_log(qr/identity: the certificate serial \S+ expired before it could be renewed: registering again/, 2 * $VALID),
    'a certificate never renewed expires: the Operator registers again'
    or diag $op->log_text;
$ev = $srv->take(sub { $_[0]{ev} eq 'register' && $_[0]{status} == 201 }, 20);
ok $ev, '... with the join token now in the join directory';
$srv->forget(sub { $_[0]{ev} eq 'connect' });
$srv->cmd(op => 'end', code => 'UNAVAILABLE', details => 't73 again');
$c = $srv->event('connect', 15);
is $c && $c->{cn}, 't73', '... and connects with the new certificate'
    or diag $op->log_text;
is $op->stop, 0, 'stopped';

is_deeply [map { $_->sanitizer_reports } @OPS], [], 'no sanitizer reports';

$srv->quit;
done_testing;
