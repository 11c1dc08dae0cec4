# Picky warnings, hardening and the optional sanitizer build, applied to every
# Keyline target through the kl_flags interface library.

add_library(kl_flags INTERFACE)

target_compile_options(kl_flags INTERFACE
  -Wall -Wextra -Wshadow -Wformat=2 -Wmissing-prototypes -Wstrict-prototypes
  -Wvla -Wpointer-arith -Wcast-align -Wwrite-strings -Wundef
  -Wimplicit-fallthrough -Wnull-dereference -Wdouble-promotion
  -Wno-unused-parameter
  -fstack-protector-strong -fstack-clash-protection -fno-common
  -D_GNU_SOURCE)

if(KL_WERROR)
  target_compile_options(kl_flags INTERFACE -Werror)
endif()

if(KL_SANITIZE)
  target_compile_options(kl_flags INTERFACE
    -fsanitize=address,undefined -fno-sanitize-recover=undefined
    -fno-omit-frame-pointer)
  target_link_options(kl_flags INTERFACE -fsanitize=address,undefined)
else()
  # _FORTIFY_SOURCE needs optimisation and conflicts with ASan's interceptors.
  target_compile_options(kl_flags INTERFACE
    $<$<NOT:$<CONFIG:Debug>>:-D_FORTIFY_SOURCE=2>)
endif()

target_link_options(kl_flags INTERFACE -Wl,-z,relro -Wl,-z,now -Wl,--as-needed)
set(CMAKE_POSITION_INDEPENDENT_CODE ON)

# Paths are built in PATH_MAX buffers with snprintf; gcc cannot see the
# bounds of the inputs and would flag every one of them. (clang has no such
# warning and no such option.)
include(CheckCCompilerFlag)
check_c_compiler_flag(-Wformat-truncation KL_HAVE_WFORMAT_TRUNCATION)
if(KL_HAVE_WFORMAT_TRUNCATION)
  target_compile_options(kl_flags INTERFACE -Wno-format-truncation)
endif()
