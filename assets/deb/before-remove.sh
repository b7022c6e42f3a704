#!/bin/sh
# prerm of the Bulwark deb: on removal (not on upgrade), stop and disable the units if the operator
# enabled them, so nothing keeps running from, or points at, files that are about to go.
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
  systemctl stop bulwark-server.service bulwark-agent.service >/dev/null 2>&1 || true
  systemctl disable bulwark-server.service bulwark-agent.service >/dev/null 2>&1 || true
fi
