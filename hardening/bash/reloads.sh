# Reloads come after the controls so every change of their kind is in place first.
# systemd first: a unit drop-in is read at the next start, which the reloads below may be.
if gs_reload_wanted systemd; then systemctl daemon-reload; fi
if gs_reload_wanted sysctl; then
  sysctl --system >/dev/null
  echo "goldsmith: reloaded sysctl" >&2
fi
if gs_reload_wanted modules; then :; fi
if gs_reload_wanted grub; then
  update-grub >&2
fi
if gs_reload_wanted pam; then :; fi
if gs_reload_wanted audit; then
  if auditctl -s 2>/dev/null | grep -q '^enabled 2'; then
    echo "goldsmith: audit rules are immutable until reboot; new rules load at next boot" >&2
  elif command -v augenrules >/dev/null; then
    augenrules --load >&2 || echo "goldsmith: augenrules --load failed; rules load at next boot" >&2
  fi
fi
if gs_reload_wanted auditd && systemctl is-active --quiet auditd; then
  # auditd refuses a manual restart; SIGHUP makes it re-read auditd.conf.
  systemctl kill -s HUP auditd.service
fi
if gs_reload_wanted journald; then systemctl restart systemd-journald; fi
if gs_reload_wanted resolved; then systemctl try-restart systemd-resolved; fi
if gs_reload_wanted ssh; then
  # Validate before reloading: a bad config must never replace the running one.
  mkdir -p /run/sshd
  sshd -t
  systemctl reload ssh 2>/dev/null || systemctl reload sshd
  echo "goldsmith: reloaded ssh" >&2
fi
