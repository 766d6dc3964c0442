# The Operator's gRPC client against python3-grpcio, the reference gRPC
# implementation, serving OperatorGateway (t/lib/kubenova_grpc_server.py):
# wire compatibility over TLS with a client certificate (mTLS, as the
# Manager's gateway requires; t/077 tests the identity itself), the hello's fields and its applied
# list on reconnect, acks, heartbeats at the configured interval,
# dead-peer detection, reconnect delays with full jitter that grow to the
# cap and start again after a stream that stayed up, the message size
# bound, and the refusal of anything that is not HTTP/2.
use strict;
use warnings;

use Test::More;
use File::Temp qw(tempdir);
use JSON::PP ();
use Time::HiRes qw(time sleep);

use KubeNova::GrpcServer;
use KubeNova::Operator;

my $bin = eval { KubeNova::Operator::build() };
ok $bin, 'make -C operator builds kubenova-operator' or BAIL_OUT($@);

# a CA and a certificate for localhost, made for this run
my $dir = tempdir('kn-t61.XXXXXX', TMPDIR => 1, CLEANUP => 1);
{
    my $q = "2>$dir/openssl.log";
    system("openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=t61-ca "
           . "-keyout $dir/ca.key -out $dir/ca.crt $q") == 0
    and system("openssl req -newkey rsa:2048 -nodes -subj /CN=localhost "
               . "-keyout $dir/srv.key -out $dir/srv.csr $q") == 0
    and do {
        open my $fh, '>', "$dir/ext.cnf" or die $!;
        print {$fh} "subjectAltName=DNS:localhost,IP:127.0.0.1\n";
        close $fh;
        1;
    }
    and system("openssl x509 -req -in $dir/srv.csr -CA $dir/ca.crt "
               . "-CAkey $dir/ca.key -CAcreateserial -days 1 "
               . "-extfile $dir/ext.cnf -out $dir/srv.crt $q") == 0
    and system("openssl req -x509 -newkey ec -pkeyopt "
               . "ec_paramgen_curve:P-256 -nodes -days 1 "
               . "-subj /CN=t61-kubenova-ca -keyout $dir/kn-ca.key "
               . "-out $dir/kn-ca.crt $q") == 0
    or BAIL_OUT('openssl could not make the test certificates');
}

# an Operator identity for a cluster, signed by the "kubenova CA"
sub identity {
    my ($cluster, %o) = @_;
    my $q = "2>>$dir/openssl.log";
    system("openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
           . "-subj /CN=$cluster -keyout $dir/$cluster.key "
           . "-out $dir/$cluster.csr $q") == 0
    and system("openssl x509 -req -in $dir/$cluster.csr -CA $dir/kn-ca.crt "
               . "-CAkey $dir/kn-ca.key -CAcreateserial -days 1 "
               . "-out $dir/$cluster.crt $q") == 0
    or BAIL_OUT("openssl could not make the identity of $cluster");
    return { cluster => $cluster, key => "$dir/$cluster.key",
             cert => "$dir/$cluster.crt",
             ca => exists $o{ca} ? $o{ca} : "$dir/ca.crt" };
}

my $srv = KubeNova::GrpcServer->new(tls_cert => "$dir/srv.crt",
                                    tls_key => "$dir/srv.key",
                                    client_ca => "$dir/kn-ca.crt",
                                    client_ca_key => "$dir/kn-ca.key");
ok $srv->port && $srv->tls_port && $srv->h1_port && $srv->h1s_port,
    'the grpcio server listens (h2c, TLS) next to two HTTP/1.1 servers';

my $false = JSON::PP::false;
my $true = JSON::PP::true;

$srv->cmd(op => 'mode', heartbeat_interval_ms => 1000,
          updates => [
              { kind => 'Tenant', name => 't61-t', generation => 3,
                payload => '{"plan":"small"}' },
              { kind => 'Application', name => 't61-t/a1', generation => 4,
                payload => '{"kind":"Application"}' },
              { kind => 'Widget', name => 'w', generation => 5,
                payload => '{}' }]);

