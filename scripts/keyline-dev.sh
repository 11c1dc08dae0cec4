#!/bin/bash
# Keyline's developer entry point, used by the README and by CI.
#
#   scripts/keyline-dev.sh deps     install the Debian packages (root)
#   scripts/keyline-dev.sh build    configure and build into build/
#   scripts/keyline-dev.sh test     deps + build + the whole test suite, then
#                                   the same suite under ASan+UBSan
#   scripts/keyline-dev.sh demo [ARGS]
#                                   deps + build + the main job on the
#                                   embedded default (SoftHSM, swtpm DUTs)
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
jobs=$(nproc 2>/dev/null || echo 2)

build() { # build DIR [cmake args...]
	local dir=$1
	shift
	cmake -S . -B "$dir" -DKL_WERROR=ON "$@" >/dev/null
	cmake --build "$dir" -j "$jobs"
}

cmd=${1:-help}
[ $# -gt 0 ] && shift
case "$cmd" in
deps)
	bash scripts/deps.sh
	;;
build)
	bash scripts/deps.sh
	build build
	;;
test)
	bash scripts/deps.sh
	echo "== build (gcc, -Werror)"
	build build
	echo "== tests"
	ctest --test-dir build --output-on-failure -j "$jobs" "$@"
	echo "== build (ASan + UBSan)"
	build build-asan -DKL_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
	echo "== tests under ASan + UBSan"
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		ctest --test-dir build-asan --output-on-failure -j "$jobs" "$@"
	;;
demo)
	bash scripts/deps.sh
	build build >/dev/null
	exec ./build/station/keyline demo "$@"
	;;
help | -h | --help)
	sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
	;;
*)
	echo "keyline-dev: unknown command '$cmd' (try: deps, build, test, demo)" >&2
	exit 2
	;;
esac
