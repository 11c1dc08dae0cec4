# Fuzzing the JSON-RPC layer.
#   - test_fuzz_replay_rpc (always, any compiler): replays corpus/rpc/ through
#     the harness with a small main(), so gcc CI (plain and ASan) runs every seed.
#   - fuzz_rpc (KL_FUZZ=ON, clang only): the libFuzzer binary, e.g.
#       CC=clang cmake -S . -B build-fuzz -DKL_FUZZ=ON && cmake --build build-fuzz --target fuzz_rpc
#       build-fuzz/tests/fuzz_rpc -max_total_time=60 tests/fuzz/corpus/rpc
#   - test_fuzz_replay_station / fuzz_station: the same for the station's
#     method table (corpus/station); with KL_FUZZ=ON configure
#     CFLAGS=-fsanitize=fuzzer-no-link so that the libraries carry coverage.
# Included from tests/CMakeLists.txt, so paths use CMAKE_CURRENT_LIST_DIR.
option(KL_FUZZ "Build the libFuzzer harnesses (clang only)" OFF)
set(KL_FUZZ_DIR ${CMAKE_CURRENT_LIST_DIR})

add_executable(test_fuzz_replay_rpc ${KL_FUZZ_DIR}/replay.c ${KL_FUZZ_DIR}/fuzz_rpc.c)
target_link_libraries(test_fuzz_replay_rpc PRIVATE kl_flags kl_station kl_common PkgConfig::JSONC)
add_test(NAME test_fuzz_replay_rpc COMMAND test_fuzz_replay_rpc ${KL_FUZZ_DIR}/corpus/rpc)
set_tests_properties(test_fuzz_replay_rpc PROPERTIES LABELS "unit" TIMEOUT 300)

# The station's dispatcher (the real method table over an offline station).
if(TARGET kl_daemon)
  add_executable(test_fuzz_replay_station ${KL_FUZZ_DIR}/replay.c ${KL_FUZZ_DIR}/fuzz_station.c)
  target_link_libraries(test_fuzz_replay_station PRIVATE kl_flags kl_daemon PkgConfig::JSONC)
  add_test(NAME test_fuzz_replay_station COMMAND test_fuzz_replay_station
    ${KL_FUZZ_DIR}/corpus/station)
  set_tests_properties(test_fuzz_replay_station PROPERTIES LABELS "unit" TIMEOUT 300)
endif()

if(KL_FUZZ)
  if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "KL_FUZZ=ON needs clang (libFuzzer); configure with CC=clang")
  endif()
  # rpc.c is compiled into the fuzzer itself so that it carries the coverage
  # instrumentation; kl_common only supplies kl_error.
  add_executable(fuzz_rpc ${KL_FUZZ_DIR}/fuzz_rpc.c ${PROJECT_SOURCE_DIR}/station/rpc.c
    ${PROJECT_SOURCE_DIR}/station/rpc_call.c)
  target_include_directories(fuzz_rpc PRIVATE ${PROJECT_SOURCE_DIR}/station)
  target_compile_options(fuzz_rpc PRIVATE -fsanitize=fuzzer,address,undefined
    -fno-sanitize-recover=undefined -fno-omit-frame-pointer)
  target_link_options(fuzz_rpc PRIVATE -fsanitize=fuzzer,address,undefined)
  target_link_libraries(fuzz_rpc PRIVATE kl_flags kl_common PkgConfig::JSONC)
  # The station's dispatcher: its handlers and the RPC layer instrumented.
  add_executable(fuzz_station ${KL_FUZZ_DIR}/fuzz_station.c)
  target_compile_options(fuzz_station PRIVATE -fsanitize=fuzzer,address,undefined
    -fno-sanitize-recover=undefined -fno-omit-frame-pointer)
  target_link_options(fuzz_station PRIVATE -fsanitize=fuzzer,address,undefined)
  target_link_libraries(fuzz_station PRIVATE kl_flags kl_daemon PkgConfig::JSONC)
endif()
