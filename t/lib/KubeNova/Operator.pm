package KubeNova::Operator;

# The C Operator (operator/, built with make) as a process of a test: its
# standard error (the log) goes to a file the test reads.
#
#   my $bin = KubeNova::Operator::build();   # make -C operator, once per
#                                            # test file; dies on failure
#   my $op = KubeNova::Operator->start(
#       manager_url => 'https://localhost:PORT', cluster => 'c',
#       identity => $gw->create_cluster('c'),   # a KubeNova::Gateway's
#                                            # identity registered through
#                                            # the API, written to an
#                                            # --identity-dir; manager_url
#                                            # 'https://localhost:PORT'
#       args => ['--heartbeat', '1s'],       # more flags
#       env => { KN_LOG_LEVEL => 'debug' });
#   my $line = $op->wait_log(qr/connected to the Manager/, 10, $offset);
#   my $off = $op->log_offset;               # for wait_log/log_since
#   my @lines = $op->log_since($off);
#   my $status = $op->stop;                  # SIGTERM, then its exit status
#                                            # (undef: had to be killed)
#   $op->sanitizer_reports                   # ASan/UBSan/LSan lines in the log
#
# KN_OPERATOR_SANITIZE=1 or KN_UNIT_SANITIZE=1 (make test-asan): the
# Operator is built with SANITIZE=1 (AddressSanitizer and UBSan).

use strict;
use warnings;

use Carp qw(croak);
use Fcntl qw(:flock O_WRONLY O_CREAT O_TRUNC);
use File::Basename qw(dirname);
use File::Path qw(make_path);
use File::Spec;
use File::Temp qw(tempdir);
use POSIX qw(WNOHANG);
use Time::HiRes qw(time sleep);

my $Repo = File::Spec->rel2abs(dirname(__FILE__) . '/../../..');
my $Built;

sub sanitize { $ENV{KN_OPERATOR_SANITIZE} || $ENV{KN_UNIT_SANITIZE} }

sub binary {
    return sanitize()
        ? "$Repo/operator/build/sanitize/kubenova-operator"
        : "$Repo/operator/build/kubenova-operator";
}

# make -C operator (serialised: tests may run in parallel)
sub build {
    return $Built if $Built;
    make_path("$Repo/operator/build");
    open my $lock, '>', "$Repo/operator/build/.make.lock"
        or croak "cannot open the build lock: $!";
    flock $lock, LOCK_EX or croak "cannot lock: $!";
    my @cmd = ('make', '-s', '-C', "$Repo/operator",
               (sanitize() ? ('SANITIZE=1') : ()));
    my $out = `@cmd 2>&1`;
    my $rc = $?;
    close $lock;
    croak "building the Operator failed:\n$out" if $rc != 0;
    croak "no Operator binary at " . binary() unless -x binary();
    return $Built = binary();
}

sub start {
    my ($class, %o) = @_;
    my $bin = build();
    my $dir = tempdir('kn-operator.XXXXXX', TMPDIR => 1, CLEANUP => 1);
    my $log = "$dir/operator.log";
    my @args;

    push @args, '--manager-url', $o{manager_url} if defined $o{manager_url};
    push @args, '--cluster', $o{cluster} if defined $o{cluster};
    push @args, identity_args($o{identity}, "$dir/identity",
                              defined $o{cluster}) if $o{identity};
    push @args, @{ $o{args} || [] };
    # the component bundles of the checkout (make install puts them in
    # the default directory)
    push @args, '--bundles-dir', "$Repo/operator/bundles"
        if grep({ $_ eq '--kubeconfig' } @args)
           && !grep({ $_ eq '--bundles-dir' } @args);

    my $pid = fork;
    croak "fork: $!" unless defined $pid;
    if ($pid == 0) {
        # not inherited from a harness that runs under another cluster
        delete $ENV{$_} for grep { /^KN_/ && !/^KN_(?:PG_SCRIPT|UNIT_SANITIZE|OPERATOR_SANITIZE)$/ } keys %ENV;
        delete $ENV{KUBERNETES_SERVICE_HOST};
        my %env = %{ $o{env} || {} };
        $ENV{$_} = $env{$_} for keys %env;
        $ENV{ASAN_OPTIONS} //= 'detect_leaks=1:abort_on_error=0';
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', $log;
        open STDERR, '>>', $log;
        exec $bin, @args or die "exec $bin: $!";
    }

    return bless { pid => $pid, log => $log, dir => $dir,
                   args => \@args }, $class;
}

