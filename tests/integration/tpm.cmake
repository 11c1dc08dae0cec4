# station/tpm.c against real swtpm DUTs from the simulated floor.
kl_add_test(test_floor_ek SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_floor_ek.c
  LIBS kl_floor kl_station kl_common PkgConfig::CRYPTO LABELS "integration;swtpm")
