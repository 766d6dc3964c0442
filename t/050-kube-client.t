# The Operator's Kubernetes client (operator/src/kn_kube.c, kn_watch.c,
# kn_kubeconfig.c) against a real control plane (t/k8s/control-plane.sh):
# server-side apply and field ownership, get, paginated list, delete with
# propagation (the real garbage collector), watch with kubectl making the
# changes, relist after 410 Gone, watches surviving an apiserver restart,
# service-account token rotation (TokenRequest), the rate limit and the
# response bounds.  Retry-After on 429/503, timeouts and an HTTP 410 on a
# watch are played by a small HTTPS server in this file, because a real
# apiserver cannot be made to answer them on cue.
#
# operator/test/kube_client_test.c is compiled here twice, plainly and with
# -fsanitize=address,undefined (leaks included), and every scenario runs
# with both.
use strict;
use warnings;

use File::Temp qw(tempdir);
use IO::Select;
use JSON::PP;
use POSIX qw(:sys_wait_h);
use Test::More;
use Time::HiRes qw(time sleep);

use KubeNova::K8s;

my $repo = do { my $d = __FILE__; $d =~ s{[^/]*$}{}; $d = '.' if $d eq '';
                `cd $d/.. && pwd` };
chomp $repo;

my $tmp = tempdir('kn-050-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $json = JSON::PP->new->canonical;

# the control plane's build also installs what the client needs
# (scripts/install-deps.sh k8s: libcurl, jansson, libyaml, kubectl …)
KubeNova::K8s->build("$tmp/build.log");

# -- the test program, plain and sanitized ---------------------------------

my @pkgs = qw(libcurl jansson yaml-0.1);
my $cflags = `pkg-config --cflags @pkgs`;
my $libs = `pkg-config --libs @pkgs`;
BAIL_OUT("pkg-config @pkgs failed: run scripts/install-deps.sh k8s")
    if $? != 0;
chomp($cflags, $libs);

my @srcs = map { "$repo/operator/$_" } qw(test/kube_client_test.c
    src/kn_kube.c src/kn_kubeconfig.c src/kn_watch.c src/kn_loop.c
    src/kn_log.c);
push @srcs, "$repo/ngx_kubenova_yaml.c";

my %bin;
for my $v (['plain', ''],
           ['sanitized', '-fsanitize=address,undefined '
                         . '-fno-sanitize-recover=all -fno-omit-frame-pointer'])
{
    my ($name, $san) = @$v;
    my $out = "$tmp/kube_client_test.$name";
    my $cmd = "gcc -std=gnu11 -Wall -Wextra -Werror -O1 -g $san "
            . "-I$repo/operator/src -I$repo $cflags -o $out @srcs $libs";
    my $log = `$cmd 2>&1`;
    ok $? == 0, "kube_client_test builds ($name)" or diag $log;
    $bin{$name} = $out;
}
BAIL_OUT('the test program does not build') if grep { !-x } values %bin;

$ENV{ASAN_OPTIONS} = 'detect_leaks=1:exitcode=86:abort_on_error=0';
$ENV{UBSAN_OPTIONS} = 'print_stacktrace=1:halt_on_error=1';

# -- checks without a server -------------------------------------------------

for my $name (sort keys %bin) {
    mkdir "$tmp/unit-$name";
    my $out = `$bin{$name} unit $tmp/unit-$name 2>&1`;
    my $rc = $? >> 8;
    my @not = grep { /^not ok/ } split /\n/, $out;
    ok $rc == 0 && $out =~ /^1\.\.\d+$/m && !@not,
        "unit checks: paths, watch line splitter, kubeconfig ($name)"
        or diag $out;
}

# -- the control plane ------------------------------------------------------

my $k8s = KubeNova::K8s->start;
my $kc = $k8s->{kubeconfig};
ok $k8s->{server} =~ m{^https://127\.0\.0\.1:\d+$},
    "control plane at $k8s->{server}";

# Runs the program to completion; returns (exit code, [JSON lines], stderr).
sub run_prog {
    my ($bin, @args) = @_;
    my $err = "$tmp/stderr." . int(rand(1e9));
    my $cmd = join ' ', map { KubeNova::K8s::_quote($_) } $bin, @args;
    my @out = `$cmd 2>$err`;
    my $rc = $? >> 8;
    my $stderr = do { local (@ARGV, $/) = ($err); <> // '' };
    unlink $err;
    my @objs = map { my $l = $_; eval { decode_json($l) } // { raw => $l } }
               grep { /\S/ } @out;
    return ($rc, \@objs, $stderr);
}

# a result line (the first); the stats line is the last
sub result { my ($objs) = @_; return $objs->[0] // {} }

sub write_file {
    my ($path, $text) = @_;
    open my $fh, '>', "$path.new" or die "$path: $!";
    print $fh $text;
    close $fh;
    rename "$path.new", $path or die "$path: $!";    # atomic, like kubelet
}

sub clean_exit {
    my ($rc, $stderr, $what) = @_;
    ok $rc == 0 && $stderr !~ /AddressSanitizer|LeakSanitizer|runtime error/,
        "$what: clean exit, no sanitizer report" or diag "exit $rc: $stderr";
}

sub wait_until {
    my ($cond, $timeout) = @_;
    my $end = time + ($timeout // 30);
    while (time < $end) {
        my $r = $cond->();
        return $r if $r;
        sleep 0.2;
    }
    return;
}

# A long-running program (watch, poll) whose JSON lines are read as they come.
package Running {
    sub new {
        my ($class, $bin, @args) = @_;
        my $err = "$tmp/stderr.run." . int(rand(1e9));
        my $pid = open(my $fh, '-|') // die "fork: $!";
        if ($pid == 0) {
            open STDERR, '>', $err or die;
            exec $bin, @args or die "exec: $!";
        }
        return bless { pid => $pid, fh => $fh, buf => '', lines => [],
                       err => $err, seen => [] }, $class;
    }

    # the next line for which $match returns true (earlier ones are kept in
    # seen), or undef after $timeout seconds
    sub next_match {
        my ($self, $match, $timeout) = @_;
        my $end = Time::HiRes::time() + ($timeout // 20);
        my $sel = IO::Select->new($self->{fh});
        while (1) {
            while (my $l = shift @{ $self->{lines} }) {
                my $o = eval { JSON::PP::decode_json($l) } // { raw => $l };
                push @{ $self->{seen} }, $o;
                return $o if $match->($o);
            }
            my $left = $end - Time::HiRes::time();
            return undef if $left <= 0;
            next unless $sel->can_read($left);
            my $n = sysread $self->{fh}, my $chunk, 65536;
            return undef if !$n;
            $self->{buf} .= $chunk;
            while ($self->{buf} =~ s/^([^\n]*)\n//) {
                push @{ $self->{lines} }, $1 if length $1;
            }
        }
    }

    # SIGTERM, then (exit code, [remaining lines], stderr)
    sub stop {
        my ($self) = @_;
        kill 'TERM', $self->{pid};
        my $fh = $self->{fh};
        my @rest = (@{ $self->{lines} }, split /\n/, $self->{buf});
        push @rest, <$fh>;
        close $fh;
        my $rc = $? >> 8;
        my $stderr = do { local (@ARGV, $/) = ($self->{err}); <> // '' };
        unlink $self->{err};
        my @objs = map { eval { JSON::PP::decode_json($_) } // { raw => $_ } }
                   grep { /\S/ } @rest;
        return ($rc, \@objs, $stderr);
    }
}

# -- before the scenarios: make resourceVersion 1 too old ------------------
#
# A fresh apiserver's watch cache starts at (about) revision 1 and grows
# while events are young, so watching from resourceVersion=1 does not fail
# on a fresh cluster.  After a restart the cache starts at the current
# revision, and anything older is answered with an ERROR event, code 410
# ("too old resource version"): the watch must relist.  So: some writes,
# then a restart.

$k8s->kubectl('create', 'namespace', 'kn050-warmup');
$k8s->kubectl('-n', 'kn050-warmup', 'create', 'configmap', "w$_") for 1 .. 5;
ok $k8s->restart_apiserver, 'kube-apiserver restarted (fresh watch cache)';

# -- the scenarios, with each build ------------------------------------------

for my $variant (sort keys %bin) {
    my $bin = $bin{$variant};
    my $ns = "kn050-$variant";
    my $t = " ($variant)";
    my @kc = ('--kubeconfig', $kc);

    $k8s->kubectl('create', 'namespace', $ns);

    # ---- server-side apply, idempotence, field ownership
    my $cm = { apiVersion => 'v1', kind => 'ConfigMap',
               metadata => { name => 'ssa', namespace => $ns,
                             labels => { app => 'kn' } },
               data => { a => '1', b => '2' } };
    write_file("$tmp/ssa.json", encode_json($cm));

    my ($rc, $o, $err) = run_prog($bin, @kc, 'apply', 'configmaps',
                                  "$tmp/ssa.json");
    my $r = result($o);
    is $r->{status}, 201, "apply creates$t" or diag explain $o, $err;
    my $rv1 = $r->{body}{metadata}{resourceVersion};
    my ($mf) = grep { $_->{manager} eq 'kubenova-operator' }
               @{ $r->{body}{metadata}{managedFields} // [] };
    ok $mf && $mf->{operation} eq 'Apply'
        && exists $mf->{fieldsV1}{'f:data'}{'f:a'},
        "the fields belong to field manager kubenova-operator (Apply)$t"
        or diag explain $r->{body}{metadata}{managedFields};
    clean_exit($rc, $err, "apply$t");

    ($rc, $o, $err) = run_prog($bin, @kc, 'apply', 'configmaps',
                               "$tmp/ssa.json");
    $r = result($o);
    is $r->{status}, 200, "apply again$t";
    is $r->{body}{metadata}{resourceVersion}, $rv1,
        "nothing changed: same resourceVersion$t";

    # another manager takes a field; a forced apply takes it back
    $k8s->kubectl('-n', $ns, 'patch', 'configmap', 'ssa', '--type=merge',
                  '-p', '{"data":{"a":"changed-by-kubectl"}}');
    is $k8s->kubectl_json('-n', $ns, 'get', 'configmap', 'ssa')->{data}{a},
        'changed-by-kubectl', "kubectl changed a field$t";
    ($rc, $o, $err) = run_prog($bin, @kc, 'apply', 'configmaps',
                               "$tmp/ssa.json");
    $r = result($o);
    is $r->{status}, 200, "apply with force over a conflict$t";
    my $got = $k8s->kubectl_json('-n', $ns, 'get', 'configmap', 'ssa');
    is $got->{data}{a}, '1', "the applied value is back$t";
    my @owners = map { $_->{manager} }
                 grep { exists(($_->{fieldsV1}{'f:data'} // {})->{'f:a'}) }
                 @{ $got->{metadata}{managedFields} };
    is_deeply \@owners, ['kubenova-operator'],
        "data.a is owned by kubenova-operator alone again$t";

    # ---- get
    ($rc, $o, $err) = run_prog($bin, @kc, 'get', 'v1', 'configmaps', $ns,
                               'ssa');
    $r = result($o);
    ok $r->{status} == 200 && $r->{body}{data}{b} eq '2', "get$t";
    ($rc, $o, $err) = run_prog($bin, @kc, 'get', 'v1', 'configmaps', $ns,
                               'missing');
    $r = result($o);
    ok $r->{status} == 404 && $r->{reason} eq 'NotFound'
        && $r->{error} =~ /HTTP 404 NotFound: configmaps "missing" not found/,
        "get of a missing object: 404 with the API's message$t"
        or diag explain $r;
    ($rc, $o, $err) = run_prog($bin, @kc, 'get', 'v1', 'namespaces', '-',
                               $ns);
    is result($o)->{status}, 200, "get of a cluster-scoped object$t";

    # ---- list with pagination: 25 ConfigMaps, 10 a page
    $k8s->apply({ apiVersion => 'v1', kind => 'List', items => [
        map { { apiVersion => 'v1', kind => 'ConfigMap',
                metadata => { name => sprintf('page-%02d', $_),
                              namespace => $ns,
                              labels => { batch => 'p' } } } } 1 .. 25 ] });
    ($rc, $o, $err) = run_prog($bin, @kc, '--limit', 10, '--selector',
                               'batch=p', 'list', 'v1', 'configmaps', $ns);
    $r = result($o);
    is $r->{status}, 200, "list$t";
    is $r->{pages}, 3, "25 objects, limit 10: 3 pages$t";
    is_deeply $r->{names}, [map { sprintf('page-%02d', $_) } 1 .. 25],
        "every object once, in order$t";
    is $r->{kind}, 'ConfigMapList', "one List object$t";
    ok $r->{resourceVersion} =~ /^\d+$/, "with the list's resourceVersion$t";
    is $o->[-1]{stats}{requests}, 3, "one request a page$t";
    clean_exit($rc, $err, "list$t");

    # ---- the same, handed over page by page; a receiver that stops
    ($rc, $o, $err) = run_prog($bin, @kc, '--limit', 10, '--selector',
                               'batch=p', '--pages', 0, 'list', 'v1',
                               'configmaps', $ns);
    $r = result($o);
    is_deeply [@$r{qw(status error pages gathered)}, $r->{page_sizes}],
        [200, undef, 3, 0, [10, 10, 5]],
        "page by page: pages of 10, 10 and 5, nothing gathered$t";
    is_deeply $r->{names}, [map { sprintf('page-%02d', $_) } 1 .. 25],
        "... every object once, in order$t";
    clean_exit($rc, $err, "list page by page$t");

    ($rc, $o, $err) = run_prog($bin, @kc, '--limit', 10, '--selector',
                               'batch=p', '--pages', 2, 'list', 'v1',
                               'configmaps', $ns);
    $r = result($o);
    is_deeply [$r->{error}, $r->{pages}, $o->[-1]{stats}{requests}],
        ['stopped by the page receiver', 2, 2],
        "a page receiver that stops ends the list there$t";
    clean_exit($rc, $err, "list stopped by its receiver$t");

    # ---- delete, with propagation (the controller-manager's collector)
    for my $case (['Background', 0], ['Orphan', 1]) {
        my ($policy, $survives) = @$case;
        my $owner = lc "owner-$policy";
        $k8s->kubectl('-n', $ns, 'create', 'configmap', $owner);
        my $uid = $k8s->kubectl_json('-n', $ns, 'get', 'configmap',
                                     $owner)->{metadata}{uid};
        $k8s->apply({ apiVersion => 'v1', kind => 'ConfigMap',
                      metadata => { name => "$owner-dep", namespace => $ns,
                                    ownerReferences => [{
                                        apiVersion => 'v1',
                                        kind => 'ConfigMap', name => $owner,
                                        uid => $uid }] } });
        ($rc, $o, $err) = run_prog($bin, @kc, '--propagation', $policy,
                                   'delete', 'v1', 'configmaps', $ns, $owner);
        is result($o)->{status}, 200, "delete with propagationPolicy "
                                      . "$policy$t";
        if ($survives) {
            my $dep = wait_until(sub {
                my $d = $k8s->kubectl_json('-n', $ns, 'get', 'configmap',
                                           "$owner-dep");
                $d && !@{ $d->{metadata}{ownerReferences} // [] } ? $d
                                                                  : undef });
            ok $dep, "Orphan: the dependent stays, without its owner$t"
                or diag $k8s->kubectl('-n', $ns, 'get', 'configmap',
                                      "$owner-dep", '-o', 'yaml');
        } else {
            ok wait_until(sub {
                   $k8s->kubectl('-n', $ns, 'get', 'configmap', "$owner-dep");
                   $? != 0 }),
                "Background: the garbage collector deletes the dependent$t"
                or diag $k8s->kubectl('-n', $ns, 'get', 'configmap',
                                      "$owner-dep", '-o', 'yaml');
        }
    }

    # ---- response bound
    $k8s->apply({ apiVersion => 'v1', kind => 'ConfigMap',
                  metadata => { name => 'big', namespace => $ns },
                  data => { blob => 'x' x 20000 } });
    ($rc, $o, $err) = run_prog($bin, @kc, '--max-response', 4096, 'get', 'v1',
                               'configmaps', $ns, 'big');
    $r = result($o);
    ok $r->{status} == 200 && defined $r->{error}
        && $r->{error} =~ /larger than 4096 bytes \(max_response\)/,
        "a response over max_response is a clear error$t"
        or diag explain $r;
    clean_exit($rc, $err, "bounded get$t");
    ($rc, $o, $err) = run_prog($bin, @kc, '--max-response', 4096, 'get', 'v1',
                               'configmaps', $ns, 'ssa');
    is result($o)->{status}, 200, "a smaller one passes$t";

    # ---- watch: changes made with kubectl
    my $w = Running->new($bin, @kc, 'watch', 'v1', 'configmaps', $ns);
    ok $w->next_match(sub { $_[0]{event} eq 'SYNCED' }),
        "watch: the list is reported, then SYNCED$t";
    ok((grep { $_->{event} eq 'ADDED' && $_->{name} eq 'page-25' }
        @{ $w->{seen} }), "watch: listed objects come as ADDED$t");
    $k8s->kubectl('-n', $ns, 'create', 'configmap', 'live',
                  '--from-literal=k=v1');
    my $e = $w->next_match(sub { ($_[0]{name} // '') eq 'live' });
    ok $e && $e->{event} eq 'ADDED' && $e->{data}{k} eq 'v1',
        "watch: ADDED from kubectl create$t" or diag explain $e;
    $k8s->kubectl('-n', $ns, 'patch', 'configmap', 'live', '--type=merge',
                  '-p', '{"data":{"k":"v2"}}');
    $e = $w->next_match(sub { ($_[0]{name} // '') eq 'live' });
    ok $e && $e->{event} eq 'MODIFIED' && $e->{data}{k} eq 'v2',
        "watch: MODIFIED from kubectl patch$t" or diag explain $e;
    $k8s->kubectl('-n', $ns, 'delete', 'configmap', 'live');
    $e = $w->next_match(sub { ($_[0]{name} // '') eq 'live' });
    ok $e && $e->{event} eq 'DELETED', "watch: DELETED from kubectl delete$t";
    is $e->{watch_rv}, $e->{rv}, "watch: resumes from the last event's "
                                  . "resourceVersion$t";

    # the apiserver goes away and comes back: the watch recovers by itself
    ok $k8s->restart_apiserver, "kube-apiserver restarted under the watch$t";
    $k8s->kubectl('-n', $ns, 'create', 'configmap', 'after-restart');
    $e = $w->next_match(sub { ($_[0]{name} // '') eq 'after-restart' }, 60);
    ok $e && $e->{event} eq 'ADDED',
        "watch: a change after the restart arrives$t"
        or diag explain $w->{seen};
    ($rc, $o, $err) = $w->stop;
    ok defined $o->[-1]{stats}, "watch: stops on SIGTERM$t";
    clean_exit($rc, $err, "watch$t");

    # ---- a watch from a too-old resourceVersion: 410 Gone, relist
    $w = Running->new($bin, @kc, '--rv', 1, 'watch', 'v1', 'configmaps', $ns);
    $e = $w->next_match(sub { $_[0]{event} eq 'SYNCED' });
    ok $e && $e->{stats}{gone} >= 1 && $e->{stats}{relists} == 1,
        "watch from resourceVersion 1: 410 Gone, then a relist$t"
        or diag explain $w->{seen};
    ok((grep { $_->{event} eq 'ADDED' && ($_->{name} // '') eq 'ssa' }
        @{ $w->{seen} }), "the relist reports the objects$t");
    $k8s->kubectl('-n', $ns, 'create', 'configmap', 'after-relist');
    $e = $w->next_match(sub { ($_[0]{name} // '') eq 'after-relist' });
    ok $e && $e->{event} eq 'ADDED', "and watching goes on$t";
    ($rc, $o, $err) = $w->stop;
    clean_exit($rc, $err, "watch after 410$t");

    # ---- a watch event over max_line
    $w = Running->new($bin, @kc, '--max-line', 4096, 'watch', 'v1',
                      'configmaps', $ns);
    $w->next_match(sub { $_[0]{event} eq 'SYNCED' });
    $k8s->apply({ apiVersion => 'v1', kind => 'ConfigMap',
                  metadata => { name => 'big2', namespace => $ns },
                  data => { blob => 'y' x 20000 } });
    $e = $w->next_match(sub { $_[0]{event} eq 'ERROR' });
    ok $e && $e->{error} =~ /longer than 4096 bytes \(max_line\)/,
        "a watch event over max_line is a clear error$t" or diag explain $e;
    ($rc, $o, $err) = $w->stop;
    clean_exit($rc, $err, "bounded watch$t");

    # ---- the rate limit: 12 gets, burst 2, 10 per second
    ($rc, $o, $err) = run_prog($bin, @kc, '--qps', 10, '--burst', 2, 'burst',
                               12, 'v1', 'configmaps', $ns, 'ssa');
    my @ok = grep { ($_->{status} // 0) == 200 } @$o;
    my $st = $o->[-1]{stats};
    is scalar(@ok), 12, "rate limit: every request is served$t";
    ok $st->{throttled} > 0 && $st->{elapsed_ms} >= 900,
        "rate limit: 10 beyond the burst wait about a second "
        . "($st->{elapsed_ms} ms)$t" or diag explain $st;
    clean_exit($rc, $err, "rate limit$t");

    # ---- in cluster, with a rotating service-account token
    $k8s->kubectl('-n', $ns, 'create', 'serviceaccount', 'reader');
    $k8s->kubectl('-n', $ns, 'create', 'serviceaccount', 'nobody');
    $k8s->kubectl('-n', $ns, 'create', 'rolebinding', 'reader-view',
                  '--clusterrole=view', "--serviceaccount=$ns:reader");
    write_file("$tmp/tr.json", encode_json({
        apiVersion => 'authentication.k8s.io/v1', kind => 'TokenRequest',
        spec => { expirationSeconds => 3600 } }));
    my %token;
    for my $sa (qw(reader nobody)) {
        ($rc, $o, $err) = run_prog($bin, @kc, 'post', 'v1', 'serviceaccounts',
                                   $ns, $sa, 'token', "$tmp/tr.json");
        $r = result($o);
        $token{$sa} = $r->{body}{status}{token};
        ok $r->{status} == 201 && $token{$sa},
            "TokenRequest for $sa (POST of a subresource)$t"
            or diag explain $r;
    }

    my $sa_dir = "$tmp/sa-$variant";
    mkdir $sa_dir;
    system('cp', $k8s->{ca}, "$sa_dir/ca.crt");
    write_file("$sa_dir/namespace", $ns);
    write_file("$sa_dir/token", "not-a-valid-token\n");

    my $p = Running->new($bin, '--in-cluster', '127.0.0.1', $k8s->{port},
                         $sa_dir, '--token-reread-ms', 1000, 'poll', 'v1',
                         'configmaps', $ns, 'ssa', 200, 300);
    $e = $p->next_match(sub { defined $_[0]{status} });
    is $e->{status}, 401, "in cluster, a bad token: 401$t"
        or diag explain $e;
    write_file("$sa_dir/token", "$token{reader}\n");
    $e = $p->next_match(sub { ($_[0]{status} // 0) == 200 });
    ok $e, "the token file now holds reader's token: 200$t"
        or diag explain [@{ $p->{seen} }[-3 .. -1]];
    write_file("$sa_dir/token", "$token{nobody}\n");
    $e = $p->next_match(sub { ($_[0]{status} // 0) == 403 });
    ok $e && $e->{error} =~ /system:serviceaccount:\Q$ns\E:nobody/,
        "a minute (here a second) later the rotated token is in use: 403 "
        . "for nobody$t" or diag explain $e;
    ($rc, $o, $err) = $p->stop;
    ok $o->[-1]{stats}{token_reads} >= 3, "the token file is re-read$t";
    clean_exit($rc, $err, "in-cluster poll$t");
}

# -- what a real apiserver will not do on cue: a small HTTPS server ---------

SKIP: {
    skip 'IO::Socket::SSL (libio-socket-ssl-perl) is not installed', 1
        unless eval { require IO::Socket::SSL; 1 };

    my $state = "$tmp/fake";
    mkdir $state;
    my $srv = IO::Socket::SSL->new(
        LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 16,
        ReuseAddr => 1, SSL_server => 1,
        SSL_cert_file => "$k8s->{dir}/apiserver.crt",
        SSL_key_file => "$k8s->{dir}/apiserver.key")
        or die "fake apiserver: " . IO::Socket::SSL::errstr();
    my $port = $srv->sockport;

    my $server_pid = fork // die "fork: $!";
    if ($server_pid == 0) {
        setpgrp(0, 0);              # its children go with it at the end
        fake_apiserver($srv, $state);
        POSIX::_exit(0);
    }
    close $srv;

    my $fake_kc = "$tmp/fake.kubeconfig";
    write_file($fake_kc, <<"KC");
apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster:
    server: "https://127.0.0.1:$port"
    certificate-authority: "$k8s->{ca}"
users:
- name: u
  user: {token: fake-token}
contexts:
- name: fake
  context: {cluster: fake, user: u, namespace: fake}
current-context: fake
KC

    for my $variant (sort keys %bin) {
        my $bin = $bin{$variant};
        my $t = " ($variant)";
        my @kc = ('--kubeconfig', $fake_kc);
        unlink glob "$state/*";

        # 429 with Retry-After: 1, then 200
        my ($rc, $o, $err) = run_prog($bin, @kc, 'get', 'v1', 'configmaps',
                                      'fake', 'c429');
        my $r = result($o);
        is $r->{status}, 200, "429, Retry-After, then 200$t"
            or diag explain $o, $err;
        is $r->{attempts}, 2, "two attempts$t";
        my @at = read_times("$state/c429.times");
        ok @at == 2 && $at[1] - $at[0] >= 0.9,
            "the retry waited for Retry-After: 1 ("
            . sprintf('%.2f', ($at[1] // 0) - ($at[0] // 0)) . " s)$t";
        ok(($at[2] // '') eq '' , "no third request$t");
        is $o->[-1]{stats}{retries}, 1, "one retry counted$t";
        clean_exit($rc, $err, "429$t");

        # 503 every time: retried max_retries times, then reported
        ($rc, $o, $err) = run_prog($bin, @kc, '--max-retries', 2, 'get', 'v1',
                                   'configmaps', 'fake', 'c503');
        $r = result($o);
        ok $r->{status} == 503 && $r->{attempts} == 3
            && $r->{error} =~ /HTTP 503 ServiceUnavailable: try later/,
            "503 after max_retries: the error is reported$t"
            or diag explain $r;

        # no answer: the request times out
        ($rc, $o, $err) = run_prog($bin, @kc, '--timeout-ms', 800, 'get', 'v1',
                                   'configmaps', 'fake', 'slow');
        $r = result($o);
        ok $r->{status} == 0 && $r->{error} =~ /timed out/i,
            "a request past timeout_ms fails with a timeout$t"
            or diag explain $r;
        clean_exit($rc, $err, "timeout$t");

        # a watch answered by HTTP 410 (not an ERROR event): relist
        my $w = Running->new($bin, @kc, '--rv', 3, 'watch', 'v1',
                             'configmaps', 'fake');
        my $e = $w->next_match(sub { $_[0]{event} eq 'SYNCED' });
        ok $e && $e->{stats}{gone} == 1 && $e->{stats}{relists} == 1
            && $e->{watch_rv} eq '10',
            "HTTP 410 on a watch: relist from the list's resourceVersion$t"
            or diag explain $w->{seen};
        $e = $w->next_match(sub { ($_[0]{event} // '') eq 'MODIFIED' });
        ok $e && $e->{rv} eq '11', "then the watch goes on from there$t";
        ok((grep { m{resourceVersion=10&} } read_lines("$state/requests")),
            "the second watch asked for resourceVersion=10$t");
        ($rc, $o, $err) = $w->stop;
        clean_exit($rc, $err, "watch after HTTP 410$t");

        # 20000 events at once: queued, paused, delivered in order
        $w = Running->new($bin, @kc, '--rv', 5, '--quiet', 1, 'watch', 'v1',
                          'configmaps', 'bulk');
        $e = $w->next_match(sub { $_[0]{event} eq 'ERROR' }, 60);
        ok $e && $e->{error} =~ /end of the bulk/ && $e->{code} == 500,
            "an ERROR event (500) ends the bulk stream, reported$t"
            or diag explain $e;
        ok !(grep { $_->{event} eq 'OUT_OF_ORDER' } @{ $w->{seen} }),
            "every event in order$t";
        ($rc, $o, $err) = $w->stop;
        my $s = $o->[-1]{stats} // {};
        ok(($s->{quiet_events} // 0) == 20000
           && ($s->{quiet_last_rv} // '') eq '20005',
           "all 20000 events delivered before the error$t")
            or diag explain $s;
        ok(($s->{pauses} // 0) >= 1,
           "the stream was paused while the queue was full$t")
            or diag explain $s;
        clean_exit($rc, $err, "bulk watch$t");
    }

    kill 'TERM', -$server_pid;
    waitpid $server_pid, 0;
}

done_testing;


sub read_lines {
    my ($path) = @_;
    open my $fh, '<', $path or return;
    chomp(my @l = <$fh>);
    return @l;
}

sub read_times { return read_lines(@_) }

sub bump {
    my ($path) = @_;
    my @l = read_lines($path);
    open my $fh, '>>', $path or die "$path: $!";
    print $fh time, "\n";
    close $fh;
    return scalar @l;
}

# One child per connection, one request per connection; state in files.
sub fake_apiserver {
    my ($srv, $state) = @_;
    local $SIG{CHLD} = 'IGNORE';
    local $SIG{TERM} = sub { POSIX::_exit(0) };
    while (1) {
        my $c = $srv->accept or next;
        my $pid = fork;
        next if !defined $pid;
        if ($pid) { $c->close(SSL_no_shutdown => 1); next; }
        my $req = '';
        while (my $l = <$c>) {
            $req .= $l;
            last if $l =~ /^\r?\n$/;
        }
        my ($path) = $req =~ m{^GET (\S+) HTTP/1\.1};
        $path //= '';
        open my $log, '>>', "$state/requests";
        print $log "$path\n";
        close $log;
        my $status = sub {
            my ($code, $reason, $msg, @h) = @_;
            my $b = JSON::PP::encode_json({ kind => 'Status',
                apiVersion => 'v1', status => 'Failure', message => $msg,
                reason => $reason, code => $code });
            print $c "HTTP/1.1 $code $reason\r\nContent-Type: application/json"
                . "\r\nContent-Length: " . length($b) . "\r\n"
                . join('', map { "$_\r\n" } @h) . "Connection: close\r\n\r\n$b";
        };
        my $ok = sub {
            my ($b) = @_;
            print $c "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                . "Content-Length: " . length($b) . "\r\n"
                . "Connection: close\r\n\r\n$b";
        };

        if ($path =~ m{/configmaps/c429$}) {
            if (bump("$state/c429.times") == 0) {
                $status->(429, 'TooManyRequests', 'slow down',
                          'Retry-After: 1');
            } else {
                $ok->('{"kind":"ConfigMap","apiVersion":"v1","metadata":'
                      . '{"name":"c429","resourceVersion":"7"}}');
            }
        } elsif ($path =~ m{/configmaps/c503$}) {
            $status->(503, 'ServiceUnavailable', 'try later',
                      'Retry-After: 1');
        } elsif ($path =~ m{/configmaps/slow$}) {
            sleep 5;
            $ok->('{}');
        } elsif ($path =~ m{/namespaces/bulk/configmaps\?watch=1}) {
            print $c "HTTP/1.1 200 OK\r\nContent-Type: application/json"
                . "\r\nConnection: close\r\n\r\n";
            if (bump("$state/bulk") == 0) {
                # far more than the watch queues before it pauses the stream
                my $all = '';
                for my $rv (6 .. 20005) {
                    $all .= '{"type":"MODIFIED","object":{"kind":"ConfigMap",'
                          . '"metadata":{"name":"b' . ($rv % 50) . '",'
                          . '"namespace":"bulk","resourceVersion":"' . $rv
                          . '"}}}' . "\n";
                }
                $all .= '{"type":"ERROR","object":{"kind":"Status",'
                      . '"apiVersion":"v1","status":"Failure","message":'
                      . '"end of the bulk","reason":"InternalError",'
                      . '"code":500}}' . "\n";
                print $c $all;
                $c->flush;
            }
            sleep 30;
        } elsif ($path =~ m{/configmaps\?watch=1}) {
            if (bump("$state/watches") == 0) {
                $status->(410, 'Expired', 'too old resource version: 3 (10)');
            } else {
                print $c "HTTP/1.1 200 OK\r\nContent-Type: application/json"
                    . "\r\nConnection: close\r\n\r\n";
                print $c '{"type":"BOOKMARK","object":{"kind":"ConfigMap",'
                    . '"metadata":{"resourceVersion":"10"}}}' . "\n";
                print $c '{"type":"MODIFIED","object":{"kind":"ConfigMap",'
                    . '"metadata":{"name":"x","namespace":"fake",'
                    . '"resourceVersion":"11"}}}' . "\n";
                $c->flush;
                sleep 30;
            }
        } elsif ($path =~ m{/configmaps\?limit=}) {
            $ok->('{"kind":"ConfigMapList","apiVersion":"v1","metadata":'
                  . '{"resourceVersion":"10"},"items":[{"metadata":'
                  . '{"name":"x","namespace":"fake","resourceVersion":"9"}}]}');
        } else {
            $status->(404, 'NotFound', "no $path");
        }
        $c->close(SSL_fast_shutdown => 1);
        POSIX::_exit(0);
    }
}
