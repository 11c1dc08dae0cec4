# The device lifecycle after provisioning (lifecycle.h): renewal / rekey,
# decommission with cryptographic erase and a signed sanitization record,
# repurpose, lost and revoked devices; the registry's sanitization records.
target_sources(kl_station PRIVATE
  ${CMAKE_CURRENT_SOURCE_DIR}/lifecycle.c
  ${CMAKE_CURRENT_SOURCE_DIR}/lifecycle_renew.c
  ${CMAKE_CURRENT_SOURCE_DIR}/lifecycle_decommission.c
  ${CMAKE_CURRENT_SOURCE_DIR}/registry_life.c)
