# Step 9 verification in software: TPMS_ATTEST and public areas made by the
# test itself (tss2-mu + an OpenSSL key), no TPM.
kl_add_test(test_attest SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_attest.c
  LIBS kl_station kl_common PkgConfig::CRYPTO PkgConfig::TSS2 LABELS "unit")
