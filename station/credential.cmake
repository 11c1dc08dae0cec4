# Credential protection: MakeCredential in software (credential.c) and
# ActivateCredential on the DUT's TPM (tpm_cred.c), provisioning step 8.
target_sources(kl_station PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/credential.c
  ${CMAKE_CURRENT_SOURCE_DIR}/tpm_cred.c)
