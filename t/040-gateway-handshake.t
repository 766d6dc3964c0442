# Operator gateway: the hello and its difference.  A cluster's Operator
# says what it has applied; the Manager answers a Welcome and exactly what
# differs: new objects and newer generations (ObjectUpdate), objects it
# holds that the Manager does not know or has tombstoned (ObjectDelete),
# nothing for what is current; a tombstone the cluster does not hold is
# done at once (no message, the REST object goes).  Authentication, the
# first-message rule, and the cluster's state in the REST API (connected,
# versions, last_seen_at; connected false after the stream ends).  The
# gateway speaks mTLS: each stream presents the certificate its cluster got
# by registering (KubeNova::Gateway's tls mode; the refusals of
# registration and of certificates are t/073's).
use strict;
use warnings;

use Test::More;

use KubeNova::Gateway qw(wait_until json_true);
use KubeNova::Pg qw(require_pg psql);

require_pg();

my $gw = KubeNova::Gateway->start(tls => 1, heartbeat => '10s');
my $op = $gw->operator;

my $C = 'gw40-c';
my $T = 'gw40-t';
my $identity = $gw->create_cluster($C);
like $identity->{certificate}, qr/^-----BEGIN CERTIFICATE-----/,
    'the cluster registered: it has a certificate';
$gw->create_tenant($T, $C);
$gw->create_app($T, $_) for qw(a1 a2 a3);

my %gen = map { ("$_->{kind} $_->{name}" => $_->{generation}) }
          @{ $gw->in_sync_applied($C) };
is_deeply [sort keys %gen],
    ['Application gw40-t/a1', 'Application gw40-t/a2', 'Application gw40-t/a3',
     'Tenant gw40-t'],
    'four objects are placed on the cluster';

sub connected {
    my $j = $gw->api(GET => "clusters/$C")->{json};
    return ref $j ? ($j->{connected} ? "1" : "0") : "none";
}

my $n = 0;

# a new stream; returns (id, welcome event, [messages after it], end event)
sub hello {
    my (%h) = @_;
    my $id = 's' . ++$n;
    my $settle = delete $h{settle} // 1;
    $op->open($id, hello => { cluster => $C,
                              operator_version => 'op-0.4.0',
                              kubernetes_version => 'v1.29.3', %h });
    my $w = $op->next_msg($id, 10);
    my @rest = $op->msgs($id, undef, $settle);
    return ($id, $w, \@rest);
}

sub refs {
    my ($msgs) = @_;
    return [map { "$_->{type} $_->{msg}{kind} $_->{msg}{name} "
                  . "$_->{msg}{generation}" } @$msgs];
}

# --- authentication and the first message -------------------------------

{
    $op->open('bad1', hello => { cluster => $C }, tls => $gw->tls(undef));
    my $end = $op->end('bad1', 10);
    is $end->{code}, 'UNAUTHENTICATED', 'no client certificate: UNAUTHENTICATED';
    like $end->{details}, qr/client certificate/, '... and why';

    # a certificate for a cluster that is gone (revoked with it)
    $gw->create_cluster('gw40-gone');
    $gw->api_ok(DELETE => 'clusters/gw40-gone');
    $op->open('bad2', hello => { cluster => 'gw40-gone' });
    $end = $op->end('bad2', 10);
    is $end->{code}, 'UNAUTHENTICATED', 'a deleted cluster: UNAUTHENTICATED';
    is $end->{details}, 'unknown cluster, or its certificate is revoked or expired',
        '... and why';

    $op->open('bad3');
    $op->send('bad3', { heartbeat => { sent_at_unix_ms => 1 } });
    $end = $op->end('bad3', 10);
    is $end->{code}, 'FAILED_PRECONDITION', 'a first message that is not a hello';

    $op->open('bad4', hello => { cluster => '' });
    $end = $op->end('bad4', 10);
    is $end->{code}, 'INVALID_ARGUMENT', 'a hello without a cluster name';

    is psql("SELECT connected FROM clusters WHERE name = '$C'"), 'f',
        'none of them connected the cluster';
}

# --- an empty cluster gets everything ------------------------------------

