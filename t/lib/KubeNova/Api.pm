package KubeNova::Api;

# A small client for the REST API tests (t/03*-api-*.t) on top of
# KubeNova::Nginx: one nginx with the API, and requests that speak JSON.
#
#   my $api = KubeNova::Api->start(signup => 1);    # nginx with /api/
#   my $r = $api->call(POST => 'tenants', body => {name => 't30-x'});
#   $r->{status}, $r->{headers}{etag}, $r->{json}{name}, $r->{body}
#
# call(METHOD, PATH, %opt): PATH is below /api/v1/ unless it starts with
# "/".  Options:
#   body    => hashref/arrayref (sent as JSON, Content-Type
#              application/json) or a string (sent as it is)
#   type    => Content-Type (overrides; undef: no Content-Type at all)
#   token   => bearer token (default: the bootstrap admin's); undef: no
#              Authorization header
#   auth    => the whole Authorization value (e.g. "Basic abc")
#   headers => more headers, hashref
#   port    => another port (a second server block)
# The answer is KubeNova::Nginx's http_request hash plus "json" (the
# decoded body, undef when it is not JSON).
#
# start_request(METHOD, PATH, %opt) sends the same request on a connection
# of its own and returns the socket unread; finish($sock) reads the answer.
#
# error_summary($r): "<status> <code>" of an error answer, or a string
# saying what is wrong with its shape.

use strict;
use warnings;

use Exporter 'import';
use JSON::PP ();
use IO::Select;
use IO::Socket::INET;

use KubeNova::Nginx;
use KubeNova::Pg qw(conninfo);

our @EXPORT_OK = qw(admin_token json_encode json_decode free_port);

my $JSON = JSON::PP->new->utf8->canonical;

sub admin_token { $ENV{TEST_NGINX_ADMIN_TOKEN} }
sub json_encode { $JSON->encode($_[0]) }
sub json_decode { my $v = eval { $JSON->decode($_[0]) }; $v }

sub free_port {
    my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1:0')
        or die "no free port: $!";
    return $s->sockport;
}

