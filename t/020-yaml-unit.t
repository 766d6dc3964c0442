# The YAML to JSON converter (ngx_kubenova_yaml.c) on its own, without
# nginx: t/unit/yaml_test.c is compiled into a temporary directory and run,
# and every line of TAP it prints becomes a test here.
#
#   KN_UNIT_SANITIZE=1   compile with AddressSanitizer (leaks included) and
#                        UndefinedBehaviorSanitizer
#   CC                   compiler (default: gcc)
use strict;
use warnings;

use Test::More;
use File::Temp qw(tempdir);
use FindBin;

my $repo = "$FindBin::Bin/..";
my $tmp  = tempdir('kubenova-yaml-unit.XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $bin  = "$tmp/yaml_test";

my @cflags = qw(-std=gnu99 -g -O1 -Wall -Wextra -Werror);

if ($ENV{KN_UNIT_SANITIZE}) {
    push @cflags, '-fsanitize=address,undefined',
                  '-fno-sanitize-recover=undefined', '-fno-omit-frame-pointer';
}

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

my ($status, @out) = run_cmd($ENV{CC} || 'gcc', @cflags, "-I$repo",
                             '-o', $bin, "$repo/t/unit/yaml_test.c",
                             "$repo/ngx_kubenova_yaml.c",
                             '-ljansson', '-lyaml');

if ($status != 0) {
    fail('t/unit/yaml_test.c compiles');
    diag(@out);
    diag('missing headers? apt-get install libyaml-dev libjansson-dev');
    done_testing();
    exit;
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

# 1 is "some case failed"; anything else (a sanitizer's exit code, a signal)
# is a problem of its own
is($status, $failed ? 1 << 8 : 0, 'the unit program exited cleanly');

done_testing();
