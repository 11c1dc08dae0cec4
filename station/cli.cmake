# The station API client: the CLI, tests and benchmarks use it.
add_library(kl_client STATIC client.c)
target_include_directories(kl_client PUBLIC ${CMAKE_CURRENT_SOURCE_DIR})
target_link_libraries(kl_client PUBLIC kl_common PkgConfig::JSONC PRIVATE kl_flags)

# The station daemon and the home it runs on (a library so that tests and
# the fuzzer reach its method table).
add_library(kl_daemon STATIC station.c station_api.c home.c home_station.c)
target_include_directories(kl_daemon PUBLIC ${CMAKE_CURRENT_SOURCE_DIR})
target_link_libraries(kl_daemon PUBLIC kl_station kl_ca kl_hsm kl_common PkgConfig::CRYPTO
  PkgConfig::JSONC Threads::Threads PRIVATE kl_flags)
target_compile_definitions(kl_daemon PRIVATE
  KL_VERSION="${PROJECT_VERSION}"
  KL_SRC_DATADIR="${PROJECT_SOURCE_DIR}"
  KL_INSTALL_DATADIR="${CMAKE_INSTALL_FULL_DATADIR}/keyline")

# The keyline program.
add_executable(keyline keyline.c cmd_ca.c cmd_audit.c cmd_demo.c cmd_devices.c cmd_provision.c
  cmd_station.c cmd_client.c)
target_compile_definitions(keyline PRIVATE
  KL_VERSION="${PROJECT_VERSION}"
  KL_SRC_DATADIR="${PROJECT_SOURCE_DIR}"
  KL_INSTALL_DATADIR="${CMAKE_INSTALL_FULL_DATADIR}/keyline")
target_link_libraries(keyline PRIVATE kl_flags kl_daemon kl_station kl_client kl_ca kl_hsm kl_floor kl_common
  PkgConfig::CRYPTO Threads::Threads)
install(TARGETS keyline RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/ca/profiles/ DESTINATION ${CMAKE_INSTALL_DATADIR}/keyline/profiles
  FILES_MATCHING PATTERN "*.json")
