package KubeNova::Pg;

# The throwaway PostgreSQL of t/harness, seen from a test: run SQL with
# psql, hold a lock from another session, stop/start/restart the server.
#
#   psql($sql)                 output of psql -tA (dies on error)
#   my $h = hold_lock($table); an open transaction holding ACCESS EXCLUSIVE
#   $h->release;               COMMIT and end that session
#   pg_ctl('restart'|'stop'|'kill'|'start')
#   require_pg();              skip_all unless the harness set things up

use strict;
use warnings;

use Exporter 'import';
use IO::Handle;
use Test::More ();
use Time::HiRes qw(sleep time);

our @EXPORT_OK = qw(psql hold_lock pg_ctl require_pg conninfo);

sub conninfo { $ENV{TEST_NGINX_PG_CONNINFO} }

sub require_pg {
    return if $ENV{TEST_NGINX_PG_CONNINFO} && $ENV{KN_PG_SCRIPT};
    Test::More::plan(skip_all => 'needs the PostgreSQL of t/harness');
}

sub psql {
    my ($sql) = @_;
    open my $fh, '-|', 'psql', conninfo(), '-X', '-q', '-tA',
        '-v', 'ON_ERROR_STOP=1', '-c', $sql
        or die "psql: $!";
    local $/;
    my $out = <$fh> // '';
    close $fh or die "psql failed ($?) on: $sql\n";
    $out =~ s/\s+\z//;
    return $out;
}

sub hold_lock {
    my ($table) = @_;
    my $pid = open my $in, '|-', 'psql', conninfo(), '-X', '-q',
        '-v', 'ON_ERROR_STOP=1'
        or die "psql: $!";
    $in->autoflush(1);
    print $in "BEGIN;\nLOCK TABLE $table IN ACCESS EXCLUSIVE MODE;\n"
              . "SELECT 'kubenova-test-lock-holder';\n";

    my $deadline = time + 10;
    while (time < $deadline) {
        my $n = psql("SELECT count(*) FROM pg_locks l JOIN pg_class c "
                     . "ON c.oid = l.relation WHERE c.relname = '$table' "
                     . "AND l.mode = 'AccessExclusiveLock' AND l.granted");
        return bless { in => $in, pid => $pid }, __PACKAGE__ if $n;
        sleep 0.05;
    }
    die "could not take the lock on $table\n";
}

sub release {
    my ($self) = @_;
    return unless $self->{in};
    my $in = delete $self->{in};
    print $in "COMMIT;\n\\q\n";
    close $in;
}

sub DESTROY { $_[0]->release }

sub pg_ctl {
    my ($cmd) = @_;
    my @args = ($ENV{KN_PG_SCRIPT}, $cmd, $ENV{TEST_NGINX_PG_DATA});
    push @args, $ENV{TEST_NGINX_PG_PORT} if $cmd eq 'start';
    system(@args) == 0 or die "pg.sh $cmd failed\n";
}

1;
