kl_add_test(test_trust SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_trust.c
  LIBS kl_station kl_floor kl_common PkgConfig::CRYPTO LABELS "integration;swtpm")
