# The kube proxy's edge (/k8s/clusters/{cluster}/...) against a real gRPC
# peer: the python Operator answers the tunnel messages by hand, so every
# step of the protocol is seen from the cluster's side.  Authentication and
# placement, Status refusals, identity and hop-by-hop headers stripped,
# request bodies paced by the Operator's window, answers streamed as they
# come (watches), per-request windows (a client that reads nothing stalls
# only its own request), cancel both ways, 503 (no stream, stream gone, too
# many in flight), 504, upgrades refused, limit_req on $kubenova_tenant, and
# the proxy kubeconfig with its cluster- and role-bound token.
use strict;
use warnings;

use Test::More;
use IO::Select;
use IO::Socket::INET;
use Socket qw(SOL_SOCKET SO_RCVBUF pack_sockaddr_in inet_aton);
use MIME::Base64 qw(encode_base64 decode_base64);
use JSON::PP ();
use Time::HiRes qw(time sleep);

use KubeNova::Gateway qw(free_port json_true wait_until kube_proxy_forward);
use KubeNova::Pg qw(psql require_pg);

require_pg();

my $JSON = JSON::PP->new->utf8->canonical;
my $kp_port = free_port();

my $gw = KubeNova::Gateway->start(http_config => join "\n",
    'limit_req_zone $kubenova_tenant zone=kp_tenant:1m rate=1r/m;',
    'server {',
    # small socket buffers: a client that reads nothing is soon felt
    "    listen 127.0.0.1:$kp_port sndbuf=8k;",
    '    location /k8s/ {',
    '        kubenova_kube_proxy;',
    '        kubenova_kube_proxy_timeout 3s;',
    '        kubenova_kube_proxy_window 64k;',
    '        kubenova_kube_proxy_max_requests 4;',
    '    }',
    '    location /limited/ {',
    '        kubenova_kube_proxy;',
    '        limit_req zone=kp_tenant nodelay;',
    '        limit_req_status 429;',
    '    }',
    '}');

my $identity = $gw->create_cluster('t76-c1');
$gw->create_cluster('t76-c2');
$gw->create_tenant('t76-acme', 't76-c1');
$gw->create_tenant('t76-beta', 't76-c1');
$gw->create_tenant('t76-far', 't76-c2');

sub user_token {
    my ($tenant, $user, $role) = @_;
    $gw->api_ok(POST => "tenants/$tenant/users", {name => $user, role => $role});
    return $gw->api_ok(POST => "users/$user/tokens", {name => 'cli'})
        ->{json}{token};
}

my %token = (
    owner  => user_token('t76-acme', 't76-owner', 'owner'),
    reader => user_token('t76-acme', 't76-reader', 'readonly'),
    beta   => user_token('t76-beta', 't76-beta-owner', 'owner'),
    far    => user_token('t76-far', 't76-far-owner', 'owner'),
);

# --- a kubectl-like client on a raw socket -------------------------------

