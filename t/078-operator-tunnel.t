# The kube proxy tunnel, the Operator's half (operator/src/kn_tunnel.c,
# kn_tunnel_filter.c): a real control plane (t/k8s/control-plane.sh), the
# Operator as its least-privilege ServiceAccount, and the Manager played by
# the python gRPC server (a real gRPC peer) sending TunnelRequest,
# TunnelData, TunnelWindow and TunnelCancel as the Manager edge would.
#
#   - as owner: create, get, list, watch, delete configmaps in <t>-apps;
#     a request body larger than its 64 KiB window goes in as the Operator
#     grants it;
#   - isolation: namespaces listed (also with a labelSelector, and watched)
#     are the tenant's only; another tenant's namespace is NotFound;
#     kube-system is Forbidden; forged Impersonate-* headers change nothing;
#     pods of all namespaces are the tenant's only (List and Table, list
#     and watch); nodes and storageclasses are empty lists;
#   - readonly: reads pass, writes are Forbidden;
#   - streaming and flow control: a big list arrives in chunks, never more
#     than the window; a reader that stops granting pauses its request only;
#     a watch stays open while other requests flow;
#   - a cancel stops the request in the cluster (its watcher is gone from
#     the API server); past --max-tunnel-requests: 503; bad input: 400.
use strict;
use warnings;

use File::Temp qw(tempdir);
use JSON::PP;
use MIME::Base64 qw(encode_base64 decode_base64);
use Test::More;
use Time::HiRes qw(time sleep);

use KubeNova::Gateway qw(wait_until);
use KubeNova::GrpcServer;
use KubeNova::K8s;
use KubeNova::Operator;
use KubeNova::Pki;

my $k8s = KubeNova::K8s->start;
ok $k8s->{kubeconfig} && -x $k8s->{kubectl}, 'a control plane';

my $bin = eval { KubeNova::Operator::build() };
ok $bin, 'make -C operator builds kubenova-operator' or BAIL_OUT($@);

