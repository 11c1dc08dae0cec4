# Every dependency comes from pkg-config; scripts/deps.sh installs the Debian
# packages that provide them.

find_package(PkgConfig REQUIRED)
find_package(Threads REQUIRED)

pkg_check_modules(CRYPTO REQUIRED IMPORTED_TARGET libcrypto>=3.0)
pkg_check_modules(TSS2 REQUIRED IMPORTED_TARGET
  tss2-esys>=3.2 tss2-tctildr tss2-mu tss2-rc)
pkg_check_modules(P11 REQUIRED IMPORTED_TARGET libp11>=0.4.11)
pkg_check_modules(P11KIT REQUIRED IMPORTED_TARGET p11-kit-1)
pkg_check_modules(SQLITE REQUIRED IMPORTED_TARGET sqlite3>=3.34)
pkg_check_modules(JSONC REQUIRED IMPORTED_TARGET json-c>=0.15)
if(KL_BUILD_TESTS)
  pkg_check_modules(CMOCKA REQUIRED IMPORTED_TARGET cmocka>=1.1)
endif()
