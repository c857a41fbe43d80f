# Run by `cmake --install` (install(SCRIPT) in the top-level CMakeLists.txt):
# writes the systemd units from deploy/systemd/*.in with the paths of this
# install, so ExecStart= names the installed programs whatever --prefix says
# at install time (a configure-time substitution would keep the prefix the
# build was configured with). DESTDIR is honoured by file(INSTALL).
#
# In: MAP_SOURCE_DIR, MAP_BINARY_DIR, MAP_UNITS (set by install(CODE) just
# before), CMAKE_INSTALL_PREFIX (the install's own).
set(MAP_BINDIR "${CMAKE_INSTALL_PREFIX}/bin")
set(MAP_DATADIR "${CMAKE_INSTALL_PREFIX}/share/map")
# One staging directory per destination: two installs at once (a test and a
# package build) must not write the same files.
string(MD5 map_key "$ENV{DESTDIR}|${CMAKE_INSTALL_PREFIX}")
set(map_stage "${MAP_BINARY_DIR}/deploy-units/${map_key}")
set(map_files "")
foreach(unit IN LISTS MAP_UNITS)
  configure_file("${MAP_SOURCE_DIR}/deploy/systemd/${unit}.in" "${map_stage}/${unit}" @ONLY)
  list(APPEND map_files "${map_stage}/${unit}")
endforeach()
file(INSTALL DESTINATION "${CMAKE_INSTALL_PREFIX}/lib/systemd/system" TYPE FILE
     PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ FILES ${map_files})