# the stand-in Manager's CA, its certificate and the Operator's identity
my $pki = tempdir('kn-t78.XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $ca = KubeNova::Pki::make_ca($pki, 't78-ca');
my $server = KubeNova::Pki::server_cert($pki, $ca, 'srv');
my $csr = KubeNova::Pki::key_and_csr($pki, 't78-c', 'CN=t78-c');
my $identity = { cluster => 't78-c', key => $csr->{key}, ca => $ca->{cert},
                 cert => KubeNova::Pki::sign_client($pki, $ca, $csr, 't78-c') };

my $srv = KubeNova::GrpcServer->new(tls_cert => $server->{cert},
                                    tls_key => $server->{key},
                                    client_ca => $ca->{cert},
                                    client_ca_key => $ca->{key});
ok $srv->tls_port, 'the python gRPC server plays the Manager (mTLS)';

my ($A, $B) = ('t78-a', 't78-b');
my $LIMIT = 6;
my $JSON = JSON::PP->new->utf8->canonical;
my $true = JSON::PP::true;
my $false = JSON::PP::false;

# B may see storageclasses (and asks for nodes, which no tenant sees)
$srv->cmd(op => 'mode', heartbeat_interval_ms => 1000,
          updates => [{ kind => 'Tenant', name => $A, generation => 1,
                        payload => '{"plan":"small"}' },
                      { kind => 'Tenant', name => $B, generation => 1,
                        payload => '{"plan":"small","cluster_resources":'
                                   . '["storageclasses","nodes"]}' }]);

my $op = KubeNova::Operator->start(
    manager_url => 'https://localhost:' . $srv->tls_port,
    cluster => 't78-c', identity => $identity,
    args => ['--heartbeat', '1s', '--kubeconfig', $k8s->operator_kubeconfig,
             '--max-tunnel-requests', $LIMIT, '--tunnel-max-buffer', '256k']);

my $c = $srv->connect_in_mode(60);
ok $c, 'the Operator connects' or diag $op->log_text;
my $n = $c ? $c->{n} : 0;

for my $t ($A, $B) {
    for my $role (qw(owner readonly)) {
        ok $op->wait_log(qr/credentials: the $role kubeconfig of tenant "$t" is issued/, 90),
            "tenant $t is in place: its $role token is issued"
            or diag $op->log_text;
    }
}

# --- the Manager's side of the tunnel --------------------------------------

my $NextId = 1000;

sub is_msg {
    my ($ev, $id, $re) = @_;
    return $ev->{ev} eq 'msg' && $ev->{n} == $n && $ev->{type} =~ $re
        && ($ev->{msg}{id} // '') eq "$id";
}

sub send_msg { $srv->cmd(op => 'send', msg => $_[0]) }

sub grant { send_msg({ tunnel_window => { id => "$_[0]", increment => $_[1] } }) }

# TunnelRequest (and its body, within the 64 KiB window the Operator grants)
sub treq {
    my (%r) = @_;
    my $id = ++$NextId;
    my $headers = $r{headers} // [['accept', 'application/json']];
    send_msg({ tunnel_request => {
        id => "$id", tenant => $r{tenant} // $A, role => $r{role} // 'owner',
        method => $r{method} // 'GET', path => $r{path},
        query => $r{query} // '',
        headers => [map { { name => $_->[0], value => $_->[1] } } @$headers],
        has_body => defined $r{body} ? $true : $false,
        window => $r{window} // 1 << 20 } });
    return $id unless defined $r{body};

    my ($body, $window, $off) = ($r{body}, 65536, 0);
    $r{granted} = 0;
    while (1) {
        my $len = length($body) - $off;
        $len = 16384 if $len > 16384;
        $len = $window if $len > $window;
        if ($len == 0 && $off < length $body) {
            my $w = $srv->take(sub { is_msg($_[0], $id, qr/^tunnel_window$/) }, 30)
                or last;
            $window += $w->{msg}{increment};
            next;
        }
        my $end = $off + $len >= length $body;
        send_msg({ tunnel_data => { id => "$id",
            data => encode_base64(substr($body, $off, $len), ''),
            end => $end ? $true : $false } });
        $off += $len;
        $window -= $len;
        last if $end;
    }
    return $id;
}

# the answer of $id: status, headers, body; the window is granted as data
# arrives unless grant => 0
sub tresp {
    my ($id, %o) = @_;
    my $t = $o{timeout} // 30;
    my $r = $srv->take(sub { is_msg($_[0], $id, qr/^tunnel_(response|cancel)$/) }, $t)
        or return { status => 0, body => '', error => 'no answer' };
    return { status => 0, body => '', cancel => $r->{msg}{reason} }
        if $r->{type} eq 'tunnel_cancel';
    my %res = (status => $r->{msg}{status}, body => '', chunks => [],
               headers => { map { $_->{name} => $_->{value} }
                            @{ $r->{msg}{headers} || [] } });
    return tbody($id, \%res, %o);
}

# the rest of the body of $id, into $res
sub tbody {
    my ($id, $res, %o) = @_;
    my $t = $o{timeout} // 30;
    my %res = %$res;
    while (!$res{end}) {
        my $d = $srv->take(sub { is_msg($_[0], $id, qr/^tunnel_(data|cancel)$/) }, $t)
            or last;
        if ($d->{type} eq 'tunnel_cancel') {
            $res{cancel} = $d->{msg}{reason};
            last;
        }
        my $bytes = decode_base64($d->{msg}{data} // '');
        push @{ $res{chunks} }, length $bytes if length $bytes;
        $res{body} .= $bytes;
        grant($id, length $bytes) if length $bytes && ($o{grant} // 1);
        $res{end} = 1 if $d->{msg}{end};
    }
    $res{json} = eval { $JSON->decode($res{body}) } if length $res{body};
    return \%res;
}

sub call { my %r = @_; return tresp(treq(%r)) }

sub names { [sort map { $_->{metadata}{name} } @{ $_[0]{json}{items} || [] }] }

# the events of watch $id that arrive within $secs (a line may span chunks)
my %Partial;
sub watch_events {
    my ($id, $secs) = @_;
    my @ev;
    for my $d ($srv->take_all(sub { is_msg($_[0], $id, qr/^tunnel_data$/) }, $secs)) {
        my $bytes = decode_base64($d->{msg}{data} // '');
        grant($id, length $bytes) if length $bytes;
        $Partial{$id} .= $bytes;
        while ($Partial{$id} =~ s/^([^\n]*)\n//) {
            push @ev, $JSON->decode($1) if length $1;
        }
    }
    return @ev;
}

my $APPS = "$A-apps";

# --- as owner: configmaps in <t>-apps ----------------------------------------

my $cm = { apiVersion => 'v1', kind => 'ConfigMap',
           metadata => { name => 'one' }, data => { k => 'v' } };
my $r = call(method => 'POST', path => "/api/v1/namespaces/$APPS/configmaps",
             headers => [['content-type', 'application/json'],
                         ['accept', 'application/json']],
             body => $JSON->encode($cm));
is $r->{status}, 201, 'owner: POST a configmap in <t>-apps: 201'
    or diag explain $r;
is $r->{json}{metadata}{namespace}, $APPS, '... created there';
is $k8s->kubectl_json('get', 'configmap', 'one', '-n', $APPS)->{data}{k}, 'v',
    '... and the cluster holds it';

$r = call(path => "/api/v1/namespaces/$APPS/configmaps/one");
is $r->{status}, 200, 'owner: GET it: 200';
is $r->{json}{data}{k}, 'v', '... its data';
like $r->{headers}{'content-type'} // '', qr{^application/json},
    '... the API server\'s content-type passed on';

$r = call(path => "/api/v1/namespaces/$APPS/configmaps");
is $r->{status}, 200, 'owner: list: 200';
ok((grep { $_ eq 'one' } @{ names($r) }), '... it is listed');

# a body larger than the request window: granted back as it is read
my $big = { apiVersion => 'v1', kind => 'ConfigMap',
            metadata => { name => 'big-body' }, data => { k => 'y' x 200_000 } };
my $id = treq(method => 'POST', path => "/api/v1/namespaces/$APPS/configmaps",
              headers => [['content-type', 'application/json']],
              body => $JSON->encode($big));
$r = tresp($id);
is $r->{status}, 201, 'a 200 KB body (beyond the 64 KiB window) is sent as the Operator grants the window: 201';
is length(($k8s->kubectl_json('get', 'configmap', 'big-body', '-n', $APPS)
           || {})->{data}{k} // ''), 200_000, '... whole in the cluster';

# --- a watch kept open while other requests flow ----------------------------

my $w = treq(path => "/api/v1/namespaces/$APPS/configmaps",
             query => 'watch=true&fieldSelector=metadata.name%3Dlater');
my $wh = $srv->take(sub { is_msg($_[0], $w, qr/^tunnel_response$/) }, 30);
is $wh && $wh->{msg}{status}, 200, 'a watch of configmaps: 200, kept open';

$r = call(method => 'POST', path => "/api/v1/namespaces/$APPS/configmaps",
          headers => [['content-type', 'application/json']],
          body => $JSON->encode({ %$cm, metadata => { name => 'later' } }));
is $r->{status}, 201, '... meanwhile another request is answered (a create)';
$r = call(path => "/api/v1/namespaces/$APPS/configmaps/one");
is $r->{status}, 200, '... and another (a get)';
my @ev;
ok wait_until(sub { push @ev, watch_events($w, 0.5);
                    grep { $_->{type} eq 'ADDED' } @ev }, 20),
    '... and the watch streams the ADDED event as it happens';
is_deeply [map { $_->{object}{metadata}{name} } @ev], ['later'],
    '... of that configmap';

$r = call(method => 'DELETE', path => "/api/v1/namespaces/$APPS/configmaps/later",
          headers => [['content-type', 'application/json']],
          body => $JSON->encode({ kind => 'DeleteOptions', apiVersion => 'v1',
                                  propagationPolicy => 'Background' }));
is $r->{status}, 200, 'owner: DELETE (with DeleteOptions, as kubectl sends it): 200';
ok wait_until(sub { push @ev, watch_events($w, 0.5);
                    grep { $_->{type} eq 'DELETED' } @ev }, 20),
    '... the watch sees it DELETED';
ok !$k8s->kubectl_json('get', 'configmap', 'later', '-n', $APPS),
    '... gone from the cluster';

# --- cancel: the watch ends in the cluster ----------------------------------

sub watchers {
    my $m = $k8s->kubectl('get', '--raw', '/metrics');
    my ($v) = $m =~ /^apiserver_registered_watchers\{group="",kind="ConfigMap",version="v1"\} (\d+)/m;
    return $v // 0;
}

my $before = watchers();
ok $before >= 1, "the API server counts the watch: $before ConfigMap watcher(s)";
send_msg({ tunnel_cancel => { id => "$w", reason => 'the client went away' } });
ok $op->wait_log(qr/tunnel: request $w \(GET \S+\) cancelled by the Manager: the client went away/, 10),
    'TunnelCancel: the Operator drops the request';
ok wait_until(sub { watchers() == $before - 1 }, 30),
    '... and the watch is gone from the API server: ' . watchers();
is scalar($srv->take_all(sub { is_msg($_[0], $w, qr/^tunnel_/) }, 1)), 0,
    '... nothing more is sent for it';

# --- namespaces: the tenant's only --------------------------------------------

$r = call(path => '/api/v1/namespaces');
is $r->{status}, 200, 'GET /api/v1/namespaces: 200';
is_deeply names($r), ["$A-apps", "$A-owner"], '... the tenant\'s namespaces only';

$r = call(path => '/api/v1/namespaces', query => 'labelSelector=kubenova.io%2Ftier%3Dsmall');
is_deeply names($r), ["$A-apps", "$A-owner"],
    '... with a labelSelector both tenants match: still only its own';
$k8s->kubectl('label', 'namespace', $_, 't78=x') for "$A-owner", "$B-owner";
$r = call(path => '/api/v1/namespaces', query => 'labelSelector=t78%3Dx&limit=10');
is_deeply names($r), ["$A-owner"],
    '... the caller\'s selector narrows it (t78=x, on one namespace of each)';
$r = call(path => '/api/v1/namespaces',
          query => 'labelSelector=kubenova.io%2Ftenant%3D' . $B);
is_deeply names($r), [], '... asking for the other tenant\'s label: nothing';

$r = call(path => '/api/v1/namespaces',
          headers => [['accept', 'application/json;as=Table;v=v1;g=meta.k8s.io,application/json']]);
is $r->{json}{kind}, 'Table', '... as a Table (kubectl get ns)';
is_deeply [sort map { $_->{cells}[0] } @{ $r->{json}{rows} || [] }],
    ["$A-apps", "$A-owner"], '... of its namespaces';

my $nw = treq(path => '/api/v1/namespaces', query => 'watch=true');
@ev = ();
ok wait_until(sub { push @ev, watch_events($nw, 0.5); @ev >= 2 }, 20),
    'a watch of namespaces';
is_deeply [sort map { "$_->{type} $_->{object}{metadata}{name}" } @ev],
    ["ADDED $A-apps", "ADDED $A-owner"], '... shows the tenant\'s only';
send_msg({ tunnel_cancel => { id => "$nw" } });

$r = call(path => '/api/v1/namespaces', query => 'label%53elector=x');
is $r->{status}, 400, 'an encoded parameter name (a second labelSelector to the API server): 400';

$r = call(path => "/api/v1/namespaces/$A-apps");
is $r->{status}, 200, 'GET of its own namespace: 200';
$r = call(path => "/api/v1/namespaces/$B-apps");
is $r->{status}, 404, 'GET of the other tenant\'s namespace: 404';
is $r->{json}{kind}, 'Status', '... a Status';
is $r->{json}{reason}, 'NotFound', '... NotFound';
is $r->{json}{message}, "namespaces \"$B-apps\" not found", '... as the API server words it';
$r = call(path => '/api/v1/namespaces/kube-system');
is $r->{status}, 404, 'GET of kube-system: 404';

# --- what RBAC refuses ----------------------------------------------------------

$r = call(path => '/api/v1/namespaces/kube-system/configmaps');
is $r->{status}, 403, 'configmaps of kube-system: 403';
like $r->{json}{message} // '', qr/system:serviceaccount:$A-owner:owner/,
    '... refused to the tenant\'s own ServiceAccount';

$r = call(path => "/api/v1/namespaces/$B-apps/configmaps");
is $r->{status}, 403, 'configmaps of the other tenant: 403';

$r = call(path => '/api/v1/namespaces/kube-system/secrets',
          headers => [['accept', 'application/json'],
                      ['impersonate-user', 'system:admin'],
                      ['impersonate-group', 'system:masters'],
                      ['x-remote-user', 'system:admin'],
                      ['x-remote-group', 'system:masters'],
                      ['authorization', 'Bearer forged']]);
is $r->{status}, 403, 'forged Impersonate-*, X-Remote-* and Authorization headers: still 403';
like $r->{json}{message} // '', qr/system:serviceaccount:$A-owner:owner/,
    '... as the tenant\'s ServiceAccount, the headers stripped';

$r = call(method => 'POST', path => '/api/v1/namespaces',
          headers => [['content-type', 'application/json']],
          body => $JSON->encode({ apiVersion => 'v1', kind => 'Namespace',
                                  metadata => { name => 't78-sneaky' } }));
is $r->{status}, 403, 'a cluster-scoped write (create a namespace): 403';
ok !$k8s->kubectl_json('get', 'namespace', 't78-sneaky'), '... nothing made';

# kubectl auth can-i: a SelfSubjectAccessReview answers for the tenant
sub can_i {
    my ($role, $verb, $res, $ns) = @_;
    my $r = call(role => $role, method => 'POST',
                 path => '/apis/authorization.k8s.io/v1/selfsubjectaccessreviews',
                 headers => [['content-type', 'application/json']],
                 body => $JSON->encode({
                     apiVersion => 'authorization.k8s.io/v1',
                     kind => 'SelfSubjectAccessReview',
                     spec => { resourceAttributes => {
                         verb => $verb, resource => $res, namespace => $ns } } }));
    return $r->{status} == 201 ? ($r->{json}{status}{allowed} ? 'yes' : 'no')
                               : "HTTP $r->{status}";
}
is_deeply [can_i('owner', 'create', 'configmaps', $APPS),
           can_i('owner', 'create', 'configmaps', 'kube-system'),
           can_i('readonly', 'create', 'configmaps', $APPS),
           can_i('readonly', 'list', 'configmaps', $APPS)],
    ['yes', 'no', 'no', 'yes'],
    'kubectl auth can-i (SelfSubjectAccessReview) answers as for the tenant\'s accounts';

$r = call(method => 'PATCH', path => "/api/v1/namespaces/$APPS",
          headers => [['content-type', 'application/merge-patch+json']],
          body => $JSON->encode({ metadata => { labels => {
              'kubenova.io/tenant' => $B } } }));
is $r->{status}, 403, 'relabelling its namespace as the other tenant\'s: 403';
is $k8s->kubectl_json('get', 'namespace', $APPS)->{metadata}{labels}{'kubenova.io/tenant'},
    $A, '... the label unchanged';

$r = call(role => 'readonly', path => "/api/v1/namespaces/$APPS/configmaps/one");
is $r->{status}, 200, 'readonly: GET: 200';
$r = call(role => 'readonly', method => 'DELETE',
          path => "/api/v1/namespaces/$APPS/configmaps/one");
is $r->{status}, 403, 'readonly: DELETE: 403';
like $r->{json}{message} // '', qr/system:serviceaccount:$A-owner:readonly/,
    '... refused to the readonly ServiceAccount';
ok $k8s->kubectl_json('get', 'configmap', 'one', '-n', $APPS), '... still there';

# --- pods of all namespaces, cluster-scoped lists -------------------------------

my $pod = { apiVersion => 'v1', kind => 'Pod',
            spec => { containers => [{ name => 'c', image => 'busybox' }] } };
$r = call(method => 'POST', path => "/api/v1/namespaces/$APPS/pods",
          headers => [['content-type', 'application/json']],
          body => $JSON->encode({ %$pod, metadata => { name => 'mine' } }));
is $r->{status}, 201, 'owner: a pod in <t>-apps' or diag $r->{body};
for my $ns ("$B-apps", 'default') {
    $k8s->apply({ %$pod, metadata => { name => 'theirs', namespace => $ns } });
    ok $k8s->kubectl_json('get', 'pod', 'theirs', '-n', $ns), "(a pod in $ns)";
}

$r = call(path => '/api/v1/pods');
is $r->{status}, 200, 'GET /api/v1/pods (kubectl get pods -A): 200';
is_deeply [map { "$_->{metadata}{namespace}/$_->{metadata}{name}" }
           @{ $r->{json}{items} || [] }], ["$APPS/mine"],
    '... the tenant\'s pods only';
$r = call(path => '/api/v1/pods',
          headers => [['accept', 'application/json;as=Table;v=v1;g=meta.k8s.io,application/json']]);
is_deeply [map { $_->{object}{metadata}{namespace} . '/' . $_->{cells}[0] }
           @{ $r->{json}{rows} || [] }], ["$APPS/mine"],
    '... also as a Table';
my $pw = treq(path => '/api/v1/pods', query => 'watch=True');
@ev = ();
ok wait_until(sub { push @ev, watch_events($pw, 0.5); @ev >= 1 }, 20),
    'a watch of pods in all namespaces';
push @ev, watch_events($pw, 1);
is_deeply [map { "$_->{type} $_->{object}{metadata}{namespace}" } @ev],
    ["ADDED $APPS"], '... shows the tenant\'s only';
send_msg({ tunnel_cancel => { id => "$pw" } });

# the lists being filtered share --tunnel-max-buffer (256k here)
for my $i (1 .. 3) {
    ok $k8s->apply({ %$pod, metadata => { name => "big-$i", namespace => 'default',
                                          annotations => { big => 'b' x 120_000 } } },
                   '--server-side'), "(a pod of 120 KB in default)";
}
$r = call(path => '/api/v1/pods');
is $r->{status}, 503, 'a list of all pods larger than --tunnel-max-buffer: 503';
like $r->{json}{message} // '', qr/--tunnel-max-buffer .*limit/, '... saying why, and what to do';
$r = call(path => '/api/v1/pods', query => 'limit=1');
is $r->{status}, 200, '... page by page (limit) it passes';
is_deeply $r->{json}{items}, [], '... (the first page is a pod of default: nothing of it)';
ok $r->{json}{metadata}{continue}, '... and the continue token goes on';
$k8s->kubectl('delete', 'pod', '-n', 'default', '--wait=false', map { "big-$_" } 1 .. 3);
ok wait_until(sub { call(path => '/api/v1/pods')->{status} == 200 }, 60),
    '... and once they are gone, the whole list passes again (the budget is back)';

for (['/api/v1/nodes', 'NodeList', 'v1'],
     ['/apis/storage.k8s.io/v1/storageclasses', 'StorageClassList', 'storage.k8s.io/v1'])
{
    $r = call(path => $_->[0]);
    is $r->{status}, 200, "GET $_->[0]: 200";
    is_deeply [@{ $r->{json} }{qw(kind apiVersion items)}], [$_->[1], $_->[2], []],
        "... an empty $_->[1]";
}

ok $k8s->apply({ apiVersion => 'storage.k8s.io/v1', kind => 'StorageClass',
                 metadata => { name => 't78-fast' },
                 provisioner => 'kubernetes.io/no-provisioner' }),
    '(a StorageClass made by the admin)';
$r = call(tenant => $B, path => '/apis/storage.k8s.io/v1/storageclasses');
is_deeply names($r), ['t78-fast'],
    'a tenant whose spec lists storageclasses in cluster_resources sees them';
$r = call(tenant => $B, path => '/apis/storage.k8s.io/v1/storageclasses/t78-fast');
is $r->{status}, 200, '... and gets one';
$r = call(tenant => $B, path => '/api/v1/nodes');
is_deeply [$r->{status}, $r->{json}{kind}, $r->{json}{items}], [200, 'NodeList', []],
    '... nodes stay an empty list even when listed there';
$r = call(path => '/apis/storage.k8s.io/v1/storageclasses');
is_deeply names($r), [], 'a tenant whose spec does not: an empty list';
$r = call(path => '/apis/storage.k8s.io/v1/storageclasses/t78-fast');
is $r->{status}, 403, '... and a get of one is its own ServiceAccount\'s: 403';
$r = call(tenant => $B, method => 'DELETE',
          path => '/apis/storage.k8s.io/v1/storageclasses/t78-fast');
is $r->{status}, 403, 'a write to a visible cluster-scoped resource: 403 (as the tenant)';

# --- a big list, chunked within its window ----------------------------------------

my $blob = 'z' x 250_000;
ok $k8s->apply({ apiVersion => 'v1', kind => 'List', items => [
        map { { apiVersion => 'v1', kind => 'ConfigMap',
                metadata => { name => "bulk-$_", namespace => $APPS },
                data => { k => $blob } } } 1 .. 24 ] }, '--server-side'),
    '(24 configmaps of 250 KB made by the admin)';
my $W = 300_000;
my $bl = treq(path => "/api/v1/namespaces/$APPS/configmaps", window => $W);
my $head = $srv->take(sub { is_msg($_[0], $bl, qr/^tunnel_response$/) }, 30);
is $head && $head->{msg}{status}, 200, 'a list of about 6 MB: 200';
my (@first, $got);
wait_until(sub {
    push @first, $srv->take_all(sub { is_msg($_[0], $bl, qr/^tunnel_data$/) }, 0.5);
    $got = 0;
    $got += length decode_base64($_->{msg}{data}) for @first;
    $got >= $W }, 60);
push @first, $srv->take_all(sub { is_msg($_[0], $bl, qr/^tunnel_data$/) }, 1);
$got = 0;
$got += length decode_base64($_->{msg}{data}) for @first;
ok @first > 1, 'its body comes in chunks: ' . scalar(@first);
ok !(grep { length(decode_base64($_->{msg}{data})) > 16384 } @first),
    '... of at most 16 KiB';
is $got, $W, "... exactly the window ($W bytes) until the reader grants more";
ok !(grep { $_->{msg}{end} } @first), '... not ended';

$r = call(path => "/api/v1/namespaces/$APPS/configmaps/one");
is $r->{status}, 200, 'while that reader grants nothing, another request is answered';
is scalar($srv->take_all(sub { is_msg($_[0], $bl, qr/^tunnel_data$/) }, 1)), 0,
    '... and the paused one stays paused';

grant($bl, $got);
my $rest = tbody($bl, { body => '' });
ok $rest->{end}, 'granted again, the list completes';
my $list = eval { $JSON->decode(join('', map { decode_base64($_->{msg}{data}) } @first)
                                . $rest->{body}) };
is scalar(grep { $_->{metadata}{name} =~ /^bulk-/ } @{ $list ? $list->{items} : [] }),
    24, '... with every configmap, the body whole';

# --- the limit, bad input -------------------------------------------------------------

my @open = map { treq(path => "/api/v1/namespaces/$APPS/configmaps", query => 'watch=true') } 1 .. $LIMIT;
for my $o (@open) {
    $srv->take(sub { is_msg($_[0], $o, qr/^tunnel_response$/) }, 30);
}
$r = call(path => "/api/v1/namespaces/$APPS/configmaps/one");
is $r->{status}, 503, "past --max-tunnel-requests ($LIMIT running): 503";
is $r->{json}{reason}, 'ServiceUnavailable', '... a Status ServiceUnavailable';
send_msg({ tunnel_cancel => { id => "$_" } }) for @open;
ok wait_until(sub { call(path => "/api/v1/namespaces/$APPS/configmaps/one")->{status} == 200 }, 20),
    '... and once they are cancelled, requests pass again';

$r = call(path => "/api/v1/namespaces/$APPS/../../api/v1/secrets");
is $r->{status}, 400, 'a path with ".." segments: 400';
like $r->{json}{message} // '', qr/"\.\." segment/, '... saying why';
$r = call(path => '/api/v1/namespaces/%6bube-system/secrets');
is $r->{status}, 400, 'a percent-encoded path: 400';
$r = call(tenant => 'nobody', path => "/api/v1/namespaces/$APPS/configmaps");
is $r->{status}, 503, 'a tenant not on this cluster: 503';
$r = call(role => 'admin', path => "/api/v1/namespaces/$APPS/configmaps");
is $r->{status}, 403, 'an unknown role: 403';
send_msg({ tunnel_data => { id => '999999', data => encode_base64('x'), end => $true } });
send_msg({ tunnel_window => { id => '999999', increment => 5 } });
$r = call(path => "/api/v1/namespaces/$APPS/configmaps/one");
is $r->{status}, 200, 'messages for an unknown id are ignored: the Operator goes on';

# --- the stream ends: every request is abandoned ---------------------------

$before = watchers();
my $lw = treq(path => "/api/v1/namespaces/$APPS/configmaps", query => 'watch=true');
$srv->take(sub { is_msg($_[0], $lw, qr/^tunnel_response$/) }, 30);
ok wait_until(sub { watchers() == $before + 1 }, 30), 'a watch runs';
my $off = $op->log_offset;
$srv->cmd(op => 'end', code => 'UNAVAILABLE', details => 't78: going away');
ok $op->wait_log(qr/tunnel: the stream ended: 1 request\(s\) abandoned/, 30, $off),
    'the stream ends: the Operator abandons the request' or diag $op->log_text;
ok wait_until(sub { watchers() == $before }, 30),
    '... and its watch is gone from the API server';
my $c2 = $srv->event('connect', 60);
$n = $c2 ? $c2->{n} : $n;
ok $c2 && $srv->msg($n, 'hello', 30), 'the Operator connects again';
ok wait_until(sub { call(path => "/api/v1/namespaces/$APPS/configmaps/one")->{status} == 200 }, 30),
    '... and the tunnel serves on the new stream';

ok $op->alive, 'the Operator is up';
is $op->stop(10), 0, 'SIGTERM: exit 0';
is_deeply [$op->sanitizer_reports], [], 'no sanitizer report';
is_deeply [grep { /\[error\]/ } $op->log_since(0)], [], 'no [error] in its log';
diag $op->log_text unless Test::More->builder->is_passing;
done_testing;
