#!/bin/sh
# preinst of the Bulwark deb: the system user that bulwark-server.service and bulwark-agent.service
# run as (their state directories, /var/lib/bulwark and /var/lib/bulwark-agent, are made by systemd).
# The units are installed but not enabled: see docs/install.md.
set -e
if ! getent passwd bulwark >/dev/null; then
  useradd --system --user-group --home-dir /var/lib/bulwark --no-create-home \
    --shell /usr/sbin/nologin --comment 'Bulwark update server' bulwark
fi
