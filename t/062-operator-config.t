# The Operator's settings: flags, KN_* environment variables and a
# configuration file, in that order of precedence; every missing or
# invalid setting is refused with a clear message and exit status 2.
use strict;
use warnings;

use Test::More;
use File::Temp qw(tempdir);

use KubeNova::Operator;
use KubeNova::Pki;

my $bin = eval { KubeNova::Operator::build() };
ok $bin, 'make -C operator builds kubenova-operator' or BAIL_OUT($@);

my $dir = tempdir('kn-t62.XXXXXX', TMPDIR => 1, CLEANUP => 1);

sub write_file {
    my ($name, $text) = @_;
    open my $fh, '>', "$dir/$name" or die "$name: $!";
    print {$fh} $text;
    close $fh;
    return "$dir/$name";
}

# an identity directory per cluster name, signed by a CA of the test (the
# Operator reads it; nothing here connects anywhere)
my $ca = KubeNova::Pki::make_ca($dir, 't62-ca');
my %iddir;
for my $c (qw(t62-c t62-file t62-env t62-flag)) {
    my $csr = KubeNova::Pki::key_and_csr($dir, $c, "CN=$c");
    my $cert = KubeNova::Pki::sign_client($dir, $ca, $csr, $c);
    KubeNova::Operator::identity_args({ key => $csr->{key}, cert => $cert },
                                      $iddir{$c} = "$dir/id-$c", 1);
}

# runs the Operator to completion: (exit code, stdout and stderr)
sub run {
    my ($env, @args) = @_;
    my $pid = open my $fh, '-|';
    die "fork: $!" unless defined $pid;
    if ($pid == 0) {
        delete $ENV{$_} for grep { /^KN_/ } keys %ENV;
        delete $ENV{KUBERNETES_SERVICE_HOST};
        %ENV = (%ENV, %$env);
        open STDERR, '>&', \*STDOUT;
        exec $bin, @args or exit 127;
    }
    local $/;
    my $out = <$fh> // '';
    close $fh;
    return ($? >> 8, $out);
}

my @ok = ('--manager-url', 'https://127.0.0.1:1', '--cluster', 't62-c',
          '--identity-dir', $iddir{'t62-c'}, '--manager-ca', $ca->{cert});

my @refused = (
    [[], 'the Manager URL is missing: --manager-url or KN_MANAGER_URL'],
    [['--manager-url', 'ftp://m'], '--manager-url "ftp://m": must start with http:// or https://'],
    [['--manager-url', 'http://'], 'no host'],
    [['--manager-url', 'http://m'], 'the cluster name is missing: --cluster or KN_CLUSTER'],
    [['--manager-url', 'http://m', '--cluster', 'Bad_Name'], 'not a DNS label'],
    [['--manager-url', 'https://m', '--cluster', 'c'],
     'no identity: --identity-dir or --identity-secret (with --join-dir to register one)'],
    [['--manager-url', 'http://m', '--cluster', 't62-c', '--identity-dir', $iddir{'t62-c'}],
     'an identity (client certificate) needs an https:// Manager URL'],
    [[@ok, '--cluster-secret-file', "$dir/secret"],
     'unknown option "--cluster-secret-file"'],
    [[@ok, '--heartbeat', '10x'], '--heartbeat: "10x" is not a valid duration'],
    [[@ok, '--heartbeat', '50ms'], '--heartbeat: "50ms" is out of range (100ms to 3600000ms)'],
    [[@ok, '--max-message', '12q'], 'is not a valid size'],
    [[@ok, '--log-level', 'loud'], '"loud" is not one of error, warn, info, debug'],
    [[@ok, '--kube-qps', '0'], '--kube-qps: "0" is out of range (1 to 100000)'],
    [[@ok, '--kube-burst', 'lots'], '--kube-burst: "lots" is not a valid size'],
    [[@ok, '--reconnect-min', '2s', '--reconnect-max', '1s'], 'is larger than --reconnect-max'],
    [[@ok, '--manager-ca', "$dir/no-ca.pem"], '--manager-ca'],
    [[@ok, '--kubeconfig', "$dir/no-kubeconfig"], '--kubeconfig'],
    [[@ok, '--nonsense', '1'], 'unknown option "--nonsense"'],
    [[@ok, 'stray'], 'unexpected argument "stray"'],
    [[@ok, '--heartbeat'], '--heartbeat needs a value'],
    [[@ok, '--tenant-token-ttl', '5m'],
     '--tenant-token-ttl: "5m" is out of range (600000ms to'],
    [[@ok, '--tenant-token-ttl', '10m', '--tenant-token-renew-before', '10m'],
     '--tenant-token-renew-before (600000ms) must be less than '
     . '--tenant-token-ttl (600000ms)'],
    [[@ok, '--tenant-token-renew-before', '2h'],
     'must be less than --tenant-token-ttl (3600000ms)'],
    [[@ok, '--tenant-kubeconfig-server', 'ftp://k8s'],
     '--tenant-kubeconfig-server "ftp://k8s": must start with http:// or https://'],
    [[@ok, '--tenant-kubeconfig-server', 'https://'],
     '--tenant-kubeconfig-server "https://": no host'],
    [[@ok, '--tenant-kubeconfig-server', 'https://k8s /x'],
     '--tenant-kubeconfig-server: spaces and control characters'],
);

