# Read by cpack (CPACK_PROJECT_CONFIG_FILE) before it builds a package: a
# package holds the programs of the build it is made from, so it must be a
# Release build without sanitizers (an ASan binary is slower, and aborts on
# the first report).
if(NOT CPACK_MAP_BUILD_TYPE STREQUAL "Release" OR CPACK_MAP_SANITIZE OR CPACK_MAP_FUZZ)
  message(FATAL_ERROR "map: packages come from a Release build without SANITIZE or FUZZ "
          "(this one: CMAKE_BUILD_TYPE=${CPACK_MAP_BUILD_TYPE} SANITIZE=${CPACK_MAP_SANITIZE} "
          "FUZZ=${CPACK_MAP_FUZZ}): cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release")
endif()
