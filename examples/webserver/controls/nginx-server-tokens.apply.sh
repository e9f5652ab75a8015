# example.nginx-server-tokens, apply: server_tokens off at the http level
# (Debian's nginx.conf includes conf.d/*.conf inside its http block), so every
# server block inherits it, whatever a site's own configuration says or
# forgets. A server block may say it again: the levels do not conflict.
gs_install_content /etc/nginx/conf.d/example-server-tokens.conf 0644 <<'EOF2'
# Written by goldsmith (example.nginx-server-tokens): no version in headers
# and error pages.
server_tokens off;
EOF2
if [ "$GS_CHANGED" = 1 ]; then
  # A configuration nginx refuses fails the build here, not nginx at first boot.
  nginx -t -q
fi
