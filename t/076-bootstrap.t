# One-shot bootstrap (issue 6): POST /clusters with bootstrap_kubeconfig
# stores it sealed (AES-256-GCM: the plaintext is nowhere in the database),
# kubenova-bootstrap (bootstrap/) applies the cluster's install.yaml with it
# on a real control plane and wipes it, with audit entries; a failed
# bootstrap is wiped and audited too.  Bad input: 422, nothing stored.
use strict;
use warnings;

use Test::More;
use File::Basename qw(dirname);
use File::Temp qw(tempdir);
use MIME::Base64 qw(decode_base64);

use KubeNova::Gateway qw(wait_until);
use KubeNova::K8s;
use KubeNova::Pg qw(require_pg conninfo);

require_pg();

my $Repo = dirname(__FILE__) . '/..';
my $san = $ENV{KN_OPERATOR_SANITIZE} || $ENV{KN_UNIT_SANITIZE};
my $out = `make -s -C $Repo/bootstrap @{[ $san ? 'SANITIZE=1' : '' ]} 2>&1`;
is $?, 0, 'make -C bootstrap builds kubenova-bootstrap' or BAIL_OUT($out);
my $helper = "$Repo/bootstrap/build" . ($san ? '/sanitize' : '') . '/kubenova-bootstrap';

my $k8s = KubeNova::K8s->start;
ok -s $k8s->{kubeconfig}, 'a control plane, with an admin kubeconfig';

