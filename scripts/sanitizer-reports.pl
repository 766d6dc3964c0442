#!/usr/bin/perl
# Reads sanitizer output (report files and error logs) and prints the
# reports that concern KubeNova; exits 1 if there is any.
#
# Every AddressSanitizer or UndefinedBehaviorSanitizer error counts.  Leak
# reports count only when a frame of the leak's stack is ours or in a
# library we drive (libpq, jansson, libyaml, protobuf-c): nginx 1.22 itself
# does not free everything on its early-exit paths ("nginx -s stop", a
# configuration that fails to load, single-process exit), and those leaks
# are not ours to fix.
use strict;
use warnings;

my $ours = qr/kubenova|\bPQ\w+|\bpq\w+|\bjson_\w+|\byaml_\w+|protobuf_c/;
my $found = 0;

local $/;
for my $file (@ARGV) {
    open my $fh, '<', $file or next;
    my $text = <$fh>;

    # UBSan: "file:line:col: runtime error: ..."
    while ($text =~ /^(.*runtime error:.*)$/mg) {
        print "$file: $1\n";
        $found = 1;
    }

    # ASan errors other than leaks
    while ($text =~ /(==\d+==ERROR: AddressSanitizer:.*?)(?:\n\n|\z)/sg) {
        print "$file:\n$1\n\n";
        $found = 1;
    }

    # leaks, one block per allocation stack
    while ($text =~ /((?:Direct|Indirect) leak of .*?)(?:\n\n|\z)/sg) {
        my $block = $1;
        next unless $block =~ $ours;
        print "$file:\n$block\n\n";
        $found = 1;
    }

    if ($text =~ /(worker process \d+ exited with code 86)/) {
        print "$file: $1\n";
        $found = 1;
    }
}

exit $found;
