kl_add_test(test_config SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_config.c LIBS kl_common LABELS "unit")
kl_add_test(test_uri SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_uri.c LIBS kl_hsm kl_common LABELS "unit")
