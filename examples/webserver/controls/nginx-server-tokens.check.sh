# example.nginx-server-tokens, check: nginx names no version in its headers
# and error pages. nginx -T prints the whole configuration it would load,
# every included file; outside comments, every server_tokens directive must
# say off, and there must be one (nginx's default is on).
if ! config=$(nginx -T 2>/dev/null); then
  echo "nginx -T failed: the configuration does not load"
  exit 1
fi
tokens=$(printf '%s\n' "$config" | sed 's/#.*//' \
  | grep -oE 'server_tokens[[:space:]]+[^;[:space:]]+[[:space:]]*;' \
  | tr -s ' \t' ' ' | sed 's/ ;$/;/' | sort -u)
echo "${tokens:-no server_tokens directive}"
[ "$tokens" = "server_tokens off;" ]
