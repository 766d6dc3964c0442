# The YAML to JSON converter (ngx_kubenova_yaml.c) on its own, without
# nginx: t/unit/yaml_test.c is compiled into a temporary directory and run
# by KubeNova::Unit, and every line of TAP it prints becomes a test here.
#
#   KN_UNIT_SANITIZE=1   compile with AddressSanitizer (leaks included) and
#                        UndefinedBehaviorSanitizer
#   CC                   compiler (default: gcc)
use strict;
use warnings;

use Test::More;

use KubeNova::Unit;

KubeNova::Unit::run(
    sources  => ['t/unit/yaml_test.c', 'ngx_kubenova_yaml.c'],
    includes => ['.'],
    libs     => ['-ljansson', '-lyaml'],
    hint     => 'missing headers? apt-get install libyaml-dev libjansson-dev');

done_testing();
