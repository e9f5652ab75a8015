#!/bin/bash
# Registers the monitoring agent. The token comes from the build host's
# environment; only its digest is kept in the image, so the agent can prove
# which registration it was built with while the token itself never lands on disk.
set -euo pipefail
install -d -m 0750 /etc/example-agent
printf 'site=%s\ntoken_sha256=%s\n' "$AGENT_SITE" \
  "$(printf '%s' "$EXAMPLE_REGISTRATION_TOKEN" | sha256sum | cut -d' ' -f1)" \
  >/etc/example-agent/registration.conf
chmod 0640 /etc/example-agent/registration.conf
