# The JSON-RPC 2.0 layer of the socket API (json-c stays inside rpc.c,
# rpc_call.c and rpc_internal.h).
target_sources(kl_station PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/rpc.c
  ${CMAKE_CURRENT_SOURCE_DIR}/rpc_call.c)
target_link_libraries(kl_station PRIVATE PkgConfig::JSONC)
