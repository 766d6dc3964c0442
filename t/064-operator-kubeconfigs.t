# The tenants' kubeconfigs (operator/src/kn_credentials.c) end to end: the
# real Manager (kubeconfigs stored encrypted), a real control plane
# (t/k8s/control-plane.sh) and the Operator with its least-privilege role.
# For two tenants on one cluster the Operator issues an owner and a
# readonly kubeconfig from the TokenRequest API; the Manager serves them
# as sent, to the tenant's members and admins only.  With Debian's kubectl: the owner creates pods
# in <t>-apps until the quota says no and is Forbidden in the other
# tenant's namespace and at cluster scope; the readonly one reads but does
# not write.  A restarted Operator issues fresh kubeconfigs, renews them
# before expiry, keeps what the Manager has not acked while it is down and
# sends it on reconnection; a deleted tenant's kubeconfigs are no longer
# served, nor renewed, and its tokens stop working.
use strict;
use warnings;

use Test::More;
use File::Temp qw(tempdir tempfile);
use JSON::PP ();
use MIME::Base64 qw(encode_base64 decode_base64);
use Time::HiRes qw(time sleep);

use KubeNova::Gateway qw(wait_until);
use KubeNova::K8s;
use KubeNova::Nginx;
use KubeNova::Operator;
use KubeNova::Pg qw(psql require_pg);

require_pg();

my $dir = tempdir('kn-t64.XXXXXX', TMPDIR => 1, CLEANUP => 1);

# a file of the test's directory holding $text
sub file_of {
    my ($text) = @_;
    my ($fh, $path) = tempfile(DIR => $dir);
    print {$fh} $text;
    close $fh;
    return $path;
}

my $bin = eval { KubeNova::Operator::build() };
ok $bin, 'make -C operator builds kubenova-operator' or BAIL_OUT($@);

# --- the Manager, the cluster, two tenants ---------------------------------

my $k8s = KubeNova::K8s->start;
ok $k8s->{kubeconfig} && -x $k8s->{kubectl},
    'a control plane, with Debian\'s kubectl';

my $key_file = file_of(encode_base64(join('', map { chr int rand 256 } 1 .. 32), ''));
my $gw = KubeNova::Gateway->start(tls => 1, heartbeat => '1s',
    http_config => "kubenova_secret_key_file $key_file;");

my $C = 't64-c';
my ($A, $B) = ('t64-a', 't64-b');
my $identity = $gw->create_cluster($C);
$gw->api_ok(POST => 'tenants', { name => $A, placement => { clusters => [$C] },
                                 quota_overrides => { pods => 3, cpu => '4',
                                                     memory => '8Gi' } });
$gw->create_tenant($B, $C);

sub user_token {
    my ($tenant, $user, $role) = @_;
    $gw->api_ok(POST => "tenants/$tenant/users", { name => $user, role => $role });
    return $gw->api_ok(POST => "users/$user/tokens", { name => 'cli' })
        ->{json}{token};
}

my %bearer = (
    admin         => $ENV{TEST_NGINX_ADMIN_TOKEN},
    a_owner       => user_token($A, 't64-a-owner', 'owner'),
    a_reader      => user_token($A, 't64-a-reader', 'readonly'),
    b_owner       => user_token($B, 't64-b-owner', 'owner'),
);

# GET /tenants/{t}/kubeconfig as someone
sub fetch {
    my ($tenant, $role, $who) = @_;
    return KubeNova::Nginx::http_request(
        port => $gw->ngx->port,
        path => "/api/v1/tenants/$tenant/kubeconfig?cluster=$C&role=$role&via=direct",
        headers => { Authorization => "Bearer $bearer{$who // 'admin'}" });
}

sub served {
    my $r = fetch(@_);
    return $r->{status} == 200 ? $r->{body} : undef;
}

sub start_operator {
    my (@more) = @_;
    return KubeNova::Operator->start(
        manager_url => 'https://localhost:' . $gw->gw_port,
        cluster => $C, identity => $identity,
        args => ['--heartbeat', '1s', '--reconnect-min', '100ms',
                 '--reconnect-max', '1s', '--kubeconfig', $k8s->operator_kubeconfig,
                 @more]);
}

# --- what a kubeconfig is --------------------------------------------------

my $ca_data = encode_base64(do { local (@ARGV, $/) = $k8s->{ca}; <> }, '');

