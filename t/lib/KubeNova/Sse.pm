package KubeNova::Sse;

# A client of the Manager's server-sent events (GET .../status?watch=1),
# for tests: HTTP/1.0 over a plain socket (no chunked framing), read only
# when asked, so a test can also leave it unread.
#
#   my $st = KubeNova::Sse->open($port, "tenants/t/apps/web/status?watch=1",
#                                $token);        # default: the admin's
#   my $e = $st->next(sub { $_[0]{event} eq 'status' }, 10);
#                        # {event, data (decoded JSON)}, or undef
#   $st->pump(2)         # read for up to 2 s; true once the server closed
#   $st->{status}, $st->{type}, $st->{pings}, $st->{closed}, $st->{buf}
#   $st->close

use strict;
use warnings;

use IO::Select;
use IO::Socket::INET;
use JSON::PP;
use Time::HiRes qw(time);

my $JSON = JSON::PP->new->utf8->canonical;

sub open {
    my ($class, $port, $path, $token) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port", Timeout => 5)
        or die "connect to $port: $!";
    print $s "GET /api/v1/$path HTTP/1.0\r\nHost: localhost\r\n"
        . "Authorization: Bearer " . ($token // $ENV{TEST_NGINX_ADMIN_TOKEN})
        . "\r\n\r\n";
    return bless { sock => $s, buf => '', events => [], pings => 0 }, $class;
}

# reads what comes within $timeout s (one read), parses complete events;
# true once the server closed the connection
sub pump {
    my ($self, $timeout) = @_;
    if (!$self->{closed}
        && IO::Select->new($self->{sock})->can_read($timeout))
    {
        my $n = sysread $self->{sock}, my $chunk, 65536;
        if ($n) { $self->{buf} .= $chunk } else { $self->{closed} = 1 }
    }
    if (!defined $self->{status} && $self->{buf} =~ s/\A(.*?)\r\n\r\n//s) {
        my $head = $1;
        ($self->{status}) = $head =~ m{^HTTP/1\.\d (\d+)};
        ($self->{type}) = $head =~ m{^Content-Type: ([^\r\n]+)}mi;
    }
    if (($self->{status} // 0) == 200) {
        while ($self->{buf} =~ s/\A(.*?)\n\n//s) {
            my $block = $1;
            if ($block eq ': ping') { $self->{pings}++; next }
            my ($ev) = $block =~ /^event: (\S+)$/m;
            my ($data) = $block =~ /^data: (.*)$/m;
            push @{ $self->{events} },
                 { event => $ev, data => eval { $JSON->decode($data) } };
        }
    }
    return $self->{closed};
}

# the answer's status line, waiting up to $timeout s for it
sub wait_status {
    my ($self, $timeout) = @_;
    my $deadline = time + $timeout;
    $self->pump(0.2)
        until defined $self->{status} || $self->{closed} || time > $deadline;
    return $self->{status};
}

# the first event not taken yet that satisfies $pred, within $timeout s
sub next {
    my ($self, $pred, $timeout) = @_;
    my $deadline = time + $timeout;
    while (1) {
        while (my $e = shift @{ $self->{events} }) {
            return $e if $pred->($e);
        }
        return undef if $self->{closed} || time > $deadline;
        $self->pump(0.2);
    }
}

sub close {
    my ($self) = @_;
    close $self->{sock} if $self->{sock};
    delete $self->{sock};
}

1;
