# Kubeconfigs an Operator issues: encrypted by the worker (AES-256-GCM,
# kubenova_secret_key_file) before PostgreSQL sees them, bound to their
# cluster, tenant and role, acked, and served decrypted to the tenant's
# members only (a readonly member gets the readonly one only).  A tenant
# placed elsewhere or being deleted has none (deleted, no longer stored).
use strict;
use warnings;

use Test::More;
use MIME::Base64 qw(encode_base64);
use File::Temp qw(tempdir);

use KubeNova::Gateway qw(json_true);
use KubeNova::Pg qw(psql require_pg);

require_pg();

my $dir = tempdir(CLEANUP => 1);
my $key_file = "$dir/secret.key";
open my $fh, '>', $key_file or die $!;
print $fh encode_base64(join('', map { chr int rand 256 } 1 .. 32), '');
close $fh;

my $gw = KubeNova::Gateway->start(tls => 1,
    http_config => "kubenova_secret_key_file $key_file;");

$gw->create_cluster('t45-c1');
$gw->create_tenant('t45-acme', 't45-c1');
$gw->create_tenant('t45-other', 't45-c1');

sub user_token {
    my ($tenant, $user, $role) = @_;
    $gw->api_ok(POST => "tenants/$tenant/users", {name => $user, role => $role});
    my $r = $gw->api_ok(POST => "users/$user/tokens", {name => 'cli'});
    return $r->{json}{token};
}

my %token = (
    owner    => user_token('t45-acme', 't45-owner', 'owner'),
    readonly => user_token('t45-acme', 't45-reader', 'readonly'),
    other    => user_token('t45-other', 't45-stranger', 'owner'),
);

my %kubeconfig = (
    owner    => "apiVersion: v1\nkind: Config\n# owner t45 sekret-owner-token\n",
    readonly => "apiVersion: v1\nkind: Config\n# readonly t45 sekret-view-token\n",
);

my $op = $gw->operator;
$op->open('s1', hello => {cluster => 't45-c1'});
ok $op->msg('s1', 'welcome'), 'connected';

for my $role (qw(owner readonly)) {
    $op->send('s1', {kubeconfig => {tenant => 't45-acme', role => $role,
                      kubeconfig => encode_base64($kubeconfig{$role}, '')}});
    my $ack = $op->msg('s1', 'kubeconfig_ack');
    is_deeply [$ack && @{$ack->{msg}}{qw(tenant role)}], ['t45-acme', $role],
        "$role kubeconfig acked";
}

is psql("SELECT count(*) FROM kubeconfigs WHERE tenant = 't45-acme'"), 2,
    'two stored';
is psql("SELECT count(*) FROM kubeconfigs WHERE position('sekret'::bytea "
        . "IN ciphertext) > 0"), 0, 'no plaintext in the database';

sub get_kubeconfig {
    my ($who, $role) = @_;
    return $gw->ngx->request(
        path => "/api/v1/tenants/t45-acme/kubeconfig?cluster=t45-c1&role=$role&via=direct",
        headers => {Authorization => "Bearer $token{$who}"});
}

my $r = get_kubeconfig(owner => 'owner');
is $r->{status}, 200, 'owner gets the owner kubeconfig';
is $r->{body}, $kubeconfig{owner}, 'decrypted as sent';
like $r->{headers}{'content-type'}, qr{^application/yaml}, 'as YAML';
like $r->{headers}{'content-disposition'},
    qr/attachment; filename="t45-acme-t45-c1-owner.kubeconfig"/, 'to save';
is $r->{headers}{'cache-control'}, 'no-store', 'never cached';

is get_kubeconfig(owner => 'readonly')->{body}, $kubeconfig{readonly},
    'owner gets the readonly kubeconfig too';
is get_kubeconfig(readonly => 'readonly')->{status}, 200,
    'readonly gets the readonly kubeconfig';
is get_kubeconfig(readonly => 'owner')->{status}, 403,
    'readonly does not get the owner kubeconfig';
is get_kubeconfig(other => 'owner')->{status}, 404,
    "another tenant's owner sees nothing";

# a ciphertext moved to another row does not open (bound to its role)
psql("UPDATE kubeconfigs SET ciphertext = (SELECT ciphertext FROM kubeconfigs "
     . "WHERE tenant = 't45-acme' AND role = 'readonly') "
     . "WHERE tenant = 't45-acme' AND role = 'owner'");
$r = get_kubeconfig(owner => 'owner');
is $r->{status}, 500, 'a swapped ciphertext is refused';
like $r->{body}, qr/"code":\s*"internal_error"/, 'with a JSON error';

# kubeconfigs only for where a tenant runs: placed elsewhere or being
# deleted, it has none (stored ones go, new ones are acked but not kept)
sub stored { psql("SELECT count(*) FROM kubeconfigs WHERE tenant = '$_[0]'") }

$op->send('s1', {kubeconfig => {tenant => 't45-other', role => 'owner',
                  kubeconfig => encode_base64("kind: Config\n", '')}});
ok $op->msg('s1', 'kubeconfig_ack'), "the other tenant's kubeconfig acked";
is stored('t45-other'), 1, '... and stored';
$gw->api_ok(PATCH => 'tenants/t45-other', {placement => {clusters => []}});
is stored('t45-other'), 0, 'placed on no cluster: its kubeconfig is gone';

is $gw->api(DELETE => 'tenants/t45-acme')->{status}, 202,
    'the tenant is being deleted (202)';
is stored('t45-acme'), 0, '... its kubeconfigs are gone';
is $gw->api(GET => 'tenants/t45-acme/kubeconfig?cluster=t45-c1&role=readonly&via=direct')
    ->{status}, 404, '... and not served, even to an admin';
$op->send('s1', {kubeconfig => {tenant => 't45-acme', role => 'owner',
                  kubeconfig => encode_base64($kubeconfig{owner}, '')}});
ok $op->msg('s1', 'kubeconfig_ack'), 'one sent meanwhile is acked';
is stored('t45-acme'), 0, '... but not stored';

# a bad role ends the stream with INVALID_ARGUMENT
$op->send('s1', {kubeconfig => {tenant => 't45-acme', role => 'root',
                  kubeconfig => encode_base64('x', '')}});
my $end = $op->end('s1', 10);
is $end && $end->{code}, 'INVALID_ARGUMENT', 'an unknown role is refused';

is_deeply $gw->log_problems(0), [], 'no [alert] or [emerg]';

$gw->stop;
done_testing;
