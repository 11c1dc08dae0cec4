# Identity keys, Certify, Sign, persistence and NV certificates against real
# swtpm DUTs, checked from the outside with tpm2-tools.
kl_add_test(test_tpm_keys SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_tpm_keys.c
  LIBS kl_floor kl_station kl_common PkgConfig::CRYPTO LABELS "integration;swtpm")
