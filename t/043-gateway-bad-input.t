# Operator gateway, bad input: gRPC framing cut short (INTERNAL, 13),
# messages over kubenova_grpc_max_message (RESOURCE_EXHAUSTED, 8), bytes
# that are no OperatorMessage (INVALID_ARGUMENT, 3), compressed or
# malformed frames, unknown protobuf fields and messages (accepted: the
# protocol grows by adding them), a wrong content type (415) and HTTP/1.1
# (505), both answered in JSON.  Framing grpcio would never produce is sent
# with curl --http2-prior-knowledge; every bad stream ends alone and the
# gateway goes on serving.
use strict;
use warnings;

use Test::More;

use KubeNova::Gateway qw(grpc_curl grpc_frame wait_until json_true);
use KubeNova::Pg qw(require_pg psql);

require_pg();

my $max = 65536;
my $gw = KubeNova::Gateway->start(tls => 1, heartbeat => '10s',
                                  max_message => '64k');
my $port = $gw->gw_port;

my $C = 'gw43-c';
my $T = 'gw43-t';
my $identity = $gw->create_cluster($C);
my $tls = $gw->tls($identity);     # mTLS with the cluster's certificate
$gw->create_tenant($T, $C);

sub grpc_curl_tls {
    my ($bytes, %o) = @_;
    return grpc_curl($port, $bytes, tls => $tls, %o);
}

# --- a little protobuf, by hand -----------------------------------------

sub varint {
    my ($v) = @_;
    my $out = '';
    while ($v >= 0x80) { $out .= chr(($v & 0x7f) | 0x80); $v >>= 7 }
    return $out . chr($v);
}
sub tag   { varint(($_[0] << 3) | $_[1]) }
sub f_int { tag($_[0], 0) . varint($_[1]) }
sub f_len { tag($_[0], 2) . varint(length $_[1]) . $_[1] }