# exactly what the Operator writes, for the token it holds
sub expected_kubeconfig {
    my ($tenant, $role, $token, $server) = @_;
    my $user = "$tenant-$role";
    my $ctx = "$user\@$C";
    return <<"YAML";
apiVersion: v1
kind: Config
clusters:
- name: "$C"
  cluster:
    server: "$server"
    certificate-authority-data: "$ca_data"
users:
- name: "$user"
  user:
    token: "$token"
contexts:
- name: "$ctx"
  context:
    cluster: "$C"
    user: "$user"
    namespace: "$tenant-apps"
current-context: "$ctx"
YAML
}

sub token_of { ($_[0] // '') =~ /^    token: "([^"]+)"$/m ? $1 : undef }

# the claims of a service-account token (a JWT)
sub claims {
    my ($token) = @_;
    my (undef, $payload) = split /\./, $token // '';
    return {} unless defined $payload;
    $payload =~ tr{-_}{+/};
    $payload .= '=' x (-length($payload) % 4);
    return eval { JSON::PP::decode_json(decode_base64($payload)) } || {};
}

# kubectl with a kubeconfig as served: (output, exit code)
sub kubectl_as {
    my ($kubeconfig, @args) = @_;
    my $file = file_of($kubeconfig);
    my $cmd = join ' ', map { "'$_'" } $k8s->{kubectl},
        "--kubeconfig=$file", '--request-timeout=20s', @args;
    my $out = `$cmd 2>&1`;
    return ($out, $? >> 8);
}

sub kget { $k8s->kubectl_json('get', @_) }

# --- the first Operator: default lifetime ----------------------------------

my $op = start_operator();

ok wait_until(sub { served($A, 'owner') && served($A, 'readonly')
                    && served($B, 'owner') && served($B, 'readonly') }, 60),
    'the Manager serves an owner and a readonly kubeconfig of both tenants'
    or diag $op->log_text;

my %kc;
for my $t ($A, $B) {
    for my $role (qw(owner readonly)) {
        my $body = served($t, $role);
        my $token = token_of($body);
        $kc{$t}{$role} = $body;
        is $body, expected_kubeconfig($t, $role, $token, $k8s->{server}),
            "$t $role: exactly the kubeconfig the Operator writes (server, "
            . 'CA, token, namespace)';
        my $c = claims($token);
        is $c->{sub}, "system:serviceaccount:$t-owner:$role",
            "... its token is that of the ServiceAccount $t-owner/$role";
        is(($c->{exp} // 0) - ($c->{iat} // 0), 3600,
           '... asked for the default lifetime, 1h');
    }
}
ok $op->wait_log(qr/credentials: the owner kubeconfig of tenant "$A" is issued: its token expires at \S+Z, renewed in (28[5-8]\d) s/, 1),
    'renewal after four fifths of the lifetime';
is psql("SELECT count(*) FROM kubeconfigs WHERE position("
        . "convert_to('" . token_of($kc{$A}{owner}) . "', 'UTF8') IN ciphertext) > 0"),
    0, 'no token in clear in the database';

# --- who gets which ----------------------------------------------------------

is fetch($A, 'owner', 'a_owner')->{status}, 200,
    "${A}'s owner user gets its owner kubeconfig";
is fetch($A, 'readonly', 'a_owner')->{status}, 200, '... and its readonly one';
is fetch($A, 'readonly', 'a_reader')->{status}, 200,
    "${A}'s readonly user gets the readonly kubeconfig";
is fetch($A, 'owner', 'a_reader')->{status}, 403, '... not the owner one';
is fetch($A, 'owner', 'b_owner')->{status}, 404,
    "${B}'s owner sees no kubeconfig of $A";
is fetch($A, 'readonly', 'b_owner')->{status}, 404, '... not even the readonly one';
is token_of(fetch($A, 'owner', 'a_owner')->{body}), token_of($kc{$A}{owner}),
    "${A}'s owner user gets what the admin gets";

# --- the owner kubeconfig with kubectl ---------------------------------------

my $owner = $kc{$A}{owner};
my ($out, $exit);

my $quota = kget('resourcequota', 'kubenova-quota', '-n', "$A-apps");
is $quota && $quota->{spec}{hard}{pods}, '3',
    "$A-apps: quota pods 3 (the tenant's override)";

# admission enforces a quota once the controller has counted its usage
ok wait_until(sub {
        my $q = kget('resourcequota', 'kubenova-quota', '-n', "$A-apps");
        ($q->{status}{hard}{pods} // '') eq '3'
            && defined $q->{status}{used}{pods};
    }, 120), '... counted by the quota controller';
for my $p (qw(p1 p2 p3)) {
    ($out, $exit) = kubectl_as($owner, 'run', $p, '--image=x', '--restart=Never');
    is $exit, 0, "the owner creates pod $p in its default namespace: $out";
}
is_deeply [sort map { $_->{metadata}{name} }
           @{ (kget('pods', '-n', "$A-apps") || {})->{items} || [] }],
    [qw(p1 p2 p3)], "... all three in $A-apps";
($out, $exit) = kubectl_as($owner, 'run', 'p4', '--image=x', '--restart=Never');
isnt $exit, 0, 'a fourth pod is refused';
like $out, qr/exceeded quota: kubenova-quota.*pods=1.*limited: pods=3/,
    '... with the quota error';

($out, $exit) = kubectl_as($owner, '-n', "$A-owner", 'get', 'serviceaccounts');
is $exit, 0, "the owner may read $A-owner too";

for my $cmd (['-n', "$B-apps", 'get', 'pods'],
             ['-n', "$B-apps", 'run', 'intruder', '--image=x', '--restart=Never'],
             ['-n', "$B-owner", 'get', 'serviceaccounts'],
             ['get', 'namespaces'],
             ['get', 'nodes'],
             ['get', 'clusterroles'],
             ['create', 'namespace', 't64-stolen'])
{
    ($out, $exit) = kubectl_as($owner, @$cmd);
    ok $exit != 0 && $out =~ /Forbidden/,
        "owner: kubectl @$cmd is Forbidden" or diag $out;
}

# --- the readonly kubeconfig --------------------------------------------------

my $reader = $kc{$A}{readonly};
($out, $exit) = kubectl_as($reader, 'get', 'pods', '-o', 'name');
is $exit, 0, "readonly: get pods in $A-apps";
is_deeply [sort split /\n/, $out], [map { "pod/$_" } qw(p1 p2 p3)],
    '... sees the three pods';
($out, $exit) = kubectl_as($reader, 'get', 'resourcequota', 'kubenova-quota');
is $exit, 0, '... and the quota';
for my $cmd (['run', 'p5', '--image=x', '--restart=Never'],
             ['delete', 'pod', 'p1'],
             ['-n', "$B-apps", 'get', 'pods'],
             ['get', 'namespaces'])
{
    ($out, $exit) = kubectl_as($reader, @$cmd);
    ok $exit != 0 && $out =~ /Forbidden/,
        "readonly: kubectl @$cmd is Forbidden" or diag $out;
}
ok kget('pod', 'p1', '-n', "$A-apps"), '... p1 is still there';

# --- a restarted Operator: fresh kubeconfigs, short renewal -----------------

is $op->stop(10), 0, 'SIGTERM: the Operator exits 0';
is_deeply [$op->sanitizer_reports], [], '... no sanitizer report';

my $server2 = "https://localhost:$k8s->{port}";
my $op2 = start_operator('--tenant-token-ttl', '600',
                         '--tenant-token-renew-before', '594s',
                         '--tenant-kubeconfig-server', $server2);

ok $op2->wait_log(qr/tenants: the cluster holds NovaTenant "$A" at generation \d+ already/, 30),
    'restarted, the Operator finds its tenants in the cluster'
    or diag $op2->log_text;

my %fresh;
ok wait_until(sub {
        for my $t ($A, $B) {
            for my $role (qw(owner readonly)) {
                my $b = served($t, $role) // return 0;
                return 0 unless $b =~ /\Q$server2\E/;
                $fresh{$t}{$role} = $b;
            }
        }
        1;
    }, 60), '... and issues fresh kubeconfigs, on the configured server URL'
    or diag $op2->log_text;
for my $t ($A, $B) {
    my $token = token_of($fresh{$t}{owner});
    is $fresh{$t}{owner}, expected_kubeconfig($t, 'owner', $token, $server2),
        "$t owner: the kubeconfig as written";
    my $c = claims($token);
    is(($c->{exp} // 0) - ($c->{iat} // 0), 600, '... a 10 min token');
}
ok $op2->wait_log(qr/credentials: the owner kubeconfig of tenant "$A" is issued: its token expires at \S+, renewed in [56] s/, 10),
    '... renewed 594 s before it expires';

my $before = served($A, 'owner');
my $renewed;
ok wait_until(sub {
        my $b = served($A, 'owner');
        $renewed = $b if $b && token_of($b) ne token_of($before);
        $renewed;
    }, 60), 'the served kubeconfig is renewed (a new token)'
    or diag $op2->log_text;
is $renewed, expected_kubeconfig($A, 'owner', token_of($renewed), $server2),
    '... as written';
($out, $exit) = kubectl_as($renewed, 'get', 'pods', '-o', 'name');
is $exit, 0, '... and the new one works' or diag $out;
($out, $exit) = kubectl_as($before, 'get', 'pods', '-o', 'name');
is $exit, 0, '... the old one too, until it expires' or diag $out;

# --- the Manager away: what it did not ack is sent again ---------------------

$gw->ngx->stop;
my $stopped = time;
my $off = $op2->log_offset;
ok $op2->wait_log(qr/credentials: the owner kubeconfig of tenant "$A" is issued/, 30, $off),
    'the Manager stopped: a renewal meanwhile' or diag $op2->log_text;
$gw->ngx->start;
ok $op2->wait_log(qr/credentials: \d+ kubeconfig\(s\) the Manager has not acked go on the new stream/, 30, $off),
    'reconnected, the Operator sends what the Manager has not acked'
    or diag $op2->log_text;
ok wait_until(sub { (claims(token_of(served($A, 'owner')))->{iat} // 0) >= int $stopped }, 30),
    '... the Manager serves a kubeconfig issued while it was away';

# --- deletion ----------------------------------------------------------------

my $old_owner = served($A, 'owner');
($out, $exit) = kubectl_as($old_owner, 'get', 'pods', '-o', 'name');
is $exit, 0, "${A}'s owner token works before the deletion";

my $del = $gw->api(DELETE => "tenants/$A");
is $del->{status}, 202, "DELETE $A: 202";
is fetch($A, 'owner')->{status}, 404, '... its owner kubeconfig is no longer served';
is fetch($A, 'readonly')->{status}, 404, '... nor its readonly one';
is psql("SELECT count(*) FROM kubeconfigs WHERE tenant = '$A'"), 0,
    '... nor stored';
ok served($B, 'owner'), "${B}'s still is";

ok wait_until(sub {
        !kget('namespace', "$A-owner") && !kget('namespace', "$A-apps")
    }, 120), "${A}'s namespaces are gone" or diag $op2->log_text;
ok $op2->wait_log(qr/credentials: tenant "$A" is gone: its kubeconfigs are forgotten/, 30),
    '... and the Operator forgets its kubeconfigs';
ok wait_until(sub {
        ($out, $exit) = kubectl_as($old_owner, 'get', 'pods');
        $out =~ /Unauthorized/;
    }, 30), 'its old owner token is refused: 401 Unauthorized' or diag $out;
ok wait_until(sub { $gw->api(GET => "tenants/$A")->{status} == 404 }, 30),
    '... and the tenant is gone from the Manager';

$off = $op2->log_offset;
ok $op2->wait_log(qr/credentials: the owner kubeconfig of tenant "$B" is issued/, 30, $off),
    "${B}'s kubeconfig is renewed still";
is_deeply [$op2->grep_log(qr/kubeconfig of tenant "$A"/, $off)], [],
    "... ${A}'s no longer";
is fetch($A, 'owner')->{status}, 404, "... and none of ${A}'s is served";

is $op2->stop(10), 0, 'SIGTERM: exit 0';
is_deeply [$op2->sanitizer_reports], [], 'no sanitizer report';
is_deeply [grep { /\[error\]/ } $op->log_since(0), $op2->log_since(0)], [],
    'no [error] in the Operator\'s logs';
is_deeply [grep { /eyJ/ } $op->log_since(0), $op2->log_since(0)], [],
    'no token in them';
is_deeply $gw->log_problems(0), [], 'no [alert] or [emerg] in the Manager\'s';
diag "the Operator's logs:\n" . $op->log_text . "\n---\n" . $op2->log_text
    unless Test::More->builder->is_passing;
$gw->stop;
done_testing;