sub start_request {
    my (%a) = @_;
    my $s = IO::Socket::INET->new(Proto => 'tcp') or die "socket: $!";
    setsockopt($s, SOL_SOCKET, SO_RCVBUF, 4096) if $a{small_buffer};
    $s->connect(pack_sockaddr_in($a{port} // $kp_port,
                                 inet_aton('127.0.0.1')))
        or die "connect: $!";
    my $req = ($a{method} // 'GET') . " $a{path} HTTP/1.1\r\n"
              . "Host: localhost\r\n";
    $req .= "Connection: close\r\n" unless $a{headers}{Connection};
    $req .= "Authorization: Bearer $a{token}\r\n" if $a{token};
    $req .= "$_: $a{headers}{$_}\r\n" for sort keys %{ $a{headers} // {} };
    $req .= "Content-Length: " . length($a{body}) . "\r\n" if defined $a{body};
    $req .= "\r\n";
    $req .= $a{body} if defined $a{body} && !$a{hold_body};
    syswrite $s, $req;
    return $s;
}

# reads whatever arrives within $secs (or until the server closes)
sub read_some {
    my ($s, $secs, $until) = @_;
    my $got = '';
    my $sel = IO::Select->new($s);
    my $deadline = time + $secs;
    while ((my $left = $deadline - time) > 0) {
        last unless $sel->can_read($left);
        my $n = sysread $s, my $chunk, 65536;
        last unless $n;
        $got .= $chunk;
        last if $until && $got =~ $until;
    }
    return $got;
}

sub parse_response {
    my ($raw) = @_;
    my ($head, $body) = split /\r\n\r\n/, $raw, 2;
    return {} unless defined $head;
    my ($status) = $head =~ m{^HTTP/1\.1 (\d+)};
    my %h;
    for (split /\r\n/, $head) { $h{lc $1} = $2 if /^([^:]+):\s*(.*)$/ }
    $body //= '';
    if (($h{'transfer-encoding'} // '') eq 'chunked') {
        my $plain = '';
        while ($body =~ s/^([0-9a-f]+)\r\n//i) {
            my $n = hex $1;
            last if $n == 0;
            $plain .= substr($body, 0, $n, '');
            $body =~ s/^\r\n//;
        }
        $body = $plain;
    }
    my $json = eval { $JSON->decode($body) };
    return { status => $status, headers => \%h, body => $body, json => $json };
}

sub request {
    my (%a) = @_;
    my $s = start_request(%a);
    return parse_response(read_some($s, $a{timeout} // 10));
}

sub is_status {
    my ($r, $code, $reason, $name) = @_;
    is $r->{status}, $code, "$name: $code";
    is_deeply [@{ $r->{json} // {} }{qw(kind apiVersion status code reason)}],
        ['Status', 'v1', 'Failure', $code, $reason], "$name: a Status"
        or diag $r->{body};
}

sub b64 { encode_base64($_[0], '') }

my $base = '/k8s/clusters/t76-c1';

# --- before any Operator is connected ------------------------------------

is_status request(path => "$base/api/v1/namespaces"), 401, 'Unauthorized',
    'no token';
is_status request(path => "$base/api/v1/namespaces", token => 'kn_nope'),
    401, 'Unauthorized', 'unknown token';
is_status request(path => "$base/api/v1/namespaces",
                  token => $ENV{TEST_NGINX_ADMIN_TOKEN}),
    403, 'Forbidden', 'the bootstrap admin';
my $r = request(path => "$base/api/v1/namespaces", token => $token{far});
is_status $r, 404, 'NotFound', 'a tenant placed elsewhere';
like $r->{json}{message}, qr/t76-far is not placed on cluster t76-c1/,
    'says so';
is_status request(path => "/k8s/clusters/t76-c2/api/v1/namespaces",
                  token => $token{owner}),
    404, 'NotFound', 'tenant A on tenant B\'s cluster';
is_status request(path => "$base/api/v1/namespaces/../../t76-c2/api",
                  token => $token{owner}),
    400, 'BadRequest', 'dot segments';
is_status request(path => "$base/api/v1/namespaces%2Fkube-system",
                  token => $token{owner}),
    400, 'BadRequest', 'encoded slash';
is_status request(path => "/k8s/nowhere", token => $token{owner}),
    404, 'NotFound', 'not a cluster path';

$r = request(path => "$base/api/v1/namespaces", token => $token{owner});
is_status $r, 503, 'ServiceUnavailable', 'no Operator connected';
like $r->{json}{message}, qr/t76-c1 has no Operator connected/, 'says so';
is $r->{headers}{'retry-after'}, '1', 'retry after';

# --- the Operator ----------------------------------------------------------

my $op = $gw->operator;
$op->open('s1', hello => {cluster => 't76-c1'},
          auto_ack => json_true);
ok $op->msg('s1', 'welcome'), 'Operator connected';
$op->forget('s1');

sub tunnel_request {
    my $m = $op->msg('s1', 'tunnel_request', $_[0] // 10);
    return $m ? $m->{msg} : undef;
}

sub answer {
    my ($id, $status, $body, %o) = @_;
    $op->send('s1', {tunnel_response => {id => $id, status => $status,
        headers => [{name => 'content-type', value => 'application/json'},
                    {name => 'audit-id', value => 'a-1'},
                    {name => 'connection', value => 'close'},
                    @{ $o{headers} // [] }]}});
    $op->send('s1', {tunnel_data => {id => $id, data => b64($body),
                                     end => json_true}})
        unless $o{open};
}

# a GET, answered
my $s = start_request(
    path => "$base/api/v1/namespaces/t76-acme-apps/configmaps?limit=5&watch=0",
    token => $token{owner},
    headers => {'Impersonate-User' => 'system:admin',
                'Impersonate-Group' => 'system:masters',
                'X-Remote-User' => 'admin', 'Accept' => 'application/json',
                'User-Agent' => 'kubectl/v1.20'});
my $tr = tunnel_request();
ok $tr, 'a TunnelRequest on the stream';
is_deeply [@$tr{qw(tenant role method path query has_body window)}],
    ['t76-acme', 'owner', 'GET', '/api/v1/namespaces/t76-acme-apps/configmaps',
     'limit=5&watch=0', JSON::PP::false, 65536],
    'tenant, role, method, path, query, no body, the window';
my %hdr = map { $_->{name} => $_->{value} } @{ $tr->{headers} };
is $hdr{accept}, 'application/json', 'headers passed, lowercase';
is $hdr{'user-agent'}, 'kubectl/v1.20', 'user agent';
ok !(grep { /^(authorization|impersonate-|x-remote-|host|connection)/ }
     keys %hdr), 'no identity, auth or hop-by-hop headers'
    or diag explain \%hdr;

answer($tr->{id}, 200, '{"kind":"ConfigMapList","items":[]}');
$r = parse_response(read_some($s, 10));
is $r->{status}, 200, 'answered';
is $r->{body}, '{"kind":"ConfigMapList","items":[]}', 'the body';
is $r->{headers}{'content-type'}, 'application/json', 'its type';
is $r->{headers}{'audit-id'}, 'a-1', 'its headers';

# readonly
$s = start_request(path => "$base/api/v1/pods", token => $token{reader});
$tr = tunnel_request();
is $tr && $tr->{role}, 'readonly', 'a readonly user\'s role';
answer($tr->{id}, 403, '{"kind":"Status","code":403}');
is parse_response(read_some($s, 10))->{status}, 403,
    'the cluster\'s answer passes unchanged';

# --- a request body, paced by the window ---------------------------------

my $body = join '', map { chr(65 + $_ % 26) } 1 .. 150_000;
$s = start_request(method => 'POST',
                   path => "$base/api/v1/namespaces/t76-acme-apps/configmaps",
                   token => $token{owner}, body => $body,
                   headers => {'Content-Type' => 'application/json'});
$tr = tunnel_request();
is $tr && $tr->{method}, 'POST', 'a POST';
ok $tr->{has_body}, 'with a body';
my $got = '';
my $end;
for my $m ($op->msgs('s1', 'tunnel_data', 2)) {
    $got .= decode_base64($m->{msg}{data});
    $end ||= $m->{msg}{end};
}
is length($got), 65536, 'the first 64k, no more without a window';
ok !$end, 'not the end yet';
$op->send('s1', {tunnel_window => {id => $tr->{id}, increment => 200_000}});
wait_until(sub {
    for my $m ($op->msgs('s1', 'tunnel_data', 0.2)) {
        $got .= decode_base64($m->{msg}{data});
        $end ||= $m->{msg}{end};
    }
    $end;
}, 10);
ok $end, 'the end, once the window opened';
is $got, $body, 'the whole body, in order';
answer($tr->{id}, 201, '{"kind":"ConfigMap"}');
is parse_response(read_some($s, 10))->{status}, 201, 'created';

# --- streaming: a watch ----------------------------------------------------

$s = start_request(path => "$base/api/v1/namespaces?watch=1",
                   token => $token{owner});
my $watch = tunnel_request();
answer($watch->{id}, 200, '', open => 1);
$op->send('s1', {tunnel_data => {id => $watch->{id},
                                 data => b64(qq({"type":"ADDED"}\n))}});
my $part = read_some($s, 10, qr/ADDED/);
like $part, qr/^HTTP\/1\.1 200/, 'the watch\'s header at once';
like $part, qr/\{"type":"ADDED"\}/, 'its first event as it came';
my $w = $op->msg('s1', 'tunnel_window', 5);
is_deeply [$w && @{ $w->{msg} }{qw(id increment)}],
    [$watch->{id}, length(qq({"type":"ADDED"}\n))],
    'the window handed back once the client has it';

# another request on the same stream while the watch is open
my $s2 = start_request(path => "$base/version", token => $token{owner});
$tr = tunnel_request();
answer($tr->{id}, 200, '{"gitVersion":"v1.20.0"}');
like read_some($s2, 10), qr/v1\.20\.0/, 'other requests flow beside it';

$op->send('s1', {tunnel_data => {id => $watch->{id},
                                 data => b64(qq({"type":"MODIFIED"}\n))}});
like read_some($s, 10, qr/MODIFIED/), qr/MODIFIED/, 'the next event';

# the client goes away: the cluster hears of it
$op->forget('s1');
close $s;
my $c = $op->msg('s1', 'tunnel_cancel', 10);
is $c && $c->{msg}{id}, $watch->{id}, 'client gone: TunnelCancel';

# --- a client that reads nothing stalls only its own request --------------

$s = start_request(path => "$base/api/v1/configmaps", token => $token{owner},
                   small_buffer => 1);
my $slow = tunnel_request();
answer($slow->{id}, 200, '', open => 1);
my $chunk = 'x' x 16384;
$op->send('s1', {tunnel_data => {id => $slow->{id}, data => b64($chunk)}})
    for 1 .. 4;                                     # the whole 64k window
$s2 = start_request(path => "$base/version", token => $token{owner});
$tr = tunnel_request();
answer($tr->{id}, 200, '{"gitVersion":"v1.20.0"}');
like read_some($s2, 10), qr/v1\.20\.0/,
    'a full window of an unread request stalls nobody else';

# past the window: that request alone is cut off, the stream stays
$op->forget('s1');
$op->send('s1', {tunnel_data => {id => $slow->{id}, data => b64($chunk)}})
    for 1 .. 200;
$c = $op->msg('s1', 'tunnel_cancel', 10);
is $c && $c->{msg}{id}, $slow->{id}, 'data past the window: cancelled';
ok !$op->ended('s1'), 'the stream goes on';
read_some($s, 10);                                  # drain, closed
close $s;

# --- the Operator cancels, does not answer, or goes away -----------------

$s = start_request(path => "$base/api/v1/nodes", token => $token{owner});
$tr = tunnel_request();
$op->send('s1', {tunnel_cancel => {id => $tr->{id}, reason => 'limits'}});
is_status parse_response(read_some($s, 10)), 502, 'InternalError',
    'cancelled by the cluster';

$op->forget('s1');
$s = start_request(path => "$base/api/v1/nodes", token => $token{owner});
$tr = tunnel_request();
$r = parse_response(read_some($s, 20));
is_status $r, 504, 'Timeout', 'no answer within kubenova_kube_proxy_timeout';
$c = $op->msg('s1', 'tunnel_cancel', 5);
is $c && $c->{msg}{id}, $tr->{id}, 'and the cluster is told';

# bounded: at most 4 in flight on the stream
my @held = map { start_request(path => "$base/api/v1/pods?n=$_",
                               token => $token{owner}) } 1 .. 4;
my @ids = map { tunnel_request()->{id} } 1 .. 4;
is scalar(@ids), 4, 'four in flight';
$r = request(path => "$base/api/v1/pods", token => $token{owner});
is_status $r, 503, 'ServiceUnavailable', 'the fifth';
like $r->{json}{message}, qr/too many requests in flight/, 'says so';

# upgrades refused before anything reaches the cluster
$op->forget('s1');
$r = request(method => 'POST',
             path => "$base/api/v1/namespaces/t76-acme-apps/pods/p/exec",
             token => $token{owner}, body => '',
             headers => {Connection => 'Upgrade, close',
                         Upgrade => 'SPDY/3.1'});
is_status $r, 501, 'NotImplemented', 'exec (a connection upgrade)';
like $r->{json}{message}, qr/exec, attach, port-forward/, 'says what';

# the stream goes away: every request on it gets a clear 503 at once
$op->cancel('s1');
for my $h (@held) {
    $r = parse_response(read_some($h, 10));
    is_status $r, 503, 'ServiceUnavailable', 'Operator gone';
}
like $r->{json}{message}, qr/Operator disconnected/, 'says so';
ok $op->end('s1', 10), 'stream over';

# --- limit_req keyed on the tenant ----------------------------------------

$op->open('s2', hello => {cluster => 't76-c1'},
          auto_ack => json_true);
ok $op->msg('s2', 'welcome'), 'Operator back';
sub serve_one {
    my ($token) = @_;
    my $s = start_request(path => '/limited/clusters/t76-c1/version',
                          token => $token);
    my $m = $op->msg('s2', 'tunnel_request', 3);
    if ($m) {
        $op->send('s2', {tunnel_response => {id => $m->{msg}{id},
                                             status => 200}});
        $op->send('s2', {tunnel_data => {id => $m->{msg}{id},
                                         end => json_true}});
    }
    return parse_response(read_some($s, 10))->{status};
}
is serve_one($token{owner}), 200, 'tenant acme: first request';
is serve_one($token{reader}), 429, 'acme again (another user): limited';
is serve_one($token{beta}), 200, 'tenant beta: its own limit';

# --- the proxy kubeconfig ---------------------------------------------------

sub kubeconfig {
    my ($who, $query) = @_;
    my $t = $who eq 'admin' ? $ENV{TEST_NGINX_ADMIN_TOKEN} : $token{$who};
    return KubeNova::Nginx::http_request(
        port => $gw->ngx->port,
        path => "/api/v1/tenants/t76-acme/kubeconfig?$query",
        host_header => 'manager.test:8443',
        headers => {Authorization => "Bearer $t"});
}

$r = kubeconfig(owner => 'cluster=t76-c1');
is $r->{status}, 200, 'proxy kubeconfig (the default)';
like $r->{body}, qr{server: "http://manager\.test:8443/k8s/clusters/t76-c1"},
    'its server is the proxy';
like $r->{body}, qr{namespace: t76-acme-apps}, 'in the tenant\'s namespace';
is $r->{headers}{'cache-control'}, 'no-store', 'never cached';
my ($kc_token) = $r->{body} =~ /token: (\S+)/;
ok $kc_token, 'a token';
is psql("SELECT kube_cluster || '/' || kube_role FROM tokens "
        . "WHERE name = 'kubeconfig-owner-t76-c1'"), 't76-c1/owner',
    'bound to the cluster and role';
is psql("SELECT count(*) FROM tokens WHERE token_hash = encode(sha256("
        . "convert_to('$kc_token', 'UTF8')), 'hex')"), 1, 'stored hashed';

is KubeNova::Nginx::http_request(port => $gw->ngx->port,
        path => '/api/v1/whoami',
        headers => {Authorization => "Bearer $kc_token"})->{status}, 401,
    'the kubeconfig token opens no REST API';
is_status request(path => "/k8s/clusters/t76-c2/version", token => $kc_token),
    403, 'Forbidden', 'nor another cluster';

$s = start_request(path => "$base/version", token => $kc_token);
$tr = $op->msg('s2', 'tunnel_request', 10);
is $tr && "$tr->{msg}{tenant}/$tr->{msg}{role}", 't76-acme/owner',
    'the kubeconfig token reaches its cluster';
close $s;

$r = kubeconfig(owner => 'cluster=t76-c1&role=readonly');
my ($ro_token) = $r->{body} =~ /token: (\S+)/;
$s = start_request(path => "$base/version", token => $ro_token);
$tr = $op->msg('s2', 'tunnel_request', 10);
is $tr && $tr->{msg}{role}, 'readonly', 'an owner\'s readonly kubeconfig is '
    . 'readonly';
close $s;

is kubeconfig(reader => 'cluster=t76-c1&role=owner')->{status}, 403,
    'a readonly user gets no owner kubeconfig';
is kubeconfig(admin => 'cluster=t76-c1')->{status}, 400,
    'admins get no proxy kubeconfig';
is kubeconfig(owner => 'cluster=t76-c2')->{status}, 404,
    'none for a cluster the tenant is not on';
is kubeconfig(owner => 'cluster=t76-c1&via=direct')->{status}, 404,
    'via=direct: the Operator-issued one (none issued here)';
is kubeconfig(owner => 'cluster=t76-c1&via=carrier-pigeon')->{status}, 400,
    'via: proxy or direct';

# answers are reused for kubenova_kube_proxy_auth_cache (5 s by default)
kubeconfig(owner => 'cluster=t76-c1');
ok wait_until(sub {
    request(path => "$base/version", token => $kc_token)->{status} == 401
}, 20), 'asking again rotates: the old token is dead (soon)';
is_status request(path => "$base/version", token => $kc_token),
    401, 'Unauthorized', '... refused';
ok $gw->api_ok(DELETE => 'users/t76-owner/tokens/kubeconfig-owner-t76-c1'),
    'revoked like any token';

$op->quit;
is_deeply $gw->log_problems(0), [], 'no alerts';
$gw->stop;

# --- two workers: a request reaches the worker that holds the stream -----

$kp_port = free_port();
$gw = KubeNova::Gateway->start(workers => 2, master_process => 1,
    pki => $gw->pki,    # the same CA: the identity of t76-c1 holds
    http_config => join "\n",
    "kubenova_kube_proxy_node_url http://127.0.0.1:$kp_port;",
    'log_format kp_route "$remote_addr $pid $status $request_uri";',
    'server {',
    "    listen 127.0.0.1:$kp_port;",
    '    access_log logs/kp_route.log kp_route;',
    '    location /k8s/ {',
    '        kubenova_kube_proxy;',
    '    }',
    kube_proxy_forward(),
    '}');
$op = $gw->operator;
$op->open('s3', hello => {cluster => 't76-c1'}, tls => $gw->tls($identity),
          auto_ack => json_true);
ok $op->msg('s3', 'welcome', 20), 'Operator connected to one of two workers';
my $owner = wait_until(sub { $gw->stream_worker('t76-c1', 0) }, 10);
ok $owner, "its stream is on worker $owner";

sub route_log {
    grep { /\?i=/ } split /\n/,
        do { local (@ARGV, $/) = ($gw->ngx->servroot . '/logs/kp_route.log');
             <> // '' };
}

# which worker accepts is up to the kernel: go on until several were relayed
my ($served, $routed, $expected) = (0, 0, 0);
for my $i (1 .. 60) {
    last if $i > 12 && (grep { /^unix: .*[?]i=\d*[05]$/ } route_log()) >= 1
            && (grep { /^unix: / } route_log()) >= 3;
    my $s = start_request(path => "$base/api/v1/namespaces?i=$i",
                          token => $token{beta},
                          body => $i % 5 ? undef : 'x' x 100_000,
                          method => $i % 5 ? 'GET' : 'PUT');
    my $m = $op->msg('s3', 'tunnel_request', 10) or last;
    my $id = $m->{msg}{id};
    if ($m->{msg}{has_body}) {
        my $len = 0;
        wait_until(sub {
            for my $d ($op->msgs('s3', 'tunnel_data', 0.2)) {
                $len += length decode_base64($d->{msg}{data});
                $op->send('s3', {tunnel_window => {id => $id,
                    increment => length decode_base64($d->{msg}{data})}});
                return 1 if $d->{msg}{end};
            }
            0;
        }, 10);
        $served += ($len == 100_000);
    }
    $op->send('s3', {tunnel_response => {id => $id, status => 200}});
    $op->send('s3', {tunnel_data => {id => $id, data => b64("ok $i"),
                                     end => json_true}});
    $r = parse_response(read_some($s, 10));
    $served += ($r->{status} // 0) == 200 && $r->{body} eq "ok $i";
    $expected += $i % 5 ? 1 : 2;
}
is $served, $expected, 'every request answered, bodies whole, on either '
    . 'worker';
# the relaying worker logs once the relay is over, a moment after its client
my (@lines, $elsewhere);
wait_until(sub {
    @lines = route_log();
    $routed = grep { /^unix: $owner 200 / } @lines;
    $elsewhere = grep { /^127\.0\.0\.1 (\d+) 200 / && $1 != $owner } @lines;
    $routed == $elsewhere;
}, 10);
ok $routed && $routed == $elsewhere,
    "requests that landed on the other worker ($elsewhere) were relayed to "
    . "the owner ($routed)" or diag join "\n", @lines;

# --- another Manager node: relayed to the one the database names ----------

is psql("SELECT node_url FROM kube_proxy_routes WHERE cluster = 't76-c1'"),
    "http://127.0.0.1:$kp_port", 'the owner node registered its URL';

my $b_port = free_port();
my $node_b = KubeNova::Gateway->start(api_only => 1,
    servroot => File::Temp::tempdir(CLEANUP => 1),
    http_config => join "\n",
    "kubenova_kube_proxy_node_url http://127.0.0.1:$b_port;",
    'server {',
    "    listen 127.0.0.1:$b_port;",
    '    location /k8s/ { kubenova_kube_proxy; }',
    kube_proxy_forward(),
    '}');
{
    my $s = start_request(path => "$base/version?node=b", token => $token{beta},
                          port => $b_port,
                          headers => {'X-KubeNova-Hop' => 'forged'});
    my $m = $op->msg('s3', 'tunnel_request', 10);
    ok $m, 'a request to another node reaches the stream';
    ok $m && !grep({ $_->{name} =~ /^x-kubenova-/ } @{ $m->{msg}{headers} }),
        '... without X-KubeNova-* headers';
    $op->send('s3', {tunnel_response => {id => $m->{msg}{id}, status => 200}})
        if $m;
    $op->send('s3', {tunnel_data => {id => $m->{msg}{id}, data => b64('from a'),
                                     end => json_true}}) if $m;
    $r = parse_response(read_some($s, 10));
    is "$r->{status} $r->{body}", '200 from a', '... and the answer comes back';

    $r = request(path => "$base/version", token => $token{beta},
                 port => $b_port, headers => {'X-KubeNova-Relayed' => '1'});
    is_status $r, 503, 'ServiceUnavailable',
        'a request that says it was relayed is not relayed again';
}

$op->cancel('s3');
ok $op->end('s3', 10), 'Operator gone';
ok wait_until(sub {
    psql("SELECT count(*) FROM kube_proxy_routes WHERE cluster = 't76-c1'")
        == 0 }, 10), 'its route is removed';
is_status request(path => "$base/version", token => $token{beta},
                  port => $b_port),
    503, 'ServiceUnavailable', 'the other node answers 503 then';
$node_b->stop;
ok wait_until(sub {
    request(path => "$base/version", token => $token{beta})->{status} == 503
        && request(path => "$base/version", token => $token{beta})->{status}
           == 503 }, 10),
    'then 503 from both workers';

# --- a reload: new workers, new sockets, the old ones gone ---------------

ok $gw->ngx->reload(timeout => 20), 'nginx reloaded';
$op->open('s4', hello => {cluster => 't76-c1'}, tls => $gw->tls($identity),
          auto_ack => json_true);
ok $op->msg('s4', 'welcome', 20), 'the Operator is back, on a new worker';
my $after = 0;
for my $i (1 .. 8) {
    my $s = start_request(path => "$base/version?r=$i", token => $token{beta});
    my $m = $op->msg('s4', 'tunnel_request', 10) or last;
    $op->send('s4', {tunnel_response => {id => $m->{msg}{id}, status => 200}});
    $op->send('s4', {tunnel_data => {id => $m->{msg}{id}, end => json_true}});
    $after += (parse_response(read_some($s, 10))->{status} // 0) == 200;
}
is $after, 8, 'requests reach the stream from either new worker';
ok wait_until(sub {
    my @socks = glob($gw->ngx->servroot . '/kubenova-kp-*.sock');
    @socks == 2;
}, 30), 'one forwarding socket per live worker, the old ones removed';
$op->quit;
is_deeply $gw->log_problems(0), [], 'no alerts';

done_testing;
