# The device registry on real SQLite files in temp directories.
kl_add_test(test_registry SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_registry.c
  LIBS kl_station kl_ca kl_common PkgConfig::SQLITE PkgConfig::CRYPTO
  LABELS "integration;registry")

# keyline preregister / devices end to end on the built binary.
if(TARGET keyline)
  kl_add_test(test_cli_devices SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_cli_devices.c
    LIBS kl_station kl_ca kl_floor kl_common PkgConfig::JSONC PkgConfig::CRYPTO
    LABELS "integration;softhsm;cli;registry")
  target_compile_definitions(test_cli_devices PRIVATE KEYLINE_BIN="$<TARGET_FILE:keyline>")
  add_dependencies(test_cli_devices keyline)
endif()
