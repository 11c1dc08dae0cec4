kl_add_test(test_engine SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_engine.c
  LIBS kl_station kl_ca kl_hsm kl_floor kl_common PkgConfig::CRYPTO
  LABELS "integration;swtpm;softhsm;slow" TIMEOUT 900)
target_compile_definitions(test_engine PRIVATE KL_PROFILES_DIR="${PROJECT_SOURCE_DIR}/ca/profiles")