for my $case (@refused) {
    my ($args, $want) = @$case;
    my ($rc, $out) = run({}, @$args);
    is $rc, 2, "exit 2: @$args";
    like $out, qr/^kubenova-operator: .*\Q$want\E/m, "... $want";
}

my ($rc, $out) = run({ KN_HEARTBEAT => 'soon' }, @ok);
is $rc, 2, 'a bad KN_* variable: exit 2';
like $out, qr/KN_HEARTBEAT: "soon" is not a valid duration/, '... naming the variable';

my $bad_file = write_file('bad.conf', "# comment\nmanager-url = http://m\ncolour = blue\n");
($rc, $out) = run({}, '--config', $bad_file);
is $rc, 2, 'a bad configuration file: exit 2';
like $out, qr/\Q$bad_file\E:3: unknown setting "colour"/, '... naming file and line';

($rc, $out) = run({}, '--help');
is $rc, 0, '--help: exit 0';
like $out, qr/--manager-url\s+KN_MANAGER_URL/, '... listing flags and variables';
like $out, qr/--tenant-token-ttl\s+KN_TENANT_TOKEN_TTL/,
    '... the tenant kubeconfigs\' settings too';
($rc, $out) = run({}, '--version');
is $rc, 0, '--version: exit 0';
like $out, qr/^kubenova-operator 0\.1\.0 \(libcurl/, '... and the version';

# precedence: flags over the environment over the file

my $conf = write_file('ok.conf', join "\n",
    '# the Operator of cluster t62-file',
    'manager-url = https://127.0.0.1:1',
    'cluster = t62-file',
    "manager-ca = $ca->{cert}",
    'heartbeat = 2s',
    '');

my %runs = (
    file => [{ KN_CONFIG => $conf }, [], 't62-file'],
    env  => [{ KN_CONFIG => $conf, KN_CLUSTER => 't62-env' }, [], 't62-env'],
    flag => [{ KN_CONFIG => $conf, KN_CLUSTER => 't62-env' },
             ['--cluster', 't62-flag'], 't62-flag'],
    config_flag => [{}, ['--config', $conf, '--heartbeat', '3s'], 't62-file'],
);

for my $name (sort keys %runs) {
    my ($env, $args, $cluster) = @{ $runs{$name} };
    # the identity of the cluster the settings name (not what is tested)
    my $op = KubeNova::Operator->start(
        env => $env, args => [@$args, '--identity-dir', $iddir{$cluster}]);
    my $line = $op->wait_log(qr/starting: /, 5) // '';
    like $line, qr/cluster "$cluster", Manager https:\/\/127\.0\.0\.1:1, heartbeat \d+ ms/,
        "$name: cluster $cluster";
    if ($name eq 'config_flag') {
        like $line, qr/heartbeat 3000 ms/, '... a flag over the file (3s)';
    }
    elsif ($name eq 'file') {
        like $line, qr/heartbeat 2000 ms/, '... the file\'s heartbeat (2s)';
    }
    ok $op->wait_log(qr/grpc: connecting to https:\/\/127\.0\.0\.1:1 as cluster "$cluster"/, 5),
        '... it starts connecting';
    is $op->stop(10), 0, '... and SIGTERM ends it with 0 (nothing to close)';
}

done_testing;
