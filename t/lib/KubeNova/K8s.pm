package KubeNova::K8s;

# A real Kubernetes control plane for a test file (t/k8s/control-plane.sh):
# etcd, kube-apiserver and kube-controller-manager on free loopback ports in
# a temporary directory, stopped when the object goes (or the test exits).
#
#   my $k8s = KubeNova::K8s->start;        # skips the file when impossible
#   $k8s->kubectl('create', 'ns', 'x');    # Debian's kubectl 1.20, admin
#   my $obj = $k8s->kubectl_json('get', 'cm', 'y', '-n', 'x');
#   $k8s->restart_apiserver;               # same port, fresh watch cache
#   my $kc = $k8s->operator_kubeconfig;    # operator/deploy/ applied; a
#                                          # kubeconfig of its ServiceAccount
#   $k8s->kubectl_as($kc, 'auth', 'can-i', 'list', 'secrets');
#   $k8s->{server}, $k8s->{kubeconfig}, $k8s->{ca}, $k8s->{dir}, $k8s->{kubectl}
#
# KN_KEEP_K8S=1 keeps the directory (logs) after the test.

use strict;
use warnings;

use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Path qw(remove_tree);
use File::Temp qw(tempdir);
use JSON::PP ();
use Test::More ();

my $repo = abs_path(dirname(__FILE__) . '/../../..');
my $script = "$repo/t/k8s/control-plane.sh";
my @running;

sub script { $script }

# Builds once (cached outside the checkout).  The file is skipped only when
# building is impossible here: not root (no apt-get) and nothing cached.
sub build {
    my ($class, $log) = @_;
    $log //= '/dev/null';
    return 1 if system("$script build >$log 2>&1") == 0;
    my $cache = $ENV{KN_K8S_CACHE} // '/var/cache/kubenova-k8s';
    if ($> != 0 && !-x "$cache/bin/kube-apiserver") {
        Test::More::plan(skip_all => "cannot build the Kubernetes control "
                         . "plane without root (run $script build as root)");
    }
    Test::More::BAIL_OUT("$script build failed: " . `tail -n 20 $log`);
}

sub start {
    my ($class, %opt) = @_;
    my $dir = $opt{dir} // tempdir('kn-k8s-XXXXXX', TMPDIR => 1);
    $class->build("$dir/build.log");
    my $out = `$script start $dir 2>&1`;
    if ($? != 0) {
        system("$script stop $dir >/dev/null 2>&1");
        Test::More::BAIL_OUT("control plane did not start: $out");
    }

    my %env;
    open my $fh, '<', "$dir/env" or die "$dir/env: $!";
    while (<$fh>) {
        chomp;
        $env{$1} = $2 if /^(\w+)=(.*)$/;
    }
    close $fh;

    my $self = bless {
        dir        => $dir,
        server     => $env{KN_K8S_SERVER},
        port       => $env{KN_K8S_PORT},
        kubeconfig => $env{KUBECONFIG},
        ca         => $env{KN_K8S_CA},
        admin_cert => $env{KN_K8S_ADMIN_CERT},
        admin_key  => $env{KN_K8S_ADMIN_KEY},
        kubectl    => $env{KN_KUBECTL},
        pid        => $$,
        cleanup    => !defined $opt{dir} && !$ENV{KN_KEEP_K8S},
    }, $class;
    push @running, $self;

    return $self;
}

# kubectl as the admin; returns its output (stdout and stderr), $? set
sub kubectl {
    my ($self, @args) = @_;
    return $self->kubectl_as($self->{kubeconfig}, @args);
}

# kubectl with another kubeconfig (another identity)
sub kubectl_as {
    my ($self, $kubeconfig, @args) = @_;
    my $cmd = join ' ', map { _quote($_) } $self->{kubectl},
        "--kubeconfig=$kubeconfig", @args;
    return scalar `$cmd 2>&1`;
}

# The Operator as it is deployed: operator/deploy/ (its namespace,
# ServiceAccount, least-privilege ClusterRole and binding) applied as the
# admin, and a kubeconfig file (the path) for that ServiceAccount.  Made
# once per control plane; dies when it cannot be.
sub operator_kubeconfig {
    my ($self) = @_;
    return $self->{operator_kubeconfig} if $self->{operator_kubeconfig};
    my $out = $self->kubectl('apply', '-f', "$repo/operator/deploy/");
    die "kubectl apply -f operator/deploy/ failed: $out" if $? != 0;
    return $self->{operator_kubeconfig} = $self->service_account_kubeconfig(
        'kubenova-system', 'kubenova-operator');
}

# A kubeconfig file for a ServiceAccount: a token from the TokenRequest API
# (kubectl 1.20 has no "create token": the admin POSTs the subresource),
# valid a day, far longer than a test.
sub service_account_kubeconfig {
    my ($self, $ns, $sa) = @_;
    my $req = "$self->{dir}/tokenrequest.json";
    open my $fh, '>', $req or die "$req: $!";
    print $fh JSON::PP::encode_json({
        apiVersion => 'authentication.k8s.io/v1', kind => 'TokenRequest',
        spec => { expirationSeconds => 86400 } });
    close $fh;
    my $out = $self->kubectl('create', '--raw',
        "/api/v1/namespaces/$ns/serviceaccounts/$sa/token", '-f', $req);
    my $token = $? == 0 && eval { JSON::PP::decode_json($out)->{status}{token} };
    die "TokenRequest for $ns/$sa failed: $out" unless $token;

    my $kc = "$self->{dir}/$ns-$sa.kubeconfig";
    open $fh, '>', $kc or die "$kc: $!";
    print $fh <<"KCFG";
apiVersion: v1
kind: Config
clusters:
- name: kubenova-test
  cluster:
    server: $self->{server}
    certificate-authority: $self->{ca}
users:
- name: $sa
  user:
    token: $token
contexts:
- name: $sa
  context: {cluster: kubenova-test, user: $sa, namespace: $ns}
current-context: $sa
KCFG
    close $fh;
    chmod 0600, $kc;
    return $kc;
}

sub kubectl_json {
    my ($self, @args) = @_;
    my $out = $self->kubectl(@args, '-o', 'json');
    return undef if $? != 0;
    return JSON::PP::decode_json($out);
}

# kubectl apply -f - of a Perl structure
sub apply {
    my ($self, $obj, @args) = @_;
    my $cmd = join ' ', map { _quote($_) } $self->{kubectl},
        "--kubeconfig=$self->{kubeconfig}", 'apply', '-f', '-', @args;
    open my $p, '|-', "$cmd >/dev/null 2>&1" or die "kubectl: $!";
    print $p JSON::PP::encode_json($obj);
    close $p;
    return $? == 0;
}

sub restart_apiserver {
    my ($self) = @_;
    my $out = `$script restart-apiserver $self->{dir} 2>&1`;
    return $? == 0 ? 1 : do { Test::More::diag($out); 0 };
}

sub stop {
    my ($self) = @_;
    return if $self->{stopped}++ || $self->{pid} != $$;
    system("$script stop $self->{dir} >/dev/null 2>&1");
    remove_tree($self->{dir}) if $self->{cleanup};
}

sub _quote {
    my ($s) = @_;
    return $s if $s =~ m{^[\w./:=,@%+-]+$};
    $s =~ s/'/'\\''/g;
    return "'$s'";
}

sub DESTROY { $_[0]->stop }

END { $_->stop for @running }

1;
