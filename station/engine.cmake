# The provisioning engine (flow steps 1-13) over the TPM link, the registry,
# the CA and the HSM's RNG.
target_sources(kl_station PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/engine.c
  ${CMAKE_CURRENT_SOURCE_DIR}/identity.c)
target_link_libraries(kl_station PUBLIC kl_hsm)
