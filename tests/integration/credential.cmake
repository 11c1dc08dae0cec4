# Credential activation (provisioning step 8) against real swtpm DUTs.
kl_add_test(test_credential_swtpm SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_credential_swtpm.c
  LIBS kl_floor kl_station kl_common PkgConfig::CRYPTO LABELS "integration;swtpm")
