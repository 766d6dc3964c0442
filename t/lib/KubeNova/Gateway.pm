package KubeNova::Gateway;

# The Operator gateway tests (t/04*-gateway-*.t): one nginx with the
# gateway on a TLS port that accepts only client certificates of the
# test's kubenova_ca (mTLS, HTTP/2), the REST API on the test's HTTP/1.1
# port, a REST client, and Operators: t/lib/kubenova_grpc_client.py run as
# a subprocess (Debian's /usr/bin/python3, which has grpcio), driven with
# one JSON command per line and answering one JSON event per line.
#
#   my $gw = KubeNova::Gateway->start(workers => 2, master_process => 1,
#                                     heartbeat => '1s', body_timeout => '3s');
#   $gw->gw_port, $gw->ngx                     (a KubeNova::Nginx)
#   my $api = KubeNova::Gateway->start(api_only => 1, servroot => $dir);
#                                              # a second Manager on the
#                                              # same database: the REST
#                                              # API only, on a free port
#   my $r = $gw->api(POST => 'clusters', {name => 'c'});  # $r->{json} ...
#   my $id = $gw->create_cluster('c');         # registered through the API:
#                    # {cluster, key, cert, ca (files), certificate (PEM),
#                    #  not_after, join_token}
#   my $op = $gw->operator;                    # a python client
#   $op->open('s1', hello => {cluster => 'c'});   # presents the identity
#                                              # registered for 'c'
#   $op->open('s1', hello => {cluster => 'c'}, tls => $gw->tls($id));
#   $gw->pki                                   # {dir, ca => {key, cert}}
#   KubeNova::Gateway->start(pki => $gw->pki)  # the same CA (a restart)
#
#   The option tls => 1 of older callers is accepted: mTLS is the only
#   mode (the cluster secrets are retired).
#   my $w = $op->msg('s1', 'welcome');         # the event, or undef
#   $op->send('s1', {ack => {kind => ..., name => ..., generation => 3,
#                            ok => JSON::PP::true}});
#   my $end = $op->end('s1', 10);              # {code => 'ABORTED', ...}
#   my @updates = $op->msgs('s1', 'update', 2);   # all within 2 s
#
#   grpc_curl($port, $bytes) -> {status, headers (trailers too), body}
#     one request with curl --http2-prior-knowledge: bytes grpcio would
#     never send (truncated or malformed framing)
#
#   $gw->stream_worker($cluster, $offset)  pid of the worker that logged
#                                          the cluster's connection
#   $gw->log_problems($offset)    [alert]/[emerg] lines, but for the one
#                                 about a worker this test killed itself

use strict;
use warnings;

use Carp qw(croak);
use Exporter 'import';
use File::Basename qw(dirname);
use File::Spec;
use File::Temp qw(tempfile);
use IO::Handle;
use IO::Select;
use IO::Socket::INET;
use IPC::Open2 qw(open2);
use JSON::PP ();
use POSIX qw(WNOHANG);
use Time::HiRes qw(time sleep);

use File::Temp qw(tempdir);

use KubeNova::Nginx;
use KubeNova::Pg qw(conninfo);
use KubeNova::Pki;

our @EXPORT_OK = qw(grpc_curl grpc_frame free_port json_true json_false
                    wait_until kube_proxy_forward);

my $JSON = JSON::PP->new->utf8->canonical->allow_nonref;
my $Lib = File::Spec->rel2abs(dirname(__FILE__) . '/..');
my $Repo = File::Spec->rel2abs("$Lib/../..");

# the named location through which a kube proxy request reaches the worker
# or Manager node holding its cluster's stream (README, docs/adr/0005), as
# lines of configuration for a kube proxy server
sub kube_proxy_forward {
    return ('    location @kubenova_kube_proxy_forward {',
            '        proxy_pass $kubenova_kube_proxy_owner;',
            '        proxy_set_header X-KubeNova-Relayed 1;',
            '        proxy_http_version 1.1;',
            '        proxy_buffering off;',
            '        proxy_request_buffering off;',
            '        proxy_read_timeout 1h;',
            '    }');
}