my $dir = tempdir('kn-t76.XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $key = "$dir/secret.key";
open my $fh, '>', $key or die $!;
print $fh join('', map { sprintf '%02x', int rand 256 } 1 .. 32), "\n";
close $fh;

my $gw = KubeNova::Gateway->start(http_config => "kubenova_secret_key_file $key;");

sub psql { KubeNova::Pg::psql(@_) }
sub slurp { open my $f, '<', $_[0] or die "$_[0]: $!"; local $/; <$f> }
sub kget { $k8s->kubectl_json('get', @_) }
sub audits {
    my ($c) = @_;
    return psql("SELECT string_agg(status::text, ' ' ORDER BY id) FROM audit_log "
                . "WHERE action = 'cluster.bootstrap' AND resource = 'clusters/$c/bootstrap'");
}

sub run_helper {
    my $log = "$dir/helper.log";
    open my $saved, '>&', \*STDERR or die $!;
    open STDERR, '>>', $log or die "$log: $!";
    system($helper, '--postgres', conninfo(), '--secret-key-file', $key,
           '--manager-url', 'http://127.0.0.1:' . $gw->ngx->port,
           '--kubectl', $k8s->{kubectl}, '--once');
    my $rc = $? >> 8;
    open STDERR, '>&', $saved or die $!;
    return $rc;
}

my $kubeconfig = slurp($k8s->{kubeconfig});
my ($server) = $kubeconfig =~ /server:\s*(\S+)/;
ok $server, "the kubeconfig names its server ($server)";

# --- bad input ---------------------------------------------------------------

my $r = $gw->api(POST => 'clusters', { name => 't76-x', bootstrap_kubeconfig => 42 });
is $r->{status}, 422, 'bootstrap_kubeconfig not a string: 422';
is $r->{json}{error}{details}[0]{field}, 'bootstrap_kubeconfig', '... naming it';
$r = $gw->api(POST => 'clusters', { name => 't76-x', bootstrap_kubeconfig => 'x' });
is $r->{status}, 422, 'too short to be a kubeconfig: 422';
is $gw->api(GET => 'clusters/t76-x')->{status}, 404, '... and no cluster was created';
$r = $gw->api(POST => 'clusters', { name => 't76-y', bootstrap_kubeconfig_sealed => 'AQ==' });
is $r->{status}, 201, 'a client cannot send the sealed form: it is dropped';
ok !exists $r->{json}{bootstrap}, '... no bootstrap';

my $nokey = KubeNova::Gateway->start(api_only => 1, servroot => "$dir/nokey");
$r = $nokey->api(POST => 'clusters', { name => 't76-x', bootstrap_kubeconfig => $kubeconfig });
is $r->{status}, 422, 'a Manager without kubenova_secret_key_file: 422';
like $r->{json}{error}{details}[0]{message}, qr/no kubenova_secret_key_file/, '... saying why';
$nokey->stop;
is psql('SELECT count(*) FROM cluster_bootstrap'), 0, 'nothing stored';

# --- stored sealed -------------------------------------------------------------

my $C = 't76-a';
$r = $gw->api(POST => 'clusters', { name => $C, bootstrap_kubeconfig => $kubeconfig });
is $r->{status}, 201, 'POST /clusters with bootstrap_kubeconfig: 201';
is $r->{json}{bootstrap}, 'pending', '... bootstrap pending';
ok !exists $r->{json}{bootstrap_kubeconfig}, '... the kubeconfig is not echoed';
is psql("SELECT count(*) FROM cluster_bootstrap WHERE cluster = '$C'"), 1,
    'a bootstrap row';
my $sealed = decode_base64(psql("SELECT encode(sealed, 'base64') FROM cluster_bootstrap "
                                . "WHERE cluster = '$C'"));
is ord(substr($sealed, 0, 1)), 1, '... sealed (version 1)';
is length($sealed), length($kubeconfig) + 29, '... nonce, ciphertext and tag';
is index($sealed, $server), -1, '... the plaintext is not in it';
is psql("SELECT count(*) FROM audit_log WHERE position('$server' IN resource) > 0"), 0,
    '... nor in the audit log';

# --- the helper ---------------------------------------------------------------------

is run_helper(), 0, 'kubenova-bootstrap --once: exit 0';
is psql("SELECT count(*) FROM cluster_bootstrap WHERE cluster = '$C'"), 0,
    'the kubeconfig is gone from the database';
is audits($C), '202 200', 'audited: taken (202), then applied (200)';
is psql("SELECT principal FROM audit_log WHERE action = 'cluster.bootstrap' LIMIT 1"),
    'kubenova-bootstrap', '... by kubenova-bootstrap';

ok kget('namespace', 'kubenova-system'), 'install.yaml applied: namespace kubenova-system';
my $join = kget('secret', 'kubenova-join', '-n', 'kubenova-system');
is $join && decode_base64($join->{data}{cluster}), $C, '... Secret kubenova-join for the cluster';
my $token = $join ? decode_base64($join->{data}{'join-token'}) : '';
like $token, qr/^knjt_/, '... with a join token';
isnt $token, $r->{json}{join_token}, '... a fresh one, not the one of the creation';
ok kget('deployment', 'kubenova-operator', '-n', 'kubenova-system'),
    '... and the Operator\'s Deployment';
ok kget('clusterrole', 'kubenova-operator'), '... and its ClusterRole';

is run_helper(), 0, 'run again: nothing to do, exit 0';
is audits($C), '202 200', '... nothing audited again';

# --- a bootstrap that fails is wiped all the same ---------------------------------

(my $bad = $kubeconfig) =~ s/server:\s*\S+/server: https:\/\/127.0.0.1:1/;
$r = $gw->api(POST => 'clusters', { name => 't76-b', bootstrap_kubeconfig => $bad });
is $r->{status}, 201, 'a cluster whose kubeconfig names an unreachable server';
is run_helper(), 1, 'kubenova-bootstrap --once: exit 1';
is psql("SELECT count(*) FROM cluster_bootstrap"), 0, '... its kubeconfig wiped all the same';
is audits('t76-b'), '202 500', '... audited: taken, failed (500)';

my $hlog = slurp("$dir/helper.log");
unlike $hlog, qr/AddressSanitizer|runtime error|LeakSanitizer/,
    'no sanitizer report from kubenova-bootstrap';
unlike $hlog, qr/knjt_/, 'the helper never logs a join token';
is_deeply $gw->log_problems(0), [], 'no [alert] or [emerg] in the error log';
diag "kubenova-bootstrap:\n$hlog" unless Test::More->builder->is_passing;
$gw->stop;
done_testing;
