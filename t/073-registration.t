# Cluster registration (issue 6), the Manager's side, against the real
# Manager, PostgreSQL, grpcio and a real control plane:
#   * POST /clusters answers a join token (stored only as its SHA-256) and
#     the install command; install.yaml applied to a real kube-apiserver
#     with kubectl creates the objects the interface names;
#   * POST /clusters/{c}/register signs a CSR once per token, with the
#     refusals of the issue (unknown, used, expired token; CSR of another
#     cluster; malformed CSR), each with a clear error and nothing stored;
#   * the gateway speaks mTLS only: no certificate, another CA's
#     certificate, a hello naming another cluster, a revoked certificate
#     (cluster deleted) are refused; a CertificateRequest on the stream
#     gives a certificate with a later not_after, which connects.
use strict;
use warnings;

use Test::More;
use Digest::SHA qw(sha256_hex);
use JSON::PP ();

use KubeNova::Gateway qw(wait_until);
use KubeNova::K8s;
use KubeNova::Pg qw(require_pg);
use KubeNova::Pki;

require_pg();

my $gw = KubeNova::Gateway->start(tls => 1, heartbeat => '1s',
                                  cert_validity => '1h');
my $pki = $gw->pki;
my $dir = $pki->{dir};

sub q_ { my $s = shift; $s =~ s/'/''/g; "'$s'" }
sub psql { KubeNova::Pg::psql(@_) }
sub certs_of { psql('SELECT count(*) FROM cluster_certificates WHERE cluster = ' . q_($_[0])) }
sub used_of  { psql('SELECT count(*) FROM join_tokens WHERE used_at IS NOT NULL AND cluster = ' . q_($_[0])) }
sub err_of   { my $r = shift; ($r->{json} && $r->{json}{error}) || {} }

# --- join tokens ------------------------------------------------------------

my $C = 't73-a';
my $r = $gw->api_ok(POST => 'clusters', { name => $C, labels => { zone => 'x' } });
is $r->{status}, 201, 'POST /clusters: 201';
my $token = $r->{json}{join_token};
like $token, qr/^knjt_[A-Za-z0-9_-]{43}$/, '... with a join token';
like $r->{json}{join_token_expires_at}, qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/,
    '... its expiry';
my $port = $gw->ngx->port;
is $r->{json}{install_url},
    "http://127.0.0.1:$port/api/v1/clusters/$C/install.yaml?token=$token",
    '... the install URL';
is $r->{json}{join_command}, "kubectl apply -f '$r->{json}{install_url}'",
    '... and the join command';
is psql("SELECT count(*) FROM join_tokens WHERE token_hash = '" . sha256_hex($token) . "'"),
    1, 'only the SHA-256 of the token is stored';
is psql("SELECT count(*) FROM join_tokens WHERE token_hash = " . q_($token)),
    0, '... never the token';
ok !exists $gw->api(GET => "clusters/$C")->{json}{join_token},
    'GET /clusters/{c} does not show it again';

$r = $gw->api(POST => 'clusters', { name => 't73-ttl', join_token_ttl => 30 });
is $r->{status}, 422, 'join_token_ttl under a minute: 422';
is_deeply [map { $_->{field} } @{ err_of($r)->{details} || [] }], ['join_token_ttl'],
    '... naming the field';
is $gw->api(GET => 'clusters/t73-ttl')->{status}, 404, '... and no cluster made';

# --- install.yaml -------------------------------------------------------------

sub install {
    my ($cluster, $tok) = @_;
    my $r = KubeNova::Nginx::http_request(
        port => $port, method => 'GET',
        path => "/api/v1/clusters/$cluster/install.yaml"
                . (defined $tok ? "?token=$tok" : ''));
    $r->{json} = eval { JSON::PP::decode_json($r->{body}) } if $r->{status} != 200;
    return $r;
}

$r = install($C, $token);
is $r->{status}, 200, 'GET install.yaml with the join token: 200';
like $r->{headers}{'content-type'}, qr{^application/yaml}, '... YAML';
my $yaml = $r->{body} // '';
for my $kind (qw(Namespace ServiceAccount ClusterRole ClusterRoleBinding
                 CustomResourceDefinition Role RoleBinding Secret Deployment)) {
    like $yaml, qr/^kind: $kind$/m, "... holds a $kind";
}
like $yaml, qr/^  join-token: "\Q$token\E"$/m, '... the join token in the Secret';
like $yaml, qr/^  register-url: "http:\/\/127\.0\.0\.1:$port\/api\/v1\/clusters\/$C\/register"$/m,
    '... the register URL';

for my $bad (['unknown', 'knjt_nope'], ['missing', undef]) {
    $r = install($C, $bad->[1]);
    is $r->{status}, 401, "install.yaml with a $bad->[0] token: 401";
    like err_of($r)->{message}, qr/unknown join token/, '... saying so';
}
is install('t73-none', $token)->{status}, 401,
    "another cluster's path with this token: 401";

# --- register: refusals, nothing stored ----------------------------------------

my $csr = KubeNova::Pki::key_and_csr($dir, 't73-a-1', "CN=$C");
my $other = KubeNova::Pki::key_and_csr($dir, 't73-a-other', 'CN=t73-b');

$r = $gw->register($C, { join_token => 'knjt_unknown', csr => $csr->{pem} });
is $r->{status}, 401, 'register with an unknown join token: 401';
like err_of($r)->{message}, qr/unknown join token/, '... saying so';

$r = $gw->register($C, { join_token => $token, csr => $other->{pem} });
is $r->{status}, 403, 'register with a CSR for another cluster: 403';
like err_of($r)->{message}, qr/for cluster "t73-b", not "$C"/, '... saying so';

$r = $gw->register($C, { join_token => $token,
                         csr => "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n" });
is $r->{status}, 422, 'register with a malformed CSR: 422';
like err_of($r)->{message}, qr/not a PEM certificate request/, '... saying so';

# one character of the signature (the end of the DER) changed
my @lines = split /\n/, $csr->{pem};
substr($lines[-2], 2, 1) = substr($lines[-2], 2, 1) eq 'A' ? 'B' : 'A';
my $tampered = join("\n", @lines) . "\n";
$r = $gw->register($C, { join_token => $token, csr => $tampered });
is $r->{status}, 422, 'register with a CSR whose signature does not hold: 422';

my $two = KubeNova::Pki::key_and_csr($dir, 't73-a-two', "O=acme/CN=$C");
$r = $gw->register($C, { join_token => $token, csr => $two->{pem} });
is $r->{status}, 422, 'register with a CSR whose subject has more than the CN: 422';
like err_of($r)->{message}, qr/exactly CN=<cluster name>/, '... saying so';

system("openssl req -new -nodes -newkey rsa:1024 -keyout $dir/t73-rsa.key "
       . "-out $dir/t73-rsa.csr -subj /CN=$C >/dev/null 2>&1");
my $rsa = do { local (@ARGV, $/) = "$dir/t73-rsa.csr"; <> };
$r = $gw->register($C, { join_token => $token, csr => $rsa });
is $r->{status}, 422, 'register with a 1024-bit RSA key: 422';
like err_of($r)->{message}, qr/2048 bits/, '... saying so';

$r = $gw->register($C, { join_token => $token });
is $r->{status}, 422, 'register without a CSR: 422';
$r = $gw->register($C, { join_token => $token, csr => 5, extra => 1 });
is $r->{status}, 422, 'register with a CSR that is not a string and an unknown field: 422';
is_deeply [sort map { $_->{field} } @{ err_of($r)->{details} || [] }], ['csr', 'extra'],
    '... naming both';
$r = $gw->register($C, '{"join_token": ');
is $r->{status}, 400, 'register with broken JSON: 400';

is certs_of($C), 0, 'after every refusal: no certificate recorded';
is used_of($C), 0, '... and the join token not consumed';

# --- register: success, once ----------------------------------------------------

$r = $gw->register($C, { join_token => $token, csr => $csr->{pem} });
is $r->{status}, 201, 'register with the join token and a good CSR: 201';
my $cert = $r->{json}{certificate} // '';
like $cert, qr/^-----BEGIN CERTIFICATE-----/, '... a certificate';
is $r->{json}{ca}, do { local (@ARGV, $/) = $pki->{ca}{cert}; <> }, '... and the CA';
is KubeNova::Pki::cert_field($cert, 'subject'), "CN = $C", '... subject CN=<cluster>';
my $serial = lc KubeNova::Pki::cert_field($cert, 'serial');
is psql("SELECT cluster FROM cluster_certificates WHERE serial = " . q_($serial)), $C,
    '... its serial recorded with the cluster';
like $r->{json}{not_after}, qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/, '... not_after';
my $ca_ok = qx{openssl verify -CAfile $pki->{ca}{cert} -purpose sslclient /dev/stdin <<'EOC' 2>&1
$cert
EOC
};
like $ca_ok, qr/OK/, '... verifies as a client certificate of the CA';

$r = $gw->register($C, { join_token => $token, csr => $csr->{pem} });
is $r->{status}, 401, 'the same join token again: 401';
like err_of($r)->{message}, qr/already used/, '... saying it was used';
is certs_of($C), 1, '... nothing more recorded';
is install($C, $token)->{status}, 401, 'a used token serves no install.yaml';

# expired: a fresh token whose expiry has passed
my $t2 = $gw->api_ok(POST => "clusters/$C/join-token")->{json}{join_token};
psql("UPDATE join_tokens SET created_at = now() - interval '2 days', "
     . "expires_at = now() - interval '1 second' WHERE token_hash = '" . sha256_hex($t2) . "'");
my $csr2 = KubeNova::Pki::key_and_csr($dir, 't73-a-2', "CN=$C");
$r = $gw->register($C, { join_token => $t2, csr => $csr2->{pem} });
is $r->{status}, 401, 'an expired join token: 401';
like err_of($r)->{message}, qr/expired/, '... saying it expired';
is certs_of($C), 1, '... nothing recorded';

# a new token makes the older unused one stop working
my $t3 = $gw->api_ok(POST => "clusters/$C/join-token")->{json}{join_token};
my $t4 = $gw->api_ok(POST => "clusters/$C/join-token")->{json}{join_token};
$r = $gw->register($C, { join_token => $t3, csr => $csr2->{pem} });
is $r->{status}, 401, 'a join token replaced by a newer one: 401';
is $gw->api(POST => "clusters/$C/join-token")->{status}, 201,
    'POST join-token again: 201';
is KubeNova::Nginx::http_request(port => $port, method => 'POST',
    path => "/api/v1/clusters/$C/join-token")->{status}, 401,
    'POST join-token without a bearer token: 401';

my $audit = $gw->api_ok(GET => 'audit?limit=200')->{json}{items} || [];
ok scalar(grep { $_->{action} eq 'cluster.register' && $_->{status} == 201
                 && $_->{resource} eq "clusters/$C/register" } @$audit),
    'the registration is in the audit log';
is scalar(grep { $_->{action} eq 'cluster.register' && $_->{status} != 201 } @$audit), 0,
    '... the refused ones are not (unauthenticated)';

# --- the gateway: mTLS only -----------------------------------------------------

my $id = { cluster => $C, key => $csr->{key}, cert => "$dir/t73-a-1.crt",
           ca => $pki->{ca}{cert} };
{ open my $fh, '>', $id->{cert} or die; print {$fh} $cert; close $fh; }

my $op = $gw->operator;
my $C_CONNECTED = sub { $gw->api(GET => "clusters/$C")->{json}{connected} };

$op->open('s1', hello => { cluster => $C }, tls => $gw->tls($id));
my $w = $op->msg('s1', 'welcome', 10);
ok $w, 'a hello over mTLS with the registered certificate: welcome'
    or diag explain $op->end('s1', 1);
ok wait_until($C_CONNECTED, 10), '... the cluster is connected';

$op->open('s2', hello => { cluster => $C }, tls => $gw->tls(undef));
my $end = $op->end('s2', 10);
is $end && $end->{code}, 'UNAUTHENTICATED', 'no client certificate: UNAUTHENTICATED';
like $end && $end->{details}, qr/client certificate/, '... saying a certificate is needed';

$op->open('s3', hello => { cluster => $C, cluster_secret => 'kncs_whatever' },
          tls => $gw->tls(undef));
$end = $op->end('s3', 10);
is $end && $end->{code}, 'UNAUTHENTICATED', 'a cluster secret instead: UNAUTHENTICATED (retired)';

my $evil = KubeNova::Pki::make_ca($dir, 'evil-ca');
my $ecsr = KubeNova::Pki::key_and_csr($dir, 't73-evil', "CN=$C");
my $ecert = KubeNova::Pki::sign_client($dir, $evil, $ecsr, 't73-evil');
$op->open('s4', hello => { cluster => $C },
          tls => { ca => $pki->{ca}{cert}, key => $ecsr->{key}, cert => $ecert });
$end = $op->end('s4', 10);
is $end && $end->{code}, 'UNAUTHENTICATED', 'a certificate from another CA: UNAUTHENTICATED';
like $end && $end->{details}, qr/does not verify against the KubeNova CA/, '... saying so';

my $B = 't73-b';
my $idb = $gw->create_cluster($B);
$op->open('s5', hello => { cluster => $C }, tls => $gw->tls($idb));
$end = $op->end('s5', 10);
is $end && $end->{code}, 'PERMISSION_DENIED', "a hello naming another cluster: PERMISSION_DENIED";
like $end && $end->{details}, qr/certificate is for cluster "$B": it cannot speak for "$C"/,
    '... saying so';
ok !$op->ended('s1'), "... and ${C}'s own stream goes on";

# --- renewal over the stream ------------------------------------------------------

my $old_after = KubeNova::Pki::cert_field($id->{cert}, 'enddate');
sleep 1.1;   # whole seconds: the new not_after must be later
my $rcsr = KubeNova::Pki::key_and_csr($dir, 't73-a-renew', "CN=$C");
$op->send('s1', { certificate_request => { csr_pem => encode_b64($rcsr->{pem}) } });
my $issued = $op->msg('s1', 'certificate', 10);
ok $issued, 'CertificateRequest on the stream: CertificateIssued';
my $new_pem = $issued ? decode_b64($issued->{msg}{certificate_pem}) : '';
like $new_pem, qr/^-----BEGIN CERTIFICATE-----/, '... with a certificate';
is $issued && $issued->{msg}{error}, '', '... and no error';
my $new_after = $new_pem ? KubeNova::Pki::cert_field($new_pem, 'enddate') : '';
ok str2time_ok($new_after, $old_after), "... whose not_after ($new_after) is later than before ($old_after)";
is certs_of($C), 2, '... recorded';

my $rid = { %$id, key => $rcsr->{key}, cert => "$dir/t73-a-renew.crt" };
{ open my $fh, '>', $rid->{cert} or die; print {$fh} $new_pem; close $fh; }
$op->open('s6', hello => { cluster => $C }, tls => $gw->tls($rid));
ok $op->msg('s6', 'welcome', 10), 'the renewed certificate connects';

$op->send('s6', { certificate_request => { csr_pem => encode_b64("not a CSR") } });
$issued = $op->msg('s6', 'certificate', 10);
like $issued && $issued->{msg}{error}, qr/not a PEM certificate request/,
    'a CertificateRequest with a malformed CSR: refused with an error';
is $issued && $issued->{msg}{certificate_pem}, '', '... and no certificate';

my $bcsr = KubeNova::Pki::key_and_csr($dir, 't73-a-bad', "CN=$B");
$op->send('s6', { certificate_request => { csr_pem => encode_b64($bcsr->{pem}) } });
$issued = $op->msg('s6', 'certificate', 10);
like $issued && $issued->{msg}{error}, qr/CN=<this stream's cluster>/,
    'a CertificateRequest for another cluster: refused with an error';
is certs_of($C), 2, '... nothing recorded';
ok !$op->ended('s6'), '... and the stream goes on';

# --- deleting the cluster revokes its certificates ----------------------------

$gw->api_ok(DELETE => "clusters/$C");
is psql("SELECT count(*) FROM cluster_certificates WHERE cluster = " . q_($C)
        . " AND revoked_at IS NULL"), 0, 'DELETE /clusters/{c} revokes its certificates';
$end = $op->end('s6', 10);
ok $end, "... and ends its stream (" . ($end ? $end->{code} : 'none') . ')';

$gw->api_ok(POST => 'clusters', { name => $C });
$op->open('s7', hello => { cluster => $C }, tls => $gw->tls($rid));
$end = $op->end('s7', 10);
is $end && $end->{code}, 'UNAUTHENTICATED',
    'a revoked certificate, even for a new cluster of the same name: UNAUTHENTICATED';
like $end && $end->{details}, qr/revoked or expired/, '... saying so';

$op->quit;

# --- the join command against a real control plane -------------------------------

SKIP: {
    my $k8s = eval { KubeNova::K8s->start };
    skip "no control plane: $@", 12 unless $k8s;

    my $K = 't73-k';
    my $created = $gw->api_ok(POST => 'clusters', { name => $K })->{json};
    my ($url) = $created->{join_command} =~ /^kubectl apply -f '(.*)'$/;
    my $out = $k8s->kubectl('apply', '-f', $url);
    is $?, 0, 'the join command (kubectl apply -f <install_url>) applies'
        or diag $out;
    like $out, qr{namespace/kubenova-system created}, '... the namespace';
    like $out, qr{deployment\.apps/kubenova-operator created}, '... the Deployment';

    my $sa = $k8s->kubectl_json('get', 'serviceaccount', '-n', 'kubenova-system',
                                'kubenova-operator');
    ok $sa, 'ServiceAccount kubenova-system/kubenova-operator';
    my $crb = $k8s->kubectl_json('get', 'clusterrolebinding', 'kubenova-operator');
    is $crb && $crb->{roleRef}{name}, 'kubenova-operator', 'the ClusterRole, bound';
    ok $k8s->kubectl_json('get', 'crd', 'applications.core.oam.dev'), 'the CRDs';

    my $secret = $k8s->kubectl_json('get', 'secret', '-n', 'kubenova-system',
                                    'kubenova-join');
    my %data = map { $_ => decode_b64($secret->{data}{$_}) }
               keys %{ $secret ? $secret->{data} : {} };
    is_deeply [sort keys %data], [sort 'cluster', 'join-token', 'register-url',
                                  'gateway-url', 'ca.crt'],
        'Secret kubenova-join: exactly the keys of the interface';
    is $data{cluster}, $K, '... cluster';
    is $data{'join-token'}, $created->{join_token}, '... the join token';
    is $data{'ca.crt'}, do { local (@ARGV, $/) = $pki->{ca}{cert}; <> },
        '... the CA, as PEM';

    my $can = $k8s->kubectl('auth', 'can-i', 'update', 'secret/kubenova-operator-identity',
        '-n', 'kubenova-system', '--as', 'system:serviceaccount:kubenova-system:kubenova-operator');
    like $can, qr/^yes/, 'the Operator may update its identity Secret';

    my $dep = $k8s->kubectl_json('get', 'deployment', '-n', 'kubenova-system',
                                 'kubenova-operator');
    my ($ctr) = @{ $dep ? $dep->{spec}{template}{spec}{containers} : [] };
    is_deeply $ctr && $ctr->{command},
        ['kubenova-operator', '--join-dir', '/etc/kubenova/join',
         '--identity-secret', 'kubenova-system/kubenova-operator-identity'],
        'the Deployment runs the Operator with --join-dir and --identity-secret';
    $k8s->stop;
}

is_deeply $gw->log_problems, [], 'no [alert] or [emerg] in the error log';

$gw->stop;
done_testing;

sub encode_b64 { require MIME::Base64; MIME::Base64::encode_base64($_[0], '') }
sub decode_b64 { require MIME::Base64; MIME::Base64::decode_base64($_[0] // '') }

sub str2time_ok {
    my ($new, $old) = @_;
    my $t = sub { my $s = shift; my $x = qx{date -u -d '$s' +%s}; chomp $x; $x };
    return $new && $old && $t->($new) > $t->($old);
}
