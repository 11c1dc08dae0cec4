# Software MakeCredential / ActivateCredential (no TPM); runs
# tpm2_makecredential --tcti none as an independent implementation.
kl_add_test(test_credential SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_credential.c
  LIBS kl_station kl_common PkgConfig::CRYPTO LABELS "unit")
