# Identity keys (IAK, IDevID): Certify, Sign, persistence and NV certificates
# on the DUT's TPM (tpm_keys.c), and their verification in software
# (attest.c), provisioning steps 7, 9, 10 and 12.
target_sources(kl_station PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/tpm_keys.c
  ${CMAKE_CURRENT_SOURCE_DIR}/attest.c)
