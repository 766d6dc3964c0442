# The web console (dashboard/, served at / by the Manager's nginx) in a real
# browser: Debian's chromium, headless, driven by playwright-core from a
# Node script (t/dashboard/080-dashboard.mjs), against the real Manager and
# PostgreSQL, with a python gRPC Operator (a real peer on the gateway) that
# reports what clusters report: usage, application status, kubeconfigs.
#
# The script prints one JSON line per check ({"ok":..,"name":..}) and asks
# for the Operator's part with {"need":..} lines, answered on its stdin.
# Screenshots go to $TEST_ARTIFACTS_DIR (default t/artifacts/).
use strict;
use warnings;

use Test::More;
use File::Basename qw(dirname);
use File::Path qw(make_path);
use File::Spec;
use File::Temp qw(tempdir);
use IO::Handle;
use IO::Select;
use IPC::Open2 qw(open2);
use JSON::PP ();
use MIME::Base64 qw(encode_base64);
use POSIX qw(WNOHANG);

use KubeNova::Gateway qw(free_port json_true);
use KubeNova::Nginx;
use KubeNova::Pg qw(require_pg);

require_pg();

my $repo = File::Spec->rel2abs(dirname(__FILE__) . '/..');
my $JSON = JSON::PP->new->utf8->canonical;

my $modules = `$repo/scripts/dashboard-test-deps.sh`;
chomp $modules;
die "scripts/dashboard-test-deps.sh failed: no chromium, node or playwright-core\n"
    unless $? == 0 && -d "$modules/playwright-core";

my $artifacts = $ENV{TEST_ARTIFACTS_DIR} || "$repo/t/artifacts";
make_path($artifacts);
unlink glob "$artifacts/failed-*.png";       # the browser script's, of an older run

my $dir = tempdir(CLEANUP => 1);
open my $kf, '>', "$dir/secret.key" or die $!;
print $kf encode_base64(join('', map { chr int rand 256 } 1 .. 32), '');
close $kf;

# the console and the API on one origin, as conf/nginx.conf serves them
my $port = free_port();
my $gw = KubeNova::Gateway->start(http_config => <<"CONF");
kubenova_secret_key_file $dir/secret.key;
kubenova_app_watchers 1;
server {
    listen 127.0.0.1:$port;
    location /api/ { kubenova_api; }
    location / {
        root $repo/dashboard;
        include $repo/conf/kubenova-dashboard.conf;
    }
}
CONF
my $base = "http://127.0.0.1:$port/";
sub get { KubeNova::Nginx::http_request(port => $port, path => $_[0]) }

# --- served as static files, with a policy that keeps the page to itself

my $r = get('/');
is $r->{status}, 200, 'the console is served at /';
like $r->{headers}{'content-type'}, qr{^text/html}, '... as HTML';
like $r->{headers}{'content-security-policy'}, qr/script-src 'self'/,
    '... with a content security policy';
$r = get('/js/main.js');
like $r->{headers}{'content-type'}, qr{^application/javascript},
    'its modules as JavaScript';

# --- a cluster with its Operator, which has reported usage for the tenant
# the browser is about to create (reports are stored as clusters send them)

my $T = 'd80-acme';
$gw->create_cluster('d80-c1');
my $op = $gw->operator;
$op->open('s1', hello => { cluster => 'd80-c1',
                           operator_version => '0.9.0-d80',
                           kubernetes_version => 'v1.20.15' },
          heartbeat_every => 1);
ok $op->msg('s1', 'welcome', 10), 'the Operator is connected';

my $now = time;
my @windows = map { [$now - $_ * 86400 - 3600, $now - $_ * 86400] } 2, 1;
push @windows, [$now - 600, $now - 60];
my $seq = 0;
for my $w (@windows) {
    $seq++;
    $op->send('s1', { usage => {
        sequence => $seq, window_start_unix => $w->[0], window_end_unix => $w->[1],
        tenants => [{ tenant => $T, cpu_request_millicores => 1000 * $seq,
                      memory_request_bytes => 2 * 2**30,
                      storage_request_bytes => 10 * 2**30,
                      pods => 2 + $seq, namespaces => 1, applications => 1 }] } });
    my $ack = $op->msg('s1', 'usage_ack', 10);
    ok $ack && $ack->{msg}{sequence} == $seq, "usage report $seq acked";
}

# --- what the browser asks of the Operator

