#!/bin/bash
# "make test-asan": the whole suite against an nginx built with
# AddressSanitizer and UndefinedBehaviorSanitizer, our module compiled in
# statically (scripts/build-asan-nginx.sh, cached outside the checkout).
#
# ASan/LSan reports go to files under a report directory; UBSan's always go
# to stderr with gcc (GCC bug 94328), which nginx sends to its error logs.
# scripts/sanitizer-reports.pl reads both and fails the run on any ASan or
# UBSan error and on any leak that involves our code.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

bin=$(scripts/build-asan-nginx.sh | tail -n 1)
reports=$(mktemp -d /tmp/kubenova-asan.XXXXXX)
chmod 1777 "$reports"
servroot=${TEST_NGINX_SERVROOT:-$repo/t/servroot-asan}
logs=$(mktemp -d /tmp/kubenova-asan-logs.XXXXXX)

export TEST_NGINX_BINARY=$bin
export KN_STATIC_MODULE=1
export KN_UNIT_SANITIZE=1
export TEST_NGINX_SERVROOT=$servroot
export ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:abort_on_error=0:exitcode=86:detect_stack_use_after_return=1:strict_string_checks=1:log_path=$reports/asan"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:exitcode=86:log_path=$reports/asan"
export LSAN_OPTIONS="suppressions=$(dirname "$bin")/lsan.supp:print_suppressions=0"
# keeps every test file's error log for the scan below
export KN_KEEP_ERROR_LOGS=$logs

status=0
t/harness "$@" || status=$?

found=0
files=$(find "$reports" "$logs" "$servroot" -type f \( -name 'asan*' -o -name '*.log' \) 2>/dev/null || true)
if [ -n "$files" ]; then
    # shellcheck disable=SC2086
    scripts/sanitizer-reports.pl $files >&2 || found=1
fi

if [ $found = 1 ]; then
    echo "sanitizers: reports found (above)" >&2
    status=1
else
    echo "sanitizers: no reports"
fi

rm -rf "$reports" "$logs"
exit $status
