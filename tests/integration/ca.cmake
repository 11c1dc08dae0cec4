kl_add_test(test_ca SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_ca.c
  LIBS kl_ca kl_floor kl_common PkgConfig::CRYPTO PkgConfig::SQLITE LABELS "integration;ca;slow" TIMEOUT 1200)
target_compile_definitions(test_ca PRIVATE KL_PROFILES_DIR="${PROJECT_SOURCE_DIR}/ca/profiles")
