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