# Options: signup (0/1), max_body ("4k"), pool (4), workers, master_process,
# log_level, http_config / config (appended), no_start.
sub start {
    my ($class, %o) = @_;
    my $ngx = KubeNova::Nginx->new(
        log_level => $o{log_level} // 'info',
        (exists $o{workers} ? (workers => $o{workers}) : ()),
        (exists $o{master_process}
            ? (master_process => $o{master_process}) : ()),
    );
    $ngx->setup_servroot;
    my $pool = $o{pool} // 4;
    $ngx->write_config(
        http_config => join("\n",
            qq{kubenova_postgres "} . conninfo() . qq{" pool=$pool;},
            "kubenova_admin_token_file $ENV{TEST_NGINX_ADMIN_TOKEN_FILE};",
            $o{http_config} // ''),
        config => join("\n",
            'location /api/ {',
            '    kubenova_api;',
            ($o{signup} ? '    kubenova_signup on;' : ()),
            ($o{max_body} ? "    kubenova_api_max_body $o{max_body};" : ()),
            '}',
            'location = /readyz { kubenova_readyz; }',
            $o{config} // ''),
    );
    $ngx->start unless $o{no_start};
    return bless { ngx => $ngx, timeout => $o{timeout} // 10 }, $class;
}

sub ngx { $_[0]{ngx} }

sub path_of {
    my ($path) = @_;
    return $path if $path =~ m{^/};
    return "/api/v1/$path";
}

# the request as http_request wants it
sub request_args {
    my ($self, $method, $path, %o) = @_;
    my %h;
    if (exists $o{auth}) {
        $h{Authorization} = $o{auth} if defined $o{auth};
    } else {
        my $token = exists $o{token} ? $o{token} : admin_token();
        $h{Authorization} = "Bearer $token" if defined $token;
    }
    my $body = $o{body};
    if (ref $body) {
        $body = $JSON->encode($body);
        $h{'Content-Type'} = 'application/json';
    }
    if (exists $o{type}) {
        delete $h{'Content-Type'};
        $h{'Content-Type'} = $o{type} if defined $o{type};
    }
    %h = (%h, %{ $o{headers} || {} });
    return (
        method => $method, path => path_of($path), headers => \%h,
        body => $body, port => $o{port} // $self->{ngx}->port,
        host => '127.0.0.1', timeout => $o{timeout} // $self->{timeout},
    );
}

sub call {
    my ($self, $method, $path, %o) = @_;
    my $r = KubeNova::Nginx::http_request(
        $self->request_args($method, $path, %o));
    $r->{json} = defined $r->{body} && length $r->{body}
        ? json_decode($r->{body}) : undef;
    return $r;
}

# The same request, sent on a connection of its own and left unread: for
# requests that must be in flight together (see 033-api-consistency.t).
# finish() reads the answer (until the server closes; Connection: close).
sub start_request {
    my ($self, $method, $path, %o) = @_;
    my %a = $self->request_args($method, $path, %o);
    my $req = "$a{method} $a{path} HTTP/1.1\r\nHost: localhost\r\n"
            . "Connection: close\r\n";
    $req .= "$_: $a{headers}{$_}\r\n" for sort keys %{ $a{headers} };
    $req .= "Content-Length: " . length($a{body}) . "\r\n" if defined $a{body};
    $req .= "\r\n" . ($a{body} // '');
    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                     PeerPort => $a{port}, Proto => 'tcp')
        or die "cannot connect to port $a{port}: $!";
    $sock->autoflush(1);
    print {$sock} $req;
    return $sock;
}

sub finish {
    my ($self, $sock, $timeout) = @_;
    my $sel = IO::Select->new($sock);
    my $raw = '';
    while ($sel->can_read($timeout // $self->{timeout})) {
        my $n = sysread $sock, my $buf, 65536;
        last unless $n;
        $raw .= $buf;
    }
    close $sock;
    my ($r) = KubeNova::Nginx::parse_http_response($raw);
    $r //= { headers => {}, raw => $raw };
    $r->{error} = 'empty response' if $raw eq '';
    $r->{json} = defined $r->{body} && length $r->{body}
        ? json_decode($r->{body}) : undef;
    return $r;
}

sub get    { my $s = shift; $s->call(GET    => @_) }
sub post   { my $s = shift; $s->call(POST   => @_) }
sub put    { my $s = shift; $s->call(PUT    => @_) }
sub patch  { my $s = shift; $s->call(PATCH  => @_) }
sub del    { my $s = shift; $s->call(DELETE => @_) }

# Every page of a list, following "continue"; returns (\@items, $pages) or
# dies on a non-200 page.
sub list_all {
    my ($self, $path, %o) = @_;
    my $limit = delete $o{limit} // 100;
    my ($cont, @items, $pages);
    while (1) {
        my $q = "$path?limit=$limit"
              . (defined $cont ? "&continue=$cont" : '');
        my $r = $self->get($q, %o);
        die "GET $q: $r->{status} $r->{body}" unless ($r->{status} // 0) == 200;
        $pages++;
        push @items, @{ $r->{json}{items} };
        $cont = $r->{json}{continue};
        last unless defined $cont;
        die "more than 1000 pages" if $pages > 1000;
    }
    return (\@items, $pages);
}

# "<status> <code>" when $r carries a well-formed error answer whose status
# matches the HTTP status, else what is wrong.
sub error_summary {
    my ($r) = @_;
    my $j = $r->{json};
    return "not JSON: " . ($r->{body} // '(no body)') unless ref $j eq 'HASH';
    my $e = $j->{error};
    return "no error object: $r->{body}" unless ref $e eq 'HASH';
    return "error.status $e->{status} differs from HTTP $r->{status}"
        unless defined $e->{status} && defined $r->{status}
               && $e->{status} eq $r->{status};
    return "no error.message: $r->{body}"
        unless defined $e->{message} && !ref $e->{message}
               && length $e->{message};
    return "$r->{status} " . ($e->{code} // '(no code)');
}

# "field: message" of each detail, sorted, as one string per line.
sub error_details {
    my ($r) = @_;
    my $d = ref $r->{json} eq 'HASH' && ref $r->{json}{error} eq 'HASH'
        ? $r->{json}{error}{details} : undef;
    return undef unless ref $d eq 'ARRAY';
    return [map { "$_->{field}: $_->{message}" } @$d];
}

sub error_fields {
    my ($r) = @_;
    my $d = error_details($r) or return undef;
    return [sort map { (split /: /, $_, 2)[0] } @$d];
}

1;
