# SPDX-License-Identifier: MIT
# install.cmake — run by `cmake --install` (install(CODE) in CMakeLists.txt)
# with WSGATE_SOURCE_DIR and WSGATE_BINARY_DIR set: installs the systemd unit
# and the example configuration for the prefix given AT INSTALL TIME
# (`make install PREFIX=/usr` -> /usr/bin/wsgate, /etc/wsgate/wsgate.yaml),
# which the configure-time GNUInstallDirs paths would not follow.
# file(INSTALL) adds $DESTDIR itself; an existing wsgate.yaml is kept.
set(prefix "${CMAKE_INSTALL_PREFIX}")
set(WSGATE_BINDIR "${prefix}/bin")
if(prefix STREQUAL "/usr")
  set(WSGATE_SYSCONFDIR "/etc/wsgate")
else()
  set(WSGATE_SYSCONFDIR "${prefix}/etc/wsgate")
endif()
configure_file("${WSGATE_SOURCE_DIR}/deploy/systemd/wsgate.service.in"
               "${WSGATE_BINARY_DIR}/install/wsgate.service" @ONLY)
file(INSTALL "${WSGATE_BINARY_DIR}/install/wsgate.service"
     DESTINATION "${prefix}/lib/systemd/system")
if(EXISTS "$ENV{DESTDIR}${WSGATE_SYSCONFDIR}/wsgate.yaml")
  message(STATUS "Kept: $ENV{DESTDIR}${WSGATE_SYSCONFDIR}/wsgate.yaml")
else()
  file(INSTALL "${WSGATE_SOURCE_DIR}/examples/wsgate.yaml" DESTINATION "${WSGATE_SYSCONFDIR}")
endif()
