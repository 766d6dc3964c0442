# KubeNova.  The two commands a newcomer needs:
#   make run    a local Manager (PostgreSQL + nginx with the module)
#   make test   install what is missing, build, start servers, run every test
#
# Also: make (the module, the Operator and kubenova-bootstrap), make test-asan (the suite under
# ASan/UBSan), make bench, make clean.

.PHONY: all module operator bootstrap deps run test test-asan bench clean

all: module operator bootstrap

deps:
	@scripts/install-deps.sh build

module: deps
	@scripts/build-module.sh

operator: deps
	@$(MAKE) -s -C operator

bootstrap: deps
	@$(MAKE) -s -C bootstrap

run:
	@scripts/run-manager.sh

test:
	@scripts/install-deps.sh test
	@scripts/dashboard-test-deps.sh >/dev/null
	@t/harness

test-asan:
	@scripts/install-deps.sh test
	@scripts/dashboard-test-deps.sh >/dev/null
	@scripts/test-asan.sh

bench:
	@scripts/install-deps.sh test
	@bench/rest-baseline
	@bench/rest
	@bench/streams
	@bench/usage
	@bench/provision
	@bench/proxy

clean:
	rm -rf build t/servroot
	@$(MAKE) -s -C operator clean
	@$(MAKE) -s -C bootstrap clean