# OperatorMessage{hello}, OperatorMessage{heartbeat}
sub hello_bytes {
    my (%o) = @_;
    my $h = f_len(1, $o{cluster} // $C)
          . (defined $o{secret} ? f_len(2, $o{secret}) : '')
          . ($o{extra_inner} // '');
    return f_len(1, $h) . ($o{extra_outer} // '');
}
my $heartbeat = f_len(2, f_int(1, 1700000000000));

# --- truncated framing (curl) ---------------------------------------------

{
    my $r = grpc_curl_tls(grpc_frame('x' x 10, length => 100));
    is $r->{status}, 200, 'truncated message: the response started (200)';
    is $r->{grpc_status}, 13, '... and ends with grpc-status 13 (INTERNAL)';
    is $r->{grpc_message}, 'the stream ended inside a message', '... saying so';

    $r = grpc_curl_tls("\0\0\0");
    is $r->{grpc_status}, 13, 'a frame header cut short: 13';

    $r = grpc_curl_tls(grpc_frame(hello_bytes()) . "\0\0\0\0\x40abc");
    is $r->{grpc_status}, 13,
        'a good hello, then a message cut short: 13 all the same';

    $r = grpc_curl_tls('');
    is $r->{grpc_status}, 0, 'an empty stream: 0, nothing to say';
}

# --- oversized ----------------------------------------------------------

{
    my $r = grpc_curl_tls(grpc_frame('abc', length => 16 * 2**20));
    is $r->{grpc_status}, 8,
        'a frame header announcing 16 MiB: 8 (RESOURCE_EXHAUSTED) at once';
    is $r->{grpc_message},
        "message of 16777216 bytes exceeds the limit of $max bytes",
        "... saying how big and what the limit is";
}

# (curl is kept to requests whose body is whole before the answer: nginx
# answers a request early with RST_STREAM NO_ERROR after the response,
# which this curl takes for an error, sometimes dropping the response)

my $op = $gw->operator;
{
    my $exact = f_len(15, "y" x ($max - 4));
    is length $exact, $max, "(a message of exactly $max bytes)";
    $op->open('exact', tls => $tls);
    $op->send_raw('exact', unpack 'H*', $exact);
    my $end = $op->end('exact', 10);
    is $end->{code}, 'FAILED_PRECONDITION',
        "exactly $max bytes is allowed (then: not a hello, 9)";

    $op->open('over', tls => $tls);
    $op->send_raw('over', unpack 'H*', $exact . 'z');
    $end = $op->end('over', 10);
    is $end->{code}, 'RESOURCE_EXHAUSTED',
        'one byte over kubenova_grpc_max_message: RESOURCE_EXHAUSTED';
    is $end->{details},
        "message of @{[ $max + 1 ]} bytes exceeds the limit of $max bytes",
        '... saying so';
}

{
    # grpcio sends a large message in many DATA frames
    $op->open('big', hello => { cluster => $C });
    ok $op->msg('big', 'welcome', 10), 'a stream';
    $op->send_raw('big', unpack('H*', $heartbeat), repeat => 10000);
    my $end = $op->end('big', 10);
    is $end->{code}, 'RESOURCE_EXHAUSTED',
        'a 130 kB message from grpcio: RESOURCE_EXHAUSTED';

    # a hello just under the limit, in several DATA frames: fine
    my @applied = map { { kind => 'Application', name => sprintf("$T/app-%05d", $_),
                          generation => 1 } } 1 .. 1000;
    $op->open('bighello', hello => { cluster => $C,
                                     applied => \@applied });
    my $w = $op->msg('bighello', 'welcome', 20);
    is $w && $w->{msg}{deletes}, 1000,
        'a 40 kB hello listing 1000 objects: 1000 deletions';
    my @d = $op->msgs('bighello', 'delete', 2);
    is scalar @d, 1000, '... all sent';
    $op->cancel('bighello');
    $op->end('bighello', 10);
}

# --- garbage and malformed frames ---------------------------------------

{
    my $r = grpc_curl_tls(grpc_frame("\xff\xff\xff\xff\xff"));
    is $r->{grpc_status}, 3, 'garbage bytes as the first message: 3';
    is $r->{grpc_message}, 'cannot decode an OperatorMessage', '... saying so';

    $op->open('garbage', hello => { cluster => $C });
    ok $op->msg('garbage', 'welcome', 10), 'a stream';
    $op->send_raw('garbage', '0a05ffffffff');    # a hello whose length lies
    my $end = $op->end('garbage', 10);
    is $end->{code}, 'INVALID_ARGUMENT', 'garbage after the hello: INVALID_ARGUMENT';

    $r = grpc_curl_tls(grpc_frame(hello_bytes(), flag => 1));
    is $r->{grpc_status}, 12, 'a compressed message: 12 (UNIMPLEMENTED)';

    $r = grpc_curl_tls(grpc_frame(hello_bytes(), flag => 0x80));
    is $r->{grpc_status}, 13, 'a frame flag that means nothing: 13';

    $r = grpc_curl_tls(grpc_frame(hello_bytes(cluster => "gw43-\xc3\x28")));
    is $r->{grpc_status}, 3, "a hello whose cluster name is not UTF-8: 3";
    $r = grpc_curl_tls(grpc_frame(hello_bytes(secret => "\xc3\x28")));
    isnt $r->{grpc_status} // 0, 16,
        "a retired cluster_secret (not even UTF-8) is ignored: the certificate speaks";
    is $r->{status}, 200, '... served';
}

# --- unknown fields and messages are accepted -----------------------------

{
    $op->open('unk', tls => $tls);
    # field 99 (varint) and field 100 (bytes) inside the Hello, field 50
    # (fixed64) after it
    $op->send_raw('unk', unpack 'H*', hello_bytes(
        extra_inner => f_int(99, 12345) . f_len(100, 'future'),
        extra_outer => tag(50, 1) . ("\1" x 8)));
    my $w = $op->msg('unk', 'welcome', 10);
    ok $w, 'a hello with unknown fields, inside and out: Welcome';
    $op->msgs('unk', undef, 0.5);

    # a heartbeat with an unknown field
    $op->send('unk', { heartbeat => { sent_at_unix_ms => 1 } },
              append_hex => unpack('H*', f_int(77, 1)));
    # a message of a type this Manager does not know (oneof member 20)
    $op->send_raw('unk', unpack 'H*', f_len(20, f_len(1, 'from the future')));
    # an ack with an unknown field inside
    my $gen = $gw->desired_generation($C, 'Tenant', $T);
    $op->send_raw('unk', unpack 'H*', f_len(3,
        f_len(1, 'Tenant') . f_len(2, $T) . f_int(3, $gen) . f_int(4, 1)
        . f_len(15, 'condition')));
    $op->send('unk', { usage => { sequence => 1, window_start_unix => 1,
                                  window_end_unix => 2 } });
    my $ua = $op->msg('unk', 'usage_ack', 10);
    ok $ua, 'unknown fields and an unknown message type skipped: the stream goes on';
    ok !$op->ended('unk'), '... and is still open';
    my ($sync) = @{ $gw->api(GET => "tenants/$T")->{json}{sync} };
    is $sync->{state}, 'synced', 'the ack with an unknown field was recorded';
    like scalar $gw->ngx->error_log_since(0),
        qr/gateway skips a message of type 0 from cluster "\Q$C\E"/,
        'the unknown message is logged';
    $op->close('unk');
    is $op->end('unk', 10)->{code}, 'OK', 'closed OK';
}

# --- wrong content type, wrong method, HTTP/1.1 ---------------------------

{
    my $r = grpc_curl_tls('', content_type => 'application/json');
    is $r->{status}, 415, 'HTTP/2 with content-type application/json: 415';
    is $r->{headers}{'content-type'}, 'application/json', '... in JSON';
    is $r->{json}{error}{code}, 'unsupported_media_type', '... code';
    is $r->{json}{error}{status}, 415, '... status';
    ok !defined $r->{grpc_status}, '... no grpc-status';

    $r = grpc_curl_tls('', content_type => 'application/grpc-web');
    is $r->{status}, 415, 'application/grpc-web: 415 too';

    $r = grpc_curl_tls(grpc_frame(hello_bytes()),
                   content_type => 'application/grpc+proto');
    is $r->{status}, 200, 'application/grpc+proto is gRPC';

    my $h1 = KubeNova::Nginx::http_request(
        port => $gw->ngx->port, method => 'POST',
        path => '/kubenova.v1.OperatorGateway/Connect',
        headers => { 'Content-Type' => 'application/grpc' },
        body => grpc_frame(hello_bytes()));
    is $h1->{status}, 505, 'HTTP/1.1: 505';
    is $h1->{headers}{'content-type'}, 'application/json', '... in JSON';
    my $j = eval { JSON::PP->new->decode($h1->{body}) } || {};
    is $j->{error}{code}, 'http2_required', '... code http2_required';
    is $j->{error}{status}, 505, '... status';
}

# --- the gateway still serves -------------------------------------------

{
    $op->open('after', hello => { cluster => $C });
    ok $op->msg('after', 'welcome', 10), 'after all that, a good stream is welcome';
    $op->close('after');
    $op->end('after', 10);
}

$op->quit;
my $log = $gw->ngx->error_log_since(0);
unlike $log, qr/exited on signal|segfault/, 'no worker crashed';
is_deeply $gw->log_problems(0), [], 'no [alert] or [emerg]';
$gw->stop;
done_testing;