my %kubeconfig = (
    owner    => "apiVersion: v1\nkind: Config\n# d80 owner\n",
    readonly => "apiVersion: v1\nkind: Config\n# d80 readonly\n",
);

my %need = (
    # the application's status as its cluster reports it
    app_status => sub {
        my ($n) = @_;
        my $app = $gw->api_ok(GET => "tenants/$n->{tenant}/apps/$n->{app}")->{json};
        $op->send('s1', { app_status => {
            tenant => $n->{tenant}, app => $n->{app},
            generation => $app->{generation}, phase => $n->{phase},
            observed_generation => $app->{generation}, workflow_state => 'succeeded',
            services => [{ name => 'web', healthy => json_true, message => 'Ready:1/1' }] } });
        return { acked => $op->msg('s1', 'status_ack', 10) ? 1 : 0 };
    },
    # the tenant's kubeconfigs as its cluster issues them
    kubeconfigs => sub {
        my ($n) = @_;
        my $acked = 0;
        for my $role (qw(owner readonly)) {
            $op->send('s1', { kubeconfig => { tenant => $n->{tenant}, role => $role,
                              kubeconfig => encode_base64($kubeconfig{$role}, '') } });
            $acked++ if $op->msg('s1', 'kubeconfig_ack', 10);
        }
        return { acked => $acked, %kubeconfig };
    },
    # the cluster has removed the application: it acks the deletion
    ack_delete => sub {
        my ($n) = @_;
        my $name = "$n->{tenant}/$n->{app}";
        my $del = $op->take(sub {
            $_[0]{ev} eq 'msg' && $_[0]{type} eq 'delete'
                && $_[0]{msg}{name} eq $name }, 10)
            or return { acked => 0 };
        $op->send('s1', { ack => { kind => 'Application', name => $name,
                                   generation => $del->{msg}{generation},
                                   ok => json_true } });
        return { acked => 1 };
    },
);

# --- the browser

local $ENV{KN_URL} = $base;
local $ENV{KN_ADMIN_TOKEN} = $ENV{TEST_NGINX_ADMIN_TOKEN};
local $ENV{KN_NODE_MODULES} = $modules;
local $ENV{KN_ARTIFACTS} = $artifacts;
local $ENV{KN_USER_DATA} = "$dir/chromium";
my ($out, $in);
my $pid = open2($out, $in, 'node', "$repo/t/dashboard/080-dashboard.mjs");
$in->autoflush(1);
my $sel = IO::Select->new($out);
my ($buf, $finished) = ('', 0);
LINE: while (1) {
    # every step of the script has its own bound; this one only catches a
    # script that stopped talking altogether
    last unless $sel->can_read(180);
    my $n = sysread($out, my $chunk, 65536);
    last unless $n;
    $buf .= $chunk;
    while ($buf =~ s/^(.*)\n//) {
        my $line = $1;
        my $m = eval { $JSON->decode($line) };
        if (!$m) { diag "browser: $line"; next }
        if (exists $m->{ok}) {
            ok $m->{ok}, $m->{name};
            diag $m->{diag} if !$m->{ok} && defined $m->{diag};
        } elsif (my $h = $m->{need} && $need{$m->{need}}) {
            print {$in} $JSON->encode($h->($m)) . "\n";
        } elsif ($m->{need}) {
            print {$in} $JSON->encode({ error => "unknown need $m->{need}" }) . "\n";
        } elsif ($m->{finished}) {
            $finished = 1;
            last LINE;
        }
    }
}
ok $finished, 'the browser script ran to its end';
close $in;
for (1 .. 100) { last if waitpid($pid, WNOHANG) == $pid; select undef, undef, undef, 0.1 }
if (kill 0, $pid) { kill 'KILL', $pid; waitpid($pid, 0) }

# --- what the clicks did, seen through the API

my $plan = $gw->api(GET => 'plans/d80-gold')->{json};
is_deeply [@{$plan // {}}{qw(cpu memory pods price_monthly)}], ['4', '8Gi', 40, 2500],
    'the plan as typed';
my $tenant = $gw->api(GET => "tenants/$T")->{json};
is_deeply [$tenant->{plan}, $tenant->{placement}{clusters}], ['d80-gold', ['d80-c1']],
    'the tenant on its plan and cluster';
is $gw->api(GET => "tenants/$T/apps/d80-ro-attempt")->{status}, 404,
    "the readonly user's forced write left nothing";

is_deeply $gw->log_problems(0), [], 'no [alert] or [emerg]';
$op->quit;
$gw->stop;
done_testing;
