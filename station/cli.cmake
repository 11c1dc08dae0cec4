# The keyline program.
add_executable(keyline keyline.c cmd_ca.c cmd_audit.c cmd_demo.c cmd_devices.c cmd_provision.c home.c)
target_compile_definitions(keyline PRIVATE
  KL_VERSION="${PROJECT_VERSION}"
  KL_SRC_DATADIR="${PROJECT_SOURCE_DIR}"
  KL_INSTALL_DATADIR="${CMAKE_INSTALL_FULL_DATADIR}/keyline")
target_link_libraries(keyline PRIVATE kl_flags kl_station kl_ca kl_hsm kl_floor kl_common
  PkgConfig::CRYPTO Threads::Threads)
install(TARGETS keyline RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/ca/profiles/ DESTINATION ${CMAKE_INSTALL_DATADIR}/keyline/profiles
  FILES_MATCHING PATTERN "*.json")