{
    my $off = $gw->ngx->error_log_offset;
    my ($id, $w, $rest) = hello();
    is $w->{type}, 'welcome', 'hello answered with a Welcome';
    is $w->{msg}{cluster}, $C, '... naming the cluster';
    is $w->{msg}{heartbeat_interval_ms}, 10000,
        '... with the heartbeat interval of kubenova_grpc_heartbeat';
    is $w->{msg}{updates}, 4, '... announcing 4 updates';
    is $w->{msg}{deletes}, 0, '... and no deletion';
    is_deeply [sort @{ refs($rest) }],
        [sort map { "update $_ $gen{$_}" } keys %gen],
        'then one ObjectUpdate per object, at its desired generation';
    my @gens = map { $_->{msg}{generation} } @$rest;
    is_deeply \@gens, [sort { $a <=> $b } @gens], '... in generation order';

    my ($tenant) = grep { $_->{msg}{kind} eq 'Tenant' } @$rest;
    my $spec = JSON::PP->new->decode($tenant->{msg}{payload_text});
    is $spec->{plan}, 'small', 'the Tenant payload is its spec (JSON)';
    my ($a1) = grep { $_->{msg}{name} eq "$T/a1" } @$rest;
    my $doc = JSON::PP->new->decode($a1->{msg}{payload_text});
    is $doc->{metadata}{name}, 'a1', 'an Application payload is its document';
    is $doc->{spec}{components}[0]{properties}{image}, 'nginx:1.25',
        '... as the REST API stored it';

    # the cluster's state in the REST API
    my $cl = $gw->api(GET => "clusters/$C")->{json};
    ok $cl->{connected}, 'GET cluster: connected';
    is $cl->{operator_version}, 'op-0.4.0', '... operator_version';
    is $cl->{kubernetes_version}, 'v1.29.3', '... kubernetes_version';
    ok defined $cl->{last_seen_at} && defined $cl->{connected_at},
        '... last_seen_at and connected_at';
    # the list, page by page (other tests' clusters share the database)
    my ($listed, $cont, $pages);
    do {
        my $j = $gw->api(GET => 'clusters?limit=500'
                         . (defined $cont ? "&continue=$cont" : ''))->{json};
        ($listed) = grep { $_->{name} eq $C } @{ $j->{items} || [] };
        $cont = $j->{continue};
    } while (!$listed && defined $cont && ++$pages < 100);
    ok $listed->{connected}, 'the cluster list says so too';
    ok !exists $cl->{secret} && !exists $cl->{join_token},
        'neither the secret nor the join token is shown again';
    ok $gw->stream_worker($C, $off), 'the connection is logged';

    $op->close($id);    # the Operator ends its stream
    my $end = $op->end($id, 10);
    is $end->{code}, 'OK', 'a stream the Operator closes ends OK';
    ok wait_until(sub {
            connected() eq "0"
        }, 10), 'connected is false once the stream is gone';
    my $after = $gw->api(GET => "clusters/$C")->{json};
    is $after->{last_seen_at}, $cl->{last_seen_at},
        'last_seen_at stays where the stream left it';
}

# --- current, older, unknown ------------------------------------------

my @all = map { { kind => (split / /)[0], name => (split / /)[1],
                  generation => $gen{$_} } } sort keys %gen;

{
    my ($id, $w, $rest) = hello(applied => \@all, settle => 1.5);
    is_deeply [@{ $w->{msg} }{qw(updates deletes)}], [0, 0],
        'everything current: Welcome says 0 and 0';
    is_deeply refs($rest), [], '... and nothing is sent';
    $op->cancel($id);
    $op->end($id, 10);
}

{
    my @applied = map { { %$_ } } @all;
    my ($a2) = grep { $_->{name} eq "$T/a2" } @applied;
    $a2->{generation} -= 1;              # the cluster runs an older one
    push @applied, { kind => 'Application', name => "$T/zombie",
                     generation => 77 },  # one the Manager never placed
                   { kind => 'Widget', name => 'w', generation => 5 };
    my ($id, $w, $rest) = hello(applied => \@applied);
    is_deeply [@{ $w->{msg} }{qw(updates deletes)}], [1, 2],
        'older, unknown, unknown kind: Welcome says 1 and 2';
    # generations come from one global sequence: their values (and so the
    # order) depend on what ran before in the same database
    my %g = ("update Application $T/a2 $gen{\"Application $T/a2\"}"
                 => $gen{"Application $T/a2"},
             "delete Widget w 5" => 5,
             "delete Application $T/zombie 77" => 77);
    is_deeply refs($rest), [sort { $g{$a} <=> $g{$b} or $a cmp $b } keys %g],
        'the older one is updated, the unknown ones deleted (generation order)';
    $op->cancel($id);
    $op->end($id, 10);
}

# --- tombstones ---------------------------------------------------------

my $del = $gw->api(DELETE => "tenants/$T/apps/a3");
is $del->{status}, 202, 'deleting an app the cluster holds: 202';
is $del->{json}{status}, 'deleting', '... and it is deleting';
my $tomb = $gw->desired_generation($C, 'Application', "$T/a3");
cmp_ok $tomb, '>', $gen{"Application $T/a3"}, 'the tombstone has a new generation';

{
    my ($id, $w, $rest) = hello(applied => \@all);
    is_deeply [@{ $w->{msg} }{qw(updates deletes)}], [0, 1],
        'a tombstone the cluster holds: one deletion';
    is_deeply refs($rest), ["delete Application $T/a3 $tomb"],
        '... an ObjectDelete at the tombstone generation';
    $op->cancel($id);
    $op->end($id, 10);
    is $gw->api(GET => "tenants/$T/apps/a3")->{status}, 200,
        'not acknowledged: the app is still there (deleting)';
}

{
    my @applied = grep { $_->{name} ne "$T/a3" } @all;
    my ($id, $w, $rest) = hello(applied => \@applied);
    is_deeply [@{ $w->{msg} }{qw(updates deletes)}], [0, 0],
        'a tombstone the cluster does not hold: Welcome says 0 and 0';
    is_deeply refs($rest), [], '... and nothing is sent';
    is $gw->api(GET => "tenants/$T/apps/a3")->{status}, 404,
        'the deletion is done: the app is gone from the REST API';
    is psql("SELECT count(*) FROM desired_state WHERE name = '$T/a3'"), 0,
        '... and so is its tombstone';
    $op->cancel($id);
    is $op->end($id, 10)->{code}, 'CANCELLED', 'a stream the Operator resets';
}

# --- a malformed applied list -------------------------------------------

{
    my ($id) = ('dup');
    $op->open($id, hello => { cluster => $C,
                              applied => [$all[0], $all[0]] });
    my $end = $op->end($id, 10);
    is $end->{code}, 'INVALID_ARGUMENT', 'an object listed twice: INVALID_ARGUMENT';
    like $end->{details}, qr/listed more than once/, '... saying so';
}

ok wait_until(sub {
        connected() eq "0"
    }, 10), 'connected false after the last stream';

$op->quit;
is_deeply $gw->log_problems(0), [], 'no [alert] or [emerg]';
$gw->stop;
done_testing;
