# common/: errors, logging, secret buffers. No external process.
foreach(t error log secret)
  kl_add_test(test_${t} SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_${t}.c
    LIBS kl_common LABELS "unit")
endforeach()
