kl_add_test(test_floor SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_floor.c
  LIBS kl_floor kl_common LABELS "integration;swtpm;slow" TIMEOUT 600)
