# Rendered by goldsmith. Run as root: bash -euo pipefail <this file>
set -euo pipefail
set -o errtrace
# errtrace hands the ERR trap to functions: a failure anywhere names the
# control and the command instead of ending the script without a word. Only the
# shell that is about to exit speaks; command substitutions run without errexit
# and their failures surface, if they matter, in the command that used them.
gs_failed() {
  [ "$BASH_SUBSHELL" = 0 ] || return 0
  echo "goldsmith: failed ${GS_ID:-prelude} at line $1 (exit $2): $3" >&2
}
trap 'gs_failed "$LINENO" "$?" "$BASH_COMMAND"' ERR
# Nothing may wait for input: over SSH stdin is an open channel that never ends.
exec </dev/null
export DEBIAN_FRONTEND=noninteractive LC_ALL=C LANG=C
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
umask 022
shopt -s nullglob
GS_CHANGED=0
GS_ID=""
GS_RELOAD=""
GS_APT_UPDATED=0
# Not under /tmp: a control may mount a fresh tmpfs there mid-run.
GS_TMP=$(mktemp -d /run/goldsmith-apply.XXXXXX)
# Only ever remove our own scratch folder, whatever GS_TMP was set to.
trap 'case "$GS_TMP" in /run/goldsmith-apply.?*) rm -rf -- "$GS_TMP" ;; esac' EXIT

# The Debian major release ("12"), for controls that apply to some releases
# only; empty where os-release names none (testing, sid), where all apply.
GS_RELEASE=$(sed -n 's/^VERSION_ID="\{0,1\}\([0-9]*\).*/\1/p' /etc/os-release 2>/dev/null || true)
gs_release_in() {
  local release
  for release in "$@"; do [ "$release" = "$GS_RELEASE" ] && return 0; done
  return 1
}

gs_begin() { GS_ID=$1; GS_CHANGED=0; }
gs_end() {
  if [ "$GS_CHANGED" = 1 ]; then
    echo "goldsmith: changed $GS_ID"
  else
    echo "goldsmith: unchanged $GS_ID"
  fi
}
# gs_changed [reload-flag]: note a change, and what must be reloaded at the end.
# A caller holding an optional flag passes ${flag:+"$flag"}: no argument when empty.
gs_changed() {
  GS_CHANGED=1
  if [ $# -gt 0 ]; then case " $GS_RELOAD " in *" $1 "*) ;; *) GS_RELOAD="$GS_RELOAD $1" ;; esac; fi
}
gs_reload_wanted() { case " $GS_RELOAD " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
gs_note() { echo "goldsmith: note $GS_ID: $*" >&2; }

# gs_install_content PATH MODE [FLAG] < content: write PATH when its content differs.
# Always fed by a redirection, never a pipe: a pipe would run it in a subshell
# and lose GS_CHANGED.
gs_install_content() {
  local path=$1 mode=$2 flag=${3:-} new="$GS_TMP/new"
  cat >"$new"
  if [ -f "$path" ] && cmp -s "$new" "$path"; then
    :
  elif [ -e "$path" ]; then
    cat "$new" >"$path"; gs_changed ${flag:+"$flag"}
  else
    mkdir -p "$(dirname "$path")"
    install -m "$mode" -o root -g root "$new" "$path"; gs_changed ${flag:+"$flag"}
  fi
  rm -f "$new"
}

# gs_set_line FILE KEY_ERE LINE [FLAG] [MODE]: the first line matching KEY_ERE
# becomes LINE, later ones are commented out; LINE is appended when none matches.
# MODE applies when the file is created.
gs_set_line() {
  local file=$1 re=$2 line=$3 flag=${4:-} mode=${5:-0644}
  GS_RE=$re GS_LINE=$line awk '
    BEGIN { re = ENVIRON["GS_RE"]; line = ENVIRON["GS_LINE"]; done = 0 }
    $0 ~ re { if (!done) { print line; done = 1 } else { print "# goldsmith: " $0 }; next }
    { print }
    END { if (!done) print line }
  ' "$( [ -e "$file" ] && echo "$file" || echo /dev/null )" >"$GS_TMP/edit"
  gs_install_content "$file" "$mode" "$flag" <"$GS_TMP/edit"
}

# gs_comment_out FILE KEY_ERE [KEEP_LINE] [FLAG]: comment out lines matching KEY_ERE
# (other than KEEP_LINE) before any Match block, so they cannot override ours.
gs_comment_out() {
  local file=$1 re=$2 keep=${3:-} flag=${4:-}
  [ -f "$file" ] || return 0
  GS_RE=$re GS_KEEP=$keep awk '
    BEGIN { re = ENVIRON["GS_RE"]; keep = ENVIRON["GS_KEEP"]; inmatch = 0 }
    /^[[:space:]]*[Mm][Aa][Tt][Cc][Hh][[:space:]]/ { inmatch = 1 }
    !inmatch && $0 ~ re && $0 != keep { print "# goldsmith: " $0; next }
    { print }
  ' "$file" >"$GS_TMP/edit"
  gs_install_content "$file" 0644 "$flag" <"$GS_TMP/edit"
}

# gs_absent PATH: remove a file when it exists.
gs_absent() { if [ -e "$1" ] || [ -L "$1" ]; then rm -f -- "$1"; gs_changed; fi; }

gs_apt_update() {
  if [ "$GS_APT_UPDATED" = 0 ]; then apt-get update -qq >&2; GS_APT_UPDATED=1; fi
}

# gs_pkg_installed NAME: dpkg has it installed.
gs_pkg_installed() {
  dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null | grep -q '^.i'
}

# gs_pkg_states NAME...: "name status" for every named package dpkg knows (one
# dpkg-query for all of them; status like "ii " or "rc ").
gs_pkg_states() {
  dpkg-query -W -f='${Package} ${db:Status-Abbrev}\n' "$@" 2>/dev/null || true
}

gs_pkg_present() {
  local missing=() installed=" " name state
  while read -r name state; do
    case "$state" in ?i*) installed+="$name " ;; esac
  done < <(gs_pkg_states "$@")
  for name in "$@"; do
    case "$installed" in *" $name "*) ;; *) missing+=("$name") ;; esac
  done
  if [ ${#missing[@]} -gt 0 ]; then
    gs_apt_update
    apt-get install -y -qq --no-install-recommends \
      -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}" >&2
    gs_changed
  fi
}

