# The kube proxy's routes and filters (operator/src/kn_tunnel_filter.c) on
# their own: t/unit/tunnel_filter_test.c, compiled and run by
# KubeNova::Unit (KN_UNIT_SANITIZE=1: with ASan and UBSan).  The end to
# end behaviour is t/078-operator-tunnel.t.
use strict;
use warnings;

use Test::More;

use KubeNova::Unit;

KubeNova::Unit::run(
    sources  => ['t/unit/tunnel_filter_test.c',
                 'operator/src/kn_tunnel_filter.c'],
    includes => ['operator/src'],
    cflags   => ['-std=gnu11'],
    libs     => ['-ljansson'],
    hint     => 'missing headers? apt-get install libjansson-dev');

done_testing();
