# hsm/ against SoftHSM2 tokens from the floor.
kl_add_test(test_hsm_keygen SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_hsm_keygen.c
  LIBS kl_floor kl_hsm kl_common PkgConfig::CRYPTO ${CMAKE_DL_LIBS}
  LABELS "integration;softhsm")

# The same source built as a pass-through PKCS#11 module over SoftHSM that
# counts C_Login calls and simulates a user-PIN retry counter (SoftHSM never
# locks), so the test can prove "one login call, never a retry".
add_library(kl_p11_shim MODULE ${CMAKE_CURRENT_SOURCE_DIR}/test_hsm_keygen.c)
target_compile_definitions(kl_p11_shim PRIVATE KL_P11_SHIM)
target_link_libraries(kl_p11_shim PRIVATE kl_flags PkgConfig::P11KIT ${CMAKE_DL_LIBS})
add_dependencies(test_hsm_keygen kl_p11_shim)
target_compile_definitions(test_hsm_keygen PRIVATE
  KL_P11_SHIM_PATH="$<TARGET_FILE:kl_p11_shim>")

# The station with its HSM lost mid-issuance (the shim drops every session
# at the Nth signature): a clean job failure, then a reconnect by itself.
if(TARGET keyline)
  kl_add_test(test_station_hsm SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_station_hsm.c
    LIBS kl_floor kl_client kl_common PkgConfig::JSONC
    LABELS "integration;swtpm;softhsm;station")
  target_compile_definitions(test_station_hsm PRIVATE
    KEYLINE_BIN="$<TARGET_FILE:keyline>" KL_P11_SHIM_PATH="$<TARGET_FILE:kl_p11_shim>")
  add_dependencies(test_station_hsm keyline kl_p11_shim)
endif()