gs_pkg_absent() {
  local present=() name state
  while read -r name state; do
    case "$state" in ?n*) ;; *) present+=("$name") ;; esac
  done < <(gs_pkg_states "$@")
  if [ ${#present[@]} -gt 0 ]; then
    apt-get purge -y -qq "${present[@]}" >&2
    gs_changed
  fi
}

# gs_fix_mode PATH MAX_OCTAL OWNER GROUP: drop mode bits beyond MAX, fix owner/group.
# A symlink stands for the file it resolves to, as chmod and chown treat it: its
# own mode is always 0777 and means nothing (Debian 13's keyrings are symlinks).
gs_fix_mode() {
  local path=$1 max=$2 owner=$3 group=$4 cur new
  cur=$(stat -L -c '%a' -- "$path")
  new=$(printf '%o' $(( 0$cur & 0$max )))
  if [ "$new" != "$cur" ]; then chmod "$new" -- "$path"; gs_changed; fi
  if [ -n "$owner" ] && [ "$(stat -L -c '%U' -- "$path")" != "$owner" ]; then
    chown "$owner" -- "$path"; gs_changed
  fi
  if [ -n "$group" ] && [ "$(stat -L -c '%G' -- "$path")" != "$group" ]; then
    chgrp "$group" -- "$path"; gs_changed
  fi
}

# gs_settings OWN MODE FLAG SPEC OTHER...: SPEC holds one "KEY_ERE<TAB>LINE"
# per line. In OWN the first line matching each KEY_ERE becomes its LINE (later
# matches are commented out, missing lines appended; MODE applies when OWN is
# created); in every OTHER file (OWN itself and symlinks skipped) lines matching
# any KEY_ERE before a Match block are commented out, so they cannot override
# ours, unless they are our LINE (whitespace aside). One awk pass reads every
# file; only files whose content changes are rewritten, each through
# gs_install_content.
gs_settings() {
  local own=$1 mode=$2 flag=$3 spec=$4 f k path others=() own_in=/dev/null
  shift 4
  for f in "$@"; do
    [ "$f" = "$own" ] || [ -L "$f" ] || [ ! -f "$f" ] || others+=("$f")
  done
  [ -e "$own" ] && own_in=$own
  GS_SPEC=$spec GS_OWN=$own GS_OUT="$GS_TMP/set" awk '
    function flush() {
      if (file == "") return
      if (isown) for (i = 1; i <= n; i++) if (!done[i]) { body = body line[i] "\n"; changed = 1 }
      if (changed) {
        k++; printf "%s", body > (out "." k); close(out "." k)
        print k "\t" (isown ? ENVIRON["GS_OWN"] : file)
      }
    }
    function squash(s) { gsub(/[[:space:]]+/, " ", s); sub(/^ /, "", s); sub(/ $/, "", s); return s }
    function start(name, own_flag) {
      flush(); file = name; isown = own_flag; body = ""; changed = 0; inmatch = 0
      for (i = 1; i <= n; i++) done[i] = 0
    }
    BEGIN {
      out = ENVIRON["GS_OUT"]; k = 0; file = ""
      n = split(ENVIRON["GS_SPEC"], rows, "\n")
      for (i = 1; i <= n; i++) {
        t = index(rows[i], "\t")
        re[i] = substr(rows[i], 1, t - 1); line[i] = substr(rows[i], t + 1)
      }
      start("(own)", 1)
    }
    FNR == 1 && FILENAME != ARGV[1] { start(FILENAME, 0) }
    {
      text = $0
      if (isown) {
        for (i = 1; i <= n; i++) if ($0 ~ re[i]) {
          if (!done[i]) { text = line[i]; done[i] = 1 } else text = "# goldsmith: " $0
          break
        }
      } else {
        if ($0 ~ /^[[:space:]]*[Mm][Aa][Tt][Cc][Hh][[:space:]]/) inmatch = 1
        # A line elsewhere saying what ours says is left alone: cloud-init
        # writes PasswordAuthentication no again at each first boot, and
        # commenting it out each time would make every apply a change.
        if (!inmatch) for (i = 1; i <= n; i++) if ($0 ~ re[i]) {
          if (squash($0) != squash(line[i])) text = "# goldsmith: " $0
          break
        }
      }
      if (text != $0) changed = 1
      body = body text "\n"
    }
    END { flush() }
  ' "$own_in" "${others[@]}" >"$GS_TMP/set.list"
  while IFS=$'\t' read -r k path; do
    gs_install_content "$path" "$mode" "$flag" <"$GS_TMP/set.$k"
  done <"$GS_TMP/set.list"
}

# gs_sysctl KEY VALUE KEY_ERE [KEY VALUE KEY_ERE ...]: persist in our sysctl.d
# file, silence other /etc settings of the keys (a later file would win), and
# set the live values (read and written through /proc/sys, no process each).
# A vendor file named after ours (procps' /usr/lib/sysctl.d/99-protect-links.conf)
# would also win at boot: a copy of it in /etc/sysctl.d masks it, and there
# the keys are silenced like any other /etc setting.
GS_SYSCTL_FILE=/etc/sysctl.d/60-goldsmith.conf
gs_sysctl() {
  local spec="" any="" key value proc cur parts=() args=("$@") f name later=()
  while [ $# -ge 3 ]; do spec+="$3"$'\t'"$1 = $2"$'\n'; any+="${any:+|}($3)"; shift 3; done
  for f in /run/sysctl.d/*.conf /usr/local/lib/sysctl.d/*.conf /usr/lib/sysctl.d/*.conf; do
    name=${f##*/}
    [ -f "$f" ] && [[ $name > ${GS_SYSCTL_FILE##*/} ]] && [ ! -e "/etc/sysctl.d/$name" ] && later+=("$f")
  done
  if [ ${#later[@]} -gt 0 ]; then
    while IFS= read -r f; do
      name=${f##*/}
      # The first directory holding a name wins (/run, then /usr/local/lib, /usr/lib).
      [ -e "/etc/sysctl.d/$name" ] || { cp -- "$f" "/etc/sysctl.d/$name"; gs_changed sysctl; }
    done < <(grep -lE -- "$any" "${later[@]}" 2>/dev/null || true)
  fi
  gs_settings "$GS_SYSCTL_FILE" 0644 sysctl "${spec%$'\n'}" /etc/sysctl.conf /etc/sysctl.d/*.conf
  set -- "${args[@]}"
  while [ $# -ge 3 ]; do
    key=$1 value=$2; shift 3
    proc=/proc/sys/${key//.//}
    if [ ! -e "$proc" ]; then gs_note "cannot set $key on this kernel"; continue; fi
    read -r -a parts <"$proc" || true
    cur="${parts[*]}"
    [ "$cur" = "$value" ] && continue
    if { printf '%s\n' "$value" >"$proc"; } 2>/dev/null; then
      gs_changed sysctl
    else
      gs_note "cannot set $key on this kernel"
    fi
  done
}

# gs_sshd KEY VALUE KEY_ERE [KEY VALUE KEY_ERE ...]: our drop-in sets them;
# Debian's sshd_config reads sshd_config.d first and the first value wins, so
# the same keys elsewhere (for instance cloud-init's 50-cloud-init.conf, which
# sorts before ours) are commented out rather than left to race ours.
GS_SSHD_FILE=/etc/ssh/sshd_config.d/50-goldsmith.conf
gs_sshd() {
  local spec=""
  local include='^[[:space:]]*Include[[:space:]]+/etc/ssh/sshd_config\.d/\*\.conf'
  if ! grep -Eqi "$include" /etc/ssh/sshd_config; then
    { echo 'Include /etc/ssh/sshd_config.d/*.conf'; cat /etc/ssh/sshd_config; } \
      >"$GS_TMP/sshd_config"
    gs_install_content /etc/ssh/sshd_config 0600 ssh <"$GS_TMP/sshd_config"
  fi
  while [ $# -ge 3 ]; do spec+="$3"$'\t'"$1 $2"$'\n'; shift 3; done
  gs_settings "$GS_SSHD_FILE" 0600 ssh "${spec%$'\n'}" \
    /etc/ssh/sshd_config /etc/ssh/sshd_config.d/*.conf
}

# gs_fstab TARGET OPTIONS [SOURCE FSTYPE BASE_OPTIONS]: make the fstab entry for
# TARGET carry OPTIONS (comma list), adding the entry when SOURCE is given, then
# bring the live mount in line (mount or remount from fstab).
gs_fstab() {
  local target=$1 want=$2 source=${3:-} fstype=${4:-} base=${5:-defaults} opt
  if ! awk -v t="$target" '$1 !~ /^#/ && $2 == t { found = 1 } END { exit !found }' /etc/fstab; then
    if [ -z "$source" ]; then
      gs_note "$target is not a separate file system; partitions are not changed here"
      return 0
    fi
    printf '%s\t%s\t%s\t%s\t0\t0\n' "$source" "$target" "$fstype" "$base,$want" \
      >>/etc/fstab
    gs_changed
  fi
  GS_T=$target GS_W=$want awk '
    BEGIN { t = ENVIRON["GS_T"]; n = split(ENVIRON["GS_W"], want, ",") }
    $1 !~ /^#/ && $2 == t {
      opts = $4
      for (i = 1; i <= n; i++) if (("," opts ",") !~ ("," want[i] ",")) opts = opts "," want[i]
      if (opts != $4) { $4 = opts; print; next }
    }
    { print }
  ' /etc/fstab >"$GS_TMP/fstab"
  gs_install_content /etc/fstab 0644 <"$GS_TMP/fstab"
  if ! mountpoint -q "$target"; then
    mount "$target"; gs_changed
    return 0
  fi
  for opt in ${want//,/ }; do
    if ! findmnt -rn -o OPTIONS --target "$target" | tr ',' '\n' | grep -qx "$opt"; then
      mount -o remount "$target"; gs_changed
      break
    fi
  done
}