sub json_true  { JSON::PP::true }
sub json_false { JSON::PP::false }

sub free_port {
    my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1:0')
        or die "no free port: $!";
    return $s->sockport;
}

# polls $cond every 50 ms until true or $timeout seconds passed
sub wait_until {
    my ($cond, $timeout) = @_;
    my $deadline = time + ($timeout // 10);
    while (1) {
        my $v = $cond->();
        return $v if $v;
        return undef if time > $deadline;
        sleep 0.05;
    }
}

# Options: workers (1), master_process (0), heartbeat ('10s'),
# body_timeout ('1h'), send_timeout ('1h'), max_message (undef: default),
# pool (4), worker_connections (256), log_level ('info'), gateway_extra,
# http_config (appended), config_extra (appended to the REST API's server);
# api_only (no gateway) with servroot (another
# directory than TEST_NGINX_SERVROOT's) and port (default: a free one).
sub start {
    my ($class, %o) = @_;
    my $ngx = KubeNova::Nginx->new(
        log_level => $o{log_level} // 'info',
        workers => $o{workers} // 1,
        master_process => $o{master_process} // 0,
        worker_connections => $o{worker_connections} // 256,
        (defined $o{servroot} ? (servroot => $o{servroot}) : ()),
        ($o{api_only} || defined $o{port}
            ? (port => $o{port} // free_port()) : ()),
    );
    my $gw_port = $o{api_only} ? undef : free_port();
    my $self = bless { ngx => $ngx, gw_port => $gw_port, opts => \%o,
                       timeout => 10 }, $class;
    $self->{pki} = $o{pki} // make_pki();
    $ngx->setup_servroot;
    $ngx->write_config($self->config_parts);
    $ngx->start;
    return $self;
}

sub config_parts {
    my ($self) = @_;
    my %o = %{ $self->{opts} };
    my $pool = $o{pool} // 4;
    my $gateway = join "\n",
        'kubenova_operator_gateway;',
        'kubenova_grpc_heartbeat ' . ($o{heartbeat} // '10s') . ';',
        (defined $o{max_message}
            ? "kubenova_grpc_max_message $o{max_message};" : ()),
        'client_max_body_size 0;',
        'client_body_timeout ' . ($o{body_timeout} // '1h') . ';',
        'send_timeout ' . ($o{send_timeout} // '1h') . ';',
        $o{gateway_extra} // '';
    my $api = join "\n",
        'location /api/ {',
        '    kubenova_api;',
        '    add_header X-Worker $pid always;',
        '}';
    my $pki = $self->{pki};
    my $pg = join "\n",
        qq{kubenova_postgres "} . conninfo() . qq{" pool=$pool;},
        "kubenova_admin_token_file $ENV{TEST_NGINX_ADMIN_TOKEN_FILE};",
        "kubenova_ca $pki->{ca}{cert} $pki->{ca}{key}"
            . (defined $o{cert_validity} ? " validity=$o{cert_validity}" : '')
            . ';',
        'kubenova_public_url http://127.0.0.1:' . $self->{ngx}->port . ';',
        ($self->{gw_port}
            ? "kubenova_gateway_url https://localhost:$self->{gw_port};" : ()),
        "kubenova_install_manifests $Repo/operator/deploy;",
        'kubenova_operator_image kubenova/operator:test;';
    my $listen = !$self->{gw_port} ? ''
        : join("\n",
            "    listen 127.0.0.1:$self->{gw_port} ssl http2;",
            "    ssl_certificate $pki->{server}{cert};",
            "    ssl_certificate_key $pki->{server}{key};",
            "    ssl_client_certificate $pki->{ca}{cert};",
            '    ssl_verify_client optional_no_ca;');
    return (http_config => join("\n", $pg, $o{http_config} // ''),
            config => $api)
        if $o{api_only};
    return (
        http_config => join("\n",
            $pg,
            'server {',
            $listen,
            '    location /kubenova.v1.OperatorGateway/ {',
            $gateway,
            '    }',
            '}',
            $o{http_config} // ''),
        config => join("\n",
            $api,
            # the gateway over HTTP/1.1: refused with 505
            'location /kubenova.v1.OperatorGateway/ {',
            '    kubenova_operator_gateway;',
            '}',
            $o{config_extra} // ''),
    );
}

sub ngx     { $_[0]{ngx} }
sub gw_port { $_[0]{gw_port} }
sub target  { "127.0.0.1:$_[0]{gw_port}" }

sub stop {
    my ($self) = @_;
    $self->{ngx}->stop;
}

# --- REST ---------------------------------------------------------------

# api(METHOD, PATH below /api/v1/, BODY (ref: JSON)) -> http_request's hash
# plus json
sub api {
    my ($self, $method, $path, $body) = @_;
    my %h = (Authorization => "Bearer $ENV{TEST_NGINX_ADMIN_TOKEN}");
    if (defined $body) {
        $body = $JSON->encode($body) if ref $body;
        $h{'Content-Type'} = 'application/json';
    }
    my $r = KubeNova::Nginx::http_request(
        port => $self->{ngx}->port, method => $method,
        path => $path =~ m{^/} ? $path : "/api/v1/$path",
        headers => \%h, body => $body, timeout => $self->{timeout});
    $r->{json} = eval { $JSON->decode($r->{body}) }
        if defined $r->{body} && length $r->{body};
    $r->{worker} = $r->{headers}{'x-worker'};
    return $r;
}

# an API call that must answer one of @ok (default: any 2xx); dies if not
sub api_ok {
    my ($self, $method, $path, $body, @ok) = @_;
    my $r = $self->api($method, $path, $body);
    my $st = $r->{status} // 0;
    my $good = @ok ? grep { $_ == $st } @ok : ($st >= 200 && $st < 300);
    croak "$method $path answered " . ($r->{status} // 'nothing') . ": "
        . ($r->{body} // $r->{error} // '') unless $good;
    return $r;
}

# a new cluster; returns its registered identity (register_cluster)
sub create_cluster {
    my ($self, $name, %extra) = @_;
    my $r = $self->api_ok(POST => 'clusters', { name => $name, %extra });
    return $self->register_cluster($name, join_token => $r->{json}{join_token});
}

# the test's CA, and the gateway's server certificate, in a directory that
# goes with the test
sub make_pki {
    my $dir = tempdir('kn-pki.XXXXXX', TMPDIR => 1, CLEANUP => 1);
    my $ca = KubeNova::Pki::make_ca($dir, 'kubenova-ca');
    return { dir => $dir, ca => $ca,
             server => KubeNova::Pki::server_cert($dir, $ca, 'gateway') };
}

sub pki { $_[0]{pki} }

# An Operator's registration, as the interface says: a key made here, a
# CSR with CN=<cluster>, POST /clusters/<name>/register with the join token
# (a new one from POST .../join-token unless given).  Returns {cluster,
# key, cert, ca (files), certificate (PEM), not_after, join_token}.
sub register_cluster {
    my ($self, $name, %o) = @_;
    my $token = $o{join_token}
        // $self->api_ok(POST => "clusters/$name/join-token")->{json}{join_token};
    my $dir = $self->{pki}{dir};
    my $base = $name . '-' . ++$self->{registrations};
    my $k = KubeNova::Pki::key_and_csr($dir, $base, "CN=$name");
    my $r = $self->register($name, { join_token => $token, csr => $k->{pem} });
    croak "register $name answered $r->{status}: " . ($r->{body} // '')
        unless ($r->{status} // 0) == 201;
    my $cert = "$dir/$base.crt";
    open my $fh, '>', $cert or croak "$cert: $!";
    print {$fh} $r->{json}{certificate};
    close $fh;
    return $self->{identities}{$name} = {
        cluster => $name, key => $k->{key}, cert => $cert,
        ca => $self->{pki}{ca}{cert}, certificate => $r->{json}{certificate},
        not_after => $r->{json}{not_after}, join_token => $token };
}

# POST /clusters/<name>/register without a bearer token
sub register {
    my ($self, $name, $body) = @_;
    my $r = KubeNova::Nginx::http_request(
        port => $self->{ngx}->port, method => 'POST',
        path => "/api/v1/clusters/$name/register",
        headers => { 'Content-Type' => 'application/json' },
        body => ref $body ? $JSON->encode($body) : $body,
        timeout => $self->{timeout});
    $r->{json} = eval { $JSON->decode($r->{body}) }
        if defined $r->{body} && length $r->{body};
    return $r;
}

# the "tls" option of an Operator's open for an identity (or {} for none)
sub tls {
    my ($self, $id) = @_;
    return { ca => $self->{pki}{ca}{cert},
             ($id ? (key => $id->{key}, cert => $id->{cert}) : ()) };
}

# a tenant placed on @clusters
sub create_tenant {
    my ($self, $name, @clusters) = @_;
    return $self->api_ok(POST => 'tenants',
                         { name => $name,
                           placement => { clusters => \@clusters } });
}

sub app_document {
    my ($name, $image) = @_;
    return {
        apiVersion => 'core.oam.dev/v1beta1', kind => 'Application',
        metadata => { name => $name },
        spec => { components => [{ name => 'web', type => 'webservice',
                                   properties => { image => $image
                                                   // 'nginx:1.25' } }] },
    };
}

sub create_app {
    my ($self, $tenant, $name, $image) = @_;
    return $self->api_ok(POST => "tenants/$tenant/apps",
                         app_document($name, $image));
}

# the desired generation of an object on a cluster (from the database)
sub desired_generation {
    my ($self, $cluster, $kind, $name) = @_;
    return KubeNova::Pg::psql(
        "SELECT generation FROM desired_state WHERE cluster = "
        . _q($cluster) . " AND kind = " . _q($kind)
        . " AND name = " . _q($name));
}

# what a cluster is supposed to hold: [{kind, name, generation}] of its live
# desired_state rows (the "applied" list of an Operator that is in sync)
sub in_sync_applied {
    my ($self, $cluster) = @_;
    my $rows = KubeNova::Pg::psql(
        "SELECT kind || E'\\t' || name || E'\\t' || generation "
        . "FROM desired_state WHERE cluster = " . _q($cluster)
        . " AND NOT deleted ORDER BY kind, name");
    return [map { my ($k, $n, $g) = split /\t/;
                  { kind => $k, name => $n, generation => $g + 0 } }
            grep { length } split /\n/, $rows];
}

sub _q { my $s = shift; $s =~ s/'/''/g; "'$s'" }

# --- error log ----------------------------------------------------------

# pid of the worker that logged 'cluster "<name>" connected' after $offset
# (the last such line), or undef
sub stream_worker {
    my ($self, $cluster, $offset, $timeout) = @_;
    my $pid;
    wait_until(sub {
        for my $line ($self->{ngx}->error_log_since($offset)) {
            $pid = $1 if $line =~ /\] (\d+)#\d+: .*kubenova: cluster "\Q$cluster\E" connected/;
        }
        $pid;
    }, $timeout // 5);
    return $pid;
}

# [alert]/[emerg] lines since $offset, but for "worker process N exited on
# signal 9" of the pids in @killed (killed by the test itself)
sub log_problems {
    my ($self, $offset, @killed) = @_;
    my %k = map { $_ => 1 } @killed;
    return [grep {
        /\[(?:alert|emerg)\]/
            && !(/worker process (\d+) exited on signal 9/ && $k{$1})
    } $self->{ngx}->error_log_since($offset // 0)];
}

# --- Operators ----------------------------------------------------------

# A stream opened without a "tls" option presents the identity
# create_cluster registered for its hello's cluster.
sub operator {
    my ($self) = @_;
    return KubeNova::Gateway::Operator->new($self->target, $self);
}

# the identity create_cluster/register_cluster last made for a cluster
sub identity { $_[0]{identities}{$_[1]} }

# --- raw gRPC with curl -------------------------------------------------

# the 5-byte gRPC framing around $payload (or a declared length)
sub grpc_frame {
    my ($payload, %o) = @_;
    my $len = $o{length} // length $payload;
    return pack('C N', $o{flag} // 0, $len) . $payload;
}

# one gRPC request with curl over h2c; %o: content_type, path, timeout
sub grpc_curl {
    my ($port, $bytes, %o) = @_;
    my ($bfh, $bfile) = tempfile('kn-grpc-req.XXXXXX', TMPDIR => 1,
                                 UNLINK => 1);
    binmode $bfh;
    print {$bfh} $bytes;
    close $bfh;
    my (undef, $hfile) = tempfile('kn-grpc-hdr.XXXXXX', TMPDIR => 1,
                                  UNLINK => 1);
    my (undef, $ofile) = tempfile('kn-grpc-out.XXXXXX', TMPDIR => 1,
                                  UNLINK => 1);
    # tls => {ca, key, cert} ($gw->tls($identity)): HTTP/2 over mTLS
    my $tls = $o{tls};
    my @cmd = ('curl', '-s',
               ($tls ? ('--http2', '--resolve', "localhost:$port:127.0.0.1",
                        '--cacert', $tls->{ca},
                        ($tls->{cert} ? ('--cert', $tls->{cert},
                                         '--key', $tls->{key}) : ()))
                     : '--http2-prior-knowledge'),
               '--max-time', $o{timeout} // 10,
               '-D', $hfile, '-o', $ofile,
               '-H', 'content-type: ' . ($o{content_type}
                                         // 'application/grpc'),
               '-H', 'te: trailers',
               '--data-binary', "\@$bfile",
               ($tls ? "https://localhost:$port" : "http://127.0.0.1:$port")
               . ($o{path} // '/kubenova.v1.OperatorGateway/Connect'));
    my $rc = system(@cmd);
    my %res = (curl_rc => $rc >> 8, headers => {});
    if (open my $h, '<', $hfile) {
        while (my $line = <$h>) {
            $line =~ s/\r?\n\z//;
            if ($line =~ m{^HTTP/\S+ (\d+)}) { $res{status} = $1; next }
            $res{headers}{lc $1} = $2 if $line =~ /^([^:\s]+):\s*(.*)$/;
        }
        close $h;
    }
    if (open my $b, '<', $ofile) {
        binmode $b;
        local $/;
        $res{body} = <$b> // '';
        close $b;
    }
    $res{json} = eval { $JSON->decode($res{body}) } if length($res{body} // '');
    $res{grpc_status} = $res{headers}{'grpc-status'};
    $res{grpc_message} = $res{headers}{'grpc-message'};
    return \%res;
}


package KubeNova::Gateway::Operator;

use strict;
use warnings;

use Carp qw(croak);
use IO::Select;
use IPC::Open2 qw(open2);
use POSIX qw(WNOHANG);
use Time::HiRes qw(time sleep);

my $PY = $ENV{KN_PYTHON} || '/usr/bin/python3';

sub new {
    my ($class, $target, $gw) = @_;
    my ($out, $in);
    my $pid = open2($out, $in, $PY, "$Lib/kubenova_grpc_client.py",
                    '--target', $target, '--proto', "$Repo/proto/kubenova.proto");
    $in->autoflush(1);
    my $self = bless { pid => $pid, out => $out, in => $in, buf => '',
                       pending => [], all => [], gw => $gw }, $class;
    my $ready = $self->take(sub { $_[0]{ev} eq 'ready' }, 20)
        or croak "the gRPC client did not start";
    return $self;
}

sub cmd {
    my ($self, %c) = @_;
    print { $self->{in} } $JSON->encode(\%c) . "\n";
}

# open a stream; %o: hello => {...}, heartbeat_every, auto_ack
sub open {
    my ($self, $id, %o) = @_;
    if ($self->{gw} && !exists $o{tls}) {
        my $cluster = $o{hello} ? $o{hello}{cluster} : undef;
        $o{tls} = $self->{gw}->tls(defined $cluster
                                   ? $self->{gw}->identity($cluster) : undef);
    }
    $self->cmd(op => 'open', id => $id, %o);
}

sub send {
    my ($self, $id, $msg, %o) = @_;
    $self->cmd(op => 'send', id => $id, msg => $msg, %o);
}

sub send_raw {
    my ($self, $id, $hex, %o) = @_;
    $self->cmd(op => 'send_raw', id => $id, hex => $hex, %o);
}

sub heartbeats { $_[0]->cmd(op => 'heartbeats', id => $_[1], every => $_[2]) }
sub close      { $_[0]->cmd(op => 'close', id => $_[1]) }
sub cancel     { $_[0]->cmd(op => 'cancel', id => $_[1]) }

sub _read {
    my ($self, $timeout) = @_;
    my $sel = IO::Select->new($self->{out});
    return 0 unless $sel->can_read($timeout > 0 ? $timeout : 0);
    my $n = sysread($self->{out}, my $chunk, 65536);
    return -1 unless $n;
    $self->{buf} .= $chunk;
    while ($self->{buf} =~ s/^(.*)\n//) {
        my $ev = eval { $JSON->decode($1) };
        $ev //= { ev => 'unparsable', line => $1 };
        push @{ $self->{pending} }, $ev;
        push @{ $self->{all} }, $ev;
        if ($ev->{ev} eq 'error') {
            Test::More::diag("gRPC client: $ev->{error}")
                if $INC{'Test/More.pm'};
        }
    }
    return 1;
}

# the first pending event matching $pred (removed from pending), reading
# for up to $timeout seconds; undef when none came
sub take {
    my ($self, $pred, $timeout) = @_;
    my $deadline = time + ($timeout // 10);
    while (1) {
        my $p = $self->{pending};
        for my $i (0 .. $#$p) {
            if ($pred->($p->[$i])) {
                return splice @$p, $i, 1;
            }
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

# the first event matching $pred on stream $id, or undef once the stream
# ended (its end event stays pending) or $timeout passed
sub _msg_or_end {
    my ($self, $id, $pred, $timeout) = @_;
    my $ev = $self->take(sub {
        ($_[0]{id} // '') eq $id
            && ($_[0]{ev} eq 'end' || ($_[0]{ev} eq 'msg' && $pred->($_[0])))
    }, $timeout);
    return $ev unless $ev && $ev->{ev} eq 'end';
    unshift @{ $self->{pending} }, $ev;
    return undef;
}

# the next ManagerMessage of $type on stream $id (its event), or undef
sub msg {
    my ($self, $id, $type, $timeout) = @_;
    return $self->_msg_or_end($id, sub { $_[0]{type} eq $type }, $timeout);
}

# the next message on $id that is not a heartbeat, or undef
sub next_msg {
    my ($self, $id, $timeout) = @_;
    return $self->_msg_or_end($id, sub { $_[0]{type} ne 'heartbeat' },
                              $timeout);
}

# every message of $type (any type but heartbeat when undef) on $id
# within $secs
sub msgs {
    my ($self, $id, $type, $secs) = @_;
    return $self->take_all(sub {
        $_[0]{ev} eq 'msg' && $_[0]{id} eq $id
            && (defined $type ? $_[0]{type} eq $type
                              : $_[0]{type} ne 'heartbeat')
    }, $secs);
}

# the end of stream $id (its event), or undef
sub end {
    my ($self, $id, $timeout) = @_;
    return $self->take(sub { $_[0]{ev} eq 'end' && $_[0]{id} eq $id },
                       $timeout);
}

# has stream $id ended (without waiting)?
sub ended {
    my ($self, $id) = @_;
    $self->_read(0) while $self->_read(0) > 0;
    return scalar grep { $_->{ev} eq 'end' && $_->{id} eq $id }
        @{ $self->{pending} };
}

# drop pending events of stream $id (heartbeats and the like)
sub forget {
    my ($self, $id) = @_;
    $self->_read(0) while $self->_read(0) > 0;
    $self->{pending} = [grep { !($_->{id} && $_->{id} eq $id
                                 && $_->{ev} eq 'msg') }
                        @{ $self->{pending} }];
}

sub quit {
    my ($self) = @_;
    return unless $self->{pid};
    eval { $self->cmd(op => 'quit') };
    CORE::close($self->{in});
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
