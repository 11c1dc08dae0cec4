if(TARGET keyline)
  kl_add_test(test_cli_ca SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_cli_ca.c
    LIBS kl_floor kl_common LABELS "integration;softhsm;cli")
  target_compile_definitions(test_cli_ca PRIVATE KEYLINE_BIN="$<TARGET_FILE:keyline>")
  add_dependencies(test_cli_ca keyline)
endif()

if(TARGET keyline)
  kl_add_test(test_demo SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_demo.c
    LIBS kl_floor kl_common LABELS "integration;swtpm;softhsm;cli;slow")
  target_compile_definitions(test_demo PRIVATE KEYLINE_BIN="$<TARGET_FILE:keyline>")
  add_dependencies(test_demo keyline)
endif()

if(TARGET keyline)
  kl_add_test(test_cli_provision SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_cli_provision.c
    LIBS kl_floor kl_common LABELS "integration;swtpm;softhsm;cli")
  target_compile_definitions(test_cli_provision PRIVATE KEYLINE_BIN="$<TARGET_FILE:keyline>")
  add_dependencies(test_cli_provision keyline)
endif()

if(TARGET keyline)
  kl_add_test(test_station SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_station.c
    LIBS kl_floor kl_client kl_common PkgConfig::CRYPTO PkgConfig::JSONC
    LABELS "integration;swtpm;softhsm;cli;slow" TIMEOUT 600)
  target_compile_definitions(test_station PRIVATE KEYLINE_BIN="$<TARGET_FILE:keyline>")
  add_dependencies(test_station keyline)
endif()

if(TARGET keyline)
  kl_add_test(test_cli_station SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_cli_station.c
    LIBS kl_floor kl_common PkgConfig::JSONC
    LABELS "integration;swtpm;softhsm;cli;station" TIMEOUT 600)
  target_compile_definitions(test_cli_station PRIVATE KEYLINE_BIN="$<TARGET_FILE:keyline>")
  add_dependencies(test_cli_station keyline)
endif()
