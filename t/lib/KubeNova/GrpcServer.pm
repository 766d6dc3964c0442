package KubeNova::GrpcServer;

# A Manager stand-in for the Operator tests: t/lib/kubenova_grpc_server.py
# (python3-grpcio serving OperatorGateway, plus HTTP/1.1-only servers) run
# as a subprocess, driven with one JSON command per line and answering one
# JSON event per line (see the script for both).
#
#   my $s = KubeNova::GrpcServer->new(tls_cert => $crt, tls_key => $key);
#   (with client_ca => $ca, client_ca_key => $cakey: mTLS on tls_port and
#   the registration endpoint on reg_port)
#   $s->port, $s->tls_port, $s->h1_port, $s->h1s_port
#   $s->cmd(op => 'mode', send_heartbeats => JSON::PP::false);
#   my $ev = $s->take(sub { $_[0]{ev} eq 'connect' }, 10);   # or undef
#   my @evs = $s->take_all(sub { ... }, 2.5);     # all within 2.5 s
#   my $hello = $s->msg($n, 'hello', 10);         # message event of stream n
#   my $c = $s->connect_in_mode(10);    # a stream begun under the last mode
#   $s->quit;

use strict;
use warnings;

use Carp qw(croak);
use File::Basename qw(dirname);
use File::Spec;
use IO::Handle;
use IO::Select;
use IPC::Open2 qw(open2);
use JSON::PP ();
use POSIX qw(WNOHANG);
use Time::HiRes qw(time sleep);

my $JSON = JSON::PP->new->utf8->canonical->allow_nonref;
my $Lib = File::Spec->rel2abs(dirname(__FILE__) . '/..');
my $Repo = File::Spec->rel2abs("$Lib/../..");
my $PY = $ENV{KN_PYTHON} || '/usr/bin/python3';

sub new {
    my ($class, %o) = @_;
    my @args = ("$Lib/kubenova_grpc_server.py",
                '--proto', "$Repo/proto/kubenova.proto");
    push @args, '--tls-cert', $o{tls_cert}, '--tls-key', $o{tls_key}
        if $o{tls_cert};
    push @args, '--client-ca', $o{client_ca}, '--client-ca-key',
        $o{client_ca_key} if $o{client_ca};
    my ($out, $in);
    # grpc core's own log (failed TLS handshakes the tests cause) is noise
    local $ENV{GRPC_VERBOSITY} = 'NONE';
    my $pid = open2($out, $in, $PY, @args);
    $in->autoflush(1);
    my $self = bless { pid => $pid, out => $out, in => $in, buf => '',
                       pending => [] }, $class;
    $self->{ready} = $self->take(sub { $_[0]{ev} eq 'ready' }, 30)
        or croak "the gRPC server did not start";
    return $self;
}

sub port     { $_[0]{ready}{port} }
sub tls_port { $_[0]{ready}{tls_port} }
sub h1_port  { $_[0]{ready}{h1_port} }
sub h1s_port { $_[0]{ready}{h1s_port} }
sub reg_port { $_[0]{ready}{reg_port} }

sub cmd {
    my ($self, %c) = @_;
    $self->{mode_seq}++ if $c{op} eq 'mode';
    print { $self->{in} } $JSON->encode(\%c) . "\n";
}

# the next stream that began under the latest mode command
sub connect_in_mode {
    my ($self, $timeout) = @_;
    my $seq = $self->{mode_seq} // 0;
    return $self->take(sub {
        $_[0]{ev} eq 'connect' && ($_[0]{mode_seq} // 0) >= $seq
    }, $timeout);
}

sub _read {
    my ($self, $timeout) = @_;
    my $sel = IO::Select->new($self->{out});
    return 0 unless $sel->can_read($timeout > 0 ? $timeout : 0);
    my $n = sysread($self->{out}, my $chunk, 65536);
    return -1 unless $n;
    $self->{buf} .= $chunk;
    while ($self->{buf} =~ s/^(.*)\n//) {
        my $ev = eval { $JSON->decode($1) } // { ev => 'unparsable',
                                                 line => $1 };
        Test::More::diag("gRPC server: $ev->{error}")
            if $ev->{ev} eq 'error' && $INC{'Test/More.pm'};
        push @{ $self->{pending} }, $ev;
    }
    return 1;
}

# the first pending event matching $pred (removed), waiting up to $timeout
sub take {
    my ($self, $pred, $timeout) = @_;
    my $deadline = time + ($timeout // 10);
    while (1) {
        my $p = $self->{pending};
        for my $i (0 .. $#$p) {
            return splice @$p, $i, 1 if $pred->($p->[$i]);
        }
        my $left = $deadline - time;
        return undef if $left <= 0;
        return undef if $self->_read($left) < 0;
    }
}

# every event matching $pred that arrives within $secs (removed)
sub take_all {
    my ($self, $pred, $secs) = @_;
    my $deadline = time + $secs;
    while ((my $left = $deadline - time) > 0) {
        last if $self->_read($left) < 0;
    }
    my (@got, @keep);
    for my $ev (@{ $self->{pending} }) {
        if ($pred->($ev)) { push @got, $ev } else { push @keep, $ev }
    }
    $self->{pending} = \@keep;
    return @got;
}

# the next message of $type on stream $n
sub msg {
    my ($self, $n, $type, $timeout) = @_;
    return $self->take(sub {
        $_[0]{ev} eq 'msg' && $_[0]{n} == $n && $_[0]{type} eq $type
    }, $timeout);
}

# the next event $ev (connect, end, half_close) of any stream, or of $n
sub event {
    my ($self, $ev, $timeout, $n) = @_;
    return $self->take(sub {
        $_[0]{ev} eq $ev && (!defined $n || $_[0]{n} == $n)
    }, $timeout);
}

# drop pending events matching $pred
sub forget {
    my ($self, $pred) = @_;
    $self->_read(0) while $self->_read(0) > 0;
    $self->{pending} = [grep { !$pred->($_) } @{ $self->{pending} }];
}

sub quit {
    my ($self) = @_;
    return unless $self->{pid};
    eval { $self->cmd(op => 'quit') };
    close $self->{in};
    my $deadline = time + 10;
    while (time < $deadline) {
        last if waitpid($self->{pid}, WNOHANG) == $self->{pid};
        sleep 0.05;
    }
    if (kill 0, $self->{pid}) {
        kill 'KILL', $self->{pid};
        waitpid($self->{pid}, 0);
    }
    delete $self->{pid};
}

sub DESTROY { $_[0]->quit }

1;