my $op = KubeNova::Operator->start(
    manager_url => 'https://localhost:' . $srv->tls_port,
    identity => identity('t61-c'),
    args => ['--heartbeat', '1s', '--reconnect-min', '200ms',
             '--reconnect-max', '3200ms', '--max-message', '64k']);

# --- the hello, the acks -------------------------------------------------

my $c1 = $srv->event('connect', 10);
ok $c1, 'the Operator connects to grpcio over mTLS' or diag $op->log_text;
my $n = $c1 ? $c1->{n} : 0;
my $hello = $srv->msg($n, 'hello', 5);
ok $hello, 'its first message is a Hello';
is_deeply $hello && $hello->{msg},
    { cluster => 't61-c', cluster_secret => '',
      operator_version => '0.1.0', kubernetes_version => '',
      applied => [] },
    '... with the cluster, no secret (retired), the versions and nothing '
    . 'applied';

my @acks = map { $_->{msg} } grep { $_->{type} eq 'ack' }
           $srv->take_all(sub { $_[0]{ev} eq 'msg' && $_[0]{n} == $n
                                && $_[0]{type} eq 'ack' }, 1.5);
is_deeply [map { "$_->{kind} $_->{name} $_->{generation} "
                 . ($_->{ok} ? 'ok' : 'failed') } @acks],
    ['Tenant t61-t 3 ok', 'Application t61-t/a1 4 ok', 'Widget w 5 failed'],
    'every update is acked, in order, at its generation';
like $acks[2]{error} // '', qr/does not know the kind "Widget"/,
    '... the one it cannot apply with a clear error';

# --- heartbeats ---------------------------------------------------------

my @hb = $srv->take_all(sub { $_[0]{ev} eq 'msg' && $_[0]{n} == $n
                              && $_[0]{type} eq 'heartbeat' }, 9);
cmp_ok scalar(@hb), '>=', 7, scalar(@hb) . ' heartbeats in 9 s';
my @gaps = map { $hb[$_]{t} - $hb[$_ - 1]{t} } 1 .. $#hb;
is_deeply [grep { $_ < 0.8 || $_ > 1.25 } @gaps], [],
    'they arrive every second (--heartbeat 1s)'
    or diag "gaps: @gaps";
