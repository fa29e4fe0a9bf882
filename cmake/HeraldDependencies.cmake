# Every external dependency comes from Debian's packages (scripts/bootstrap.sh installs them).
find_package(PkgConfig REQUIRED)
find_package(Threads REQUIRED)
find_package(nlohmann_json 3.10 REQUIRED)
find_package(spdlog REQUIRED)
find_package(CLI11 REQUIRED)
find_package(CURL REQUIRED)
find_package(OpenSSL REQUIRED)
find_package(date REQUIRED)

pkg_check_modules(RDKAFKA REQUIRED IMPORTED_TARGET rdkafka)
pkg_check_modules(PQXX REQUIRED IMPORTED_TARGET libpqxx)
pkg_check_modules(HIREDIS REQUIRED IMPORTED_TARGET hiredis)
pkg_check_modules(HTTPLIB REQUIRED IMPORTED_TARGET cpp-httplib)

# valijson is header-only; bootstrap unpacks just that Debian package into .deps/.
find_path(VALIJSON_INCLUDE_DIR valijson/validator.hpp
  HINTS ${CMAKE_CURRENT_SOURCE_DIR}/.deps/valijson/usr/include
  REQUIRED)
add_library(herald_valijson INTERFACE)
target_include_directories(herald_valijson SYSTEM INTERFACE ${VALIJSON_INCLUDE_DIR})
# Without this valijson aborts the process where a constraint cannot be applied to a value.
target_compile_definitions(herald_valijson INTERFACE VALIJSON_USE_EXCEPTIONS=1)

