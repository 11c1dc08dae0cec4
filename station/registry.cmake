# The device registry (registry.h): tenants, work orders, pre-registration,
# devices and their state machine, deny list, evidence. Its tables live in the
# CA's database (ca/store_internal.h), so kl_station links kl_ca.
target_sources(kl_station PRIVATE
  ${CMAKE_CURRENT_SOURCE_DIR}/registry.c
  ${CMAKE_CURRENT_SOURCE_DIR}/registry_device.c
  ${CMAKE_CURRENT_SOURCE_DIR}/registry_import.c
  ${CMAKE_CURRENT_SOURCE_DIR}/registry_deny.c
  ${CMAKE_CURRENT_SOURCE_DIR}/registry_query.c)
target_link_libraries(kl_station PUBLIC kl_ca PRIVATE PkgConfig::JSONC PkgConfig::SQLITE)
