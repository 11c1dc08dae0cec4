# The TCG default EK templates, byte for byte (no TPM needed).
kl_add_test(test_ek_template SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_ek_template.c
  LIBS kl_station kl_common PkgConfig::CRYPTO LABELS "unit")
