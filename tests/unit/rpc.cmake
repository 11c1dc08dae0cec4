# JSON-RPC layer of the socket API: framing, errors, roles (no socket).
kl_add_test(test_rpc SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_rpc.c
  LIBS kl_station kl_common LABELS "unit")
