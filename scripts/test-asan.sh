#!/bin/bash
# "make test-asan": the whole suite against an nginx built with
# AddressSanitizer and UndefinedBehaviorSanitizer, our module compiled in
# statically (scripts/build-asan-nginx.sh, cached outside the checkout).
# Sanitizer reports go to files; any report fails the run.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

bin=$(scripts/build-asan-nginx.sh | tail -n 1)
reports=$(mktemp -d /tmp/kubenova-asan.XXXXXX)
chmod 777 "$reports"

export TEST_NGINX_BINARY=$bin
export KN_STATIC_MODULE=1
export TEST_NGINX_SERVROOT=${TEST_NGINX_SERVROOT:-$repo/t/servroot-asan}
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:exitcode=86:halt_on_error=1:detect_stack_use_after_return=1:strict_string_checks=1:check_initialization_order=1:log_path=$reports/asan"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$reports/ubsan"

status=0
t/harness "$@" || status=$?

if compgen -G "$reports/*" >/dev/null; then
    echo "sanitizer reports:" >&2
    for f in "$reports"/*; do
        echo "== $f" >&2
        cat "$f" >&2
    done
    status=1
else
    echo "sanitizers: no reports"
fi

rm -rf "$reports"
exit $status
