package KubeNova::Unit;

# A C unit program (t/unit/*.c) compiled into a temporary directory and run
# without nginx or the rest of the Operator; every line of TAP it prints
# becomes a test of the calling file.
#
#   KubeNova::Unit::run(sources => [...], includes => [...], libs => [...],
#                       hint => 'what to install when it does not compile')
#
#   KN_UNIT_SANITIZE=1   compile with AddressSanitizer (leaks included) and
#                        UndefinedBehaviorSanitizer
#   CC                   compiler (default: gcc)

use strict;
use warnings;

use File::Basename qw(basename);
use File::Spec;
use File::Temp qw(tempdir);
use Test::More;

my $Repo = File::Spec->rel2abs(File::Basename::dirname(__FILE__) . '/../../..');

# runs a command, stderr merged into stdout; returns (status, lines)
sub run_cmd {
    my @cmd = @_;
    my $pid = open(my $fh, '-|') // die "fork: $!";

    if ($pid == 0) {
        open(STDERR, '>&', \*STDOUT) or die "dup: $!";
        exec(@cmd) or die "exec $cmd[0]: $!";
    }

    my @lines = <$fh>;
    close($fh);
    return ($?, @lines);
}

sub run {
    my (%o) = @_;
    my @src = map { "$Repo/$_" } @{ $o{sources} };
    my $name = basename($src[0], '.c');
    my $tmp = tempdir("kubenova-$name.XXXXXX", TMPDIR => 1, CLEANUP => 1);
    my $bin = "$tmp/$name";
    my @cflags = (@{ $o{cflags} || ['-std=gnu99'] },
                  qw(-g -O1 -Wall -Wextra -Werror));

    if ($ENV{KN_UNIT_SANITIZE}) {
        push @cflags, '-fsanitize=address,undefined',
                      '-fno-sanitize-recover=undefined',
                      '-fno-omit-frame-pointer';
    }

    my ($status, @out) = run_cmd($ENV{CC} || 'gcc', @cflags,
                                 map({ "-I$Repo/$_" } @{ $o{includes} }),
                                 '-o', $bin, @src, @{ $o{libs} || [] });

    if ($status != 0) {
        fail("$o{sources}[0] compiles");
        diag(@out);
        diag($o{hint}) if $o{hint};
        return;
    }

    ($status, @out) = run_cmd($bin);

    my ($planned, $ran, $failed) = (undef, 0, 0);

    for my $line (@out) {
        chomp $line;

        if ($line =~ /^(not )?ok \d+ - (.*)$/) {
            ok(!$1, $2);
            $ran++;
            $failed++ if $1;

        } elsif ($line =~ /^1\.\.(\d+)$/) {
            $planned = $1;

        } else {
            # failure details and anything a sanitizer says
            diag($line);
        }
    }

    is($ran, $planned, 'the unit program ran all its cases');

    # 1 is "some case failed"; anything else (a sanitizer's exit code, a
    # signal) is a problem of its own
    is($status, $failed ? 1 << 8 : 0, 'the unit program exited cleanly');
}

1;
