# The device lifecycle (renewal, decommission, repurpose, lost, revoked) on
# swtpm DUTs provisioned by the real engine, with a SoftHSM CA.
kl_add_test(test_lifecycle SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_lifecycle.c
  LIBS kl_station kl_ca kl_hsm kl_floor kl_common PkgConfig::CRYPTO
  LABELS "integration;swtpm;softhsm;slow" TIMEOUT 900)
target_compile_definitions(test_lifecycle PRIVATE KL_PROFILES_DIR="${PROJECT_SOURCE_DIR}/ca/profiles")