my @sent = map { $_->{msg}{sent_at_unix_ms} } @hb;
ok !grep({ $sent[$_] <= $sent[$_ - 1] } 1 .. $#sent)
   && abs($sent[-1] / 1000 - time) < 5,
    '... each with the time it was sent';
ok !$srv->take(sub { $_[0]{ev} eq 'end' }, 0), 'the stream stayed up';

# --- reconnects: full jitter, growing, capped, reset after a stable stream

# from now on every stream is ended as soon as its hello arrived
$srv->cmd(op => 'mode', updates => [],
          end_after_hello => { code => 'UNAVAILABLE', details => 't61 go away' });
my $off = $op->log_offset;
$srv->cmd(op => 'end', code => 'UNAVAILABLE', details => 't61 first');
like $op->wait_log(qr/stream to the Manager ended/, 5, $off) // '',
    qr/UNAVAILABLE \(grpc-status 14\): t61 first/,
    'the stream ends UNAVAILABLE: the Operator reads grpc-status and grpc-message';

my $next = $srv->event('connect', 5);
ok $next, 'it reconnects';
$hello = $next ? $srv->msg($next->{n}, 'hello', 5) : undef;
is_deeply [sort map { "$_->{kind} $_->{name} $_->{generation}" }
           @{ $hello ? $hello->{msg}{applied} : [] }],
    ['Application t61-t/a1 4', 'Tenant t61-t 3'],
    'the new hello lists what it applied (not what it could not)';

my @connects = ($next);
for (1 .. 7) {
    my $c = $srv->event('connect', 8) or last;
    push @connects, $c;
}
is scalar(@connects), 8, 'eight short streams in a row'
    or diag $op->log_text;

my @plan = map { /reconnecting in (\d+) ms \(attempt \d+, delay drawn from 0 to (\d+) ms\)/
                 ? [$1, $2] : () } $op->log_since($off);
@plan = @plan[0 .. 7] if @plan > 8;
is_deeply [map { $_->[1] } @plan],
    [200, 400, 800, 1600, 3200, 3200, 3200, 3200],
    'the delay bound starts at --reconnect-min after a stream that stayed '
    . 'up, doubles, and stops at --reconnect-max';
is_deeply [grep { $_->[0] > $_->[1] } @plan], [],
    'every delay is within its bound';
my %distinct = map { $_->[0] => 1 } @plan;
cmp_ok scalar(keys %distinct), '>=', 6, 'the delays are drawn at random (jitter)'
    or diag join ' ', map { $_->[0] } @plan;
my ($early, $late) = (0, 0);
$early += $plan[$_][0] for 0 .. 2;
$late += $plan[$_][0] for 4 .. 7;
cmp_ok $late, '>', $early, 'the delays grow (4 late ones outweigh 3 early ones)';

# the server's own clock: the gap between a stream's end and the next
# connect is the delay the Operator logged
my @ends = $srv->take_all(sub { $_[0]{ev} eq 'end' }, 0.5);
my %end_t = map { $_->{n} => $_->{t} } @ends;
my @bad;
for my $i (1 .. $#connects) {
    my $prev = $connects[$i - 1]{n};
    next unless defined $end_t{$prev} && $plan[$i];
    my $gap = ($connects[$i]{t} - $end_t{$prev}) * 1000;
    push @bad, sprintf("stream %d: waited %.0f ms, logged %d", $connects[$i]{n},
                       $gap, $plan[$i][0])
        if abs($gap - $plan[$i][0]) > 250;
}
is_deeply \@bad, [], 'the server sees the delays the Operator logged';

# --- a dead peer ----------------------------------------------------------

$srv->cmd(op => 'mode', end_after_hello => undef, send_heartbeats => $false);
my $c = $srv->connect_in_mode(8);
ok $c, 'a stream the server keeps open but never heartbeats on';
$off = $op->log_offset;
my $end = $c ? $srv->event('end', 8, $c->{n}) : undef;
ok $end, 'the Operator drops it';
my $lived = $end ? $end->{t} - $c->{t} : 0;
cmp_ok $lived, '>=', 2.8, sprintf 'after %.2f s of silence', $lived;
cmp_ok $lived, '<=', 4.5, '... 3 of the heartbeat intervals the Welcome named';
like $op->wait_log(qr/the peer is dead/, 2, $off) // '',
    qr/no message from the Manager for \d+ ms \(3 heartbeat intervals of 1000 ms\)/,
    '... saying why';

# --- the message size bound ----------------------------------------------

$srv->cmd(op => 'mode', send_heartbeats => $true);
$c = $srv->connect_in_mode(8);
ok $c && $srv->msg($c->{n}, 'hello', 5), 'it reconnects';
$srv->forget(sub { 1 });
$srv->cmd(op => 'send_big', size => 65000);
my $ack = $c ? $srv->msg($c->{n}, 'ack', 5) : undef;
ok $ack, 'a message just under --max-message 64k is taken (and acked)';
$off = $op->log_offset;
$srv->cmd(op => 'send_big', size => 70000);
like $op->wait_log(qr/stream to the Manager ended/, 5, $off) // '',
    qr/a message of 700\d\d bytes from the Manager is larger than the limit of 65536 bytes \(--max-message\): refused/,
    'a larger one is refused, with a clear error';
ok $c && $srv->event('end', 5, $c->{n}), '... and the stream dropped';
$c = $srv->event('connect', 8);
ok $c && $srv->msg($c->{n}, 'hello', 5), '... and it reconnects';

# --- SIGTERM ------------------------------------------------------------

$srv->forget(sub { 1 });
my $status = $op->stop(10);
is $status, 0, 'SIGTERM: exit 0';
ok $srv->event('half_close', 5), 'the Operator half-closed its stream first';
is_deeply [$op->sanitizer_reports], [], 'no sanitizer report';

# --- TLS ----------------------------------------------------------------

{
    my $tls = KubeNova::Operator->start(
        manager_url => 'https://localhost:' . $srv->tls_port,
        identity => identity('t61-tls'),
        args => ['--heartbeat', '1s']);
    my $tc = $srv->event('connect', 10);
    ok $tc && $srv->msg($tc->{n}, 'hello', 5),
        'over TLS with --manager-ca: ALPN h2, hello'
        or diag $tls->log_text;
    ok $tls->wait_log(qr/connected to the Manager as cluster "t61-tls" over HTTP\/2/, 5),
        '... welcomed';
    is $tls->stop(10), 0, '... and stopped cleanly';

    my $bad = KubeNova::Operator->start(
        manager_url => 'https://localhost:' . $srv->tls_port,
        identity => identity('t61-tls', ca => undef),
        args => ['--reconnect-min', '100ms', '--reconnect-max', '500ms']);
    like $bad->wait_log(qr/stream to the Manager ended/, 10) // '',
        qr/SSL certificate problem/,
        'without the CA the certificate is refused';
    ok $bad->wait_log(qr/connecting to .*\(attempt 3\)/, 5),
        '... and retried';
    is $bad->stop(10), 0, '... until SIGTERM';
}

# --- not HTTP/2 ---------------------------------------------------------

{
    $srv->forget(sub { 1 });
    # an identity cannot go over plain text: http:// is refused before any
    # connection
    my $h1 = KubeNova::Operator->start(
        manager_url => 'http://127.0.0.1:' . $srv->h1_port,
        identity => identity('t61-h1'));
    is $h1->wait_exit(10), 2 << 8, 'an http:// Manager URL: exit 2 at once';
    like $h1->log_text,
        qr/an identity \(client certificate\) needs an https:\/\/ Manager URL/,
        '... saying the identity needs https://';
    ok !$srv->event('h1_connect', 1), '... without connecting';

    my $h1s = KubeNova::Operator->start(
        manager_url => 'https://localhost:' . $srv->h1s_port,
        identity => identity('t61-h1s'),
        args => ['--reconnect-min', '200ms', '--reconnect-max', '1s']);
    like $h1s->wait_log(qr/stream to the Manager ended/, 10) // '',
        qr/the Manager at https:\/\/localhost:\d+ answered over HTTP\/1\.1: the gateway needs HTTP\/2, refusing to continue/,
        'an https:// server that negotiates HTTP/1.1: refused, naming the version';
    my @conns = ($srv->event('h1_connect', 1));
    for (1 .. 3) {
        my $e = $srv->event('h1_connect', 5) or last;
        push @conns, $e;
    }
    is scalar(grep { defined } @conns), 4, '... retried again and again';
    ok $h1s->wait_log(qr/delay drawn from 0 to 1000 ms/, 10), '... backing off';
    my @bounds = map { /delay drawn from 0 to (\d+) ms/ ? $1 : () }
                 $h1s->log_since(0);
    is_deeply [@bounds[0 .. 3]], [200, 400, 800, 1000],
        '... more and more, up to --reconnect-max';
    ok !$h1s->grep_log(qr/connected to the Manager/), '... never connected';
    is $h1s->stop(10), 0, '... until SIGTERM';
    is_deeply [map { $_->sanitizer_reports } $h1, $h1s], [],
        'no sanitizer report';
}

diag "the Operator's log:\n" . $op->log_text
    unless Test::More->builder->is_passing;
$srv->quit;
done_testing;