# --identity-dir DIR holding a registered identity (KubeNova::Gateway's
# register_cluster: key and cert files), the CA that verifies the gateway,
# and the cluster's name unless given
sub identity_args {
    my ($id, $dir, $have_cluster) = @_;
    make_path($dir);
    chmod 0700, $dir;
    for (['tls.key', $id->{key}], ['tls.crt', $id->{cert}]) {
        my ($name, $from) = @$_;
        open my $in, '<', $from or croak "$from: $!";
        local $/;
        my $pem = <$in>;
        close $in;
        sysopen my $out, "$dir/$name", O_WRONLY | O_CREAT | O_TRUNC, 0600
            or croak "$dir/$name: $!";
        print {$out} $pem;
        close $out;
    }
    return ('--identity-dir', $dir,
            (defined $id->{ca} ? ('--manager-ca', $id->{ca}) : ()),
            ($have_cluster ? () : ('--cluster', $id->{cluster})));
}

sub pid  { $_[0]{pid} }
sub dir  { $_[0]{dir} }
sub log_file { $_[0]{log} }

sub log_offset { -s $_[0]{log} // 0 }

sub log_since {
    my ($self, $offset) = @_;
    open my $fh, '<', $self->{log} or return ();
    seek $fh, $offset // 0, 0;
    my @lines = <$fh>;
    close $fh;
    chomp @lines;
    return @lines;
}

sub log_text { join "\n", $_[0]->log_since(0) }

# the first line matching $re after $offset within $timeout seconds
sub wait_log {
    my ($self, $re, $timeout, $offset) = @_;
    my $deadline = time + ($timeout // 10);
    while (1) {
        for my $line ($self->log_since($offset // 0)) {
            return $line if $line =~ $re;
        }
        return undef if time > $deadline;
        sleep 0.05;
    }
}

# every line matching $re after $offset
sub grep_log {
    my ($self, $re, $offset) = @_;
    return grep { $_ =~ $re } $self->log_since($offset // 0);
}

sub alive {
    my ($self) = @_;
    return 0 unless $self->{pid};
    if (waitpid($self->{pid}, WNOHANG) == $self->{pid}) {
        $self->{status} = $?;
        delete $self->{pid};
        return 0;
    }
    return 1;
}

# the exit status once it exited by itself within $timeout, else undef
sub wait_exit {
    my ($self, $timeout) = @_;
    return $self->{status} unless $self->{pid};
    my $deadline = time + ($timeout // 10);
    while (time < $deadline) {
        if (waitpid($self->{pid}, WNOHANG) == $self->{pid}) {
            $self->{status} = $?;
            delete $self->{pid};
            return $self->{status};
        }
        sleep 0.05;
    }
    return undef;
}

# SIGTERM and wait: the raw wait status ($?), or undef when it had to be
# killed after $timeout seconds
sub stop {
    my ($self, $timeout) = @_;
    return $self->{status} unless $self->{pid};
    kill 'TERM', $self->{pid};
    my $st = $self->wait_exit($timeout // 10);
    return $st if defined $st;
    kill 'KILL', $self->{pid};
    waitpid($self->{pid}, 0);
    delete $self->{pid};
    return undef;
}

sub sanitizer_reports {
    my ($self) = @_;
    return grep { /AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|runtime error:/ }
           $self->log_since(0);
}

sub DESTROY {
    my ($self) = @_;
    return unless $self->{pid};
    kill 'KILL', $self->{pid};
    waitpid($self->{pid}, 0);
}

1;
