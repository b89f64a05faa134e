#!/bin/sh
# check-unit.sh — systemd/kcld.service, kcld@.service, kcld.sysusers and
# kcld.tmpfiles, checked with systemd's own tools on a machine where systemd
# need not run:
#   - `systemd-analyze verify` prints nothing (a copy of the unit whose
#     ExecStart is the kcld under test; man:kcld(8) found in docs/man)
#   - the directives kcld's operation depends on are there, and
#     TimeoutStopSec exceeds the default shutdown_timeout in conf/kcld.yaml
#     by more than 2s (kcld exits within shutdown_timeout + 2s)
#   - systemd-sysusers creates the unit's User/Group in a scratch root, and
#     systemd-tmpfiles gives /etc/kcld to that group with modes 0750/0640
#   - `systemd-analyze security --offline=yes` exposure stays at or under
#     KCLD_MAX_EXPOSURE (default 2.0); the score is printed.
#   - the template kcld@.service: an instance verifies, reads
#     /etc/kcld/%i.yaml, has its own StateDirectory and environment file,
#     and is kcld.service line for line otherwise.
# Run from the repository root; KCLD_UNIT and KCLD_TEMPLATE override the
# units checked (the test feeds them broken copies); KCLD_BIN names the
# kcld binary (default build/kcld).  Exit 0 pass, 1 fail, 77 skip (tools
# missing).
set -eu
unit=${KCLD_UNIT:-systemd/kcld.service}
template=${KCLD_TEMPLATE:-systemd/kcld@.service}
bin=${KCLD_BIN:-$PWD/build/kcld}
max=${KCLD_MAX_EXPOSURE:-2.0}
fail=0

if ! command -v systemd-analyze >/dev/null 2>&1; then
  echo "skip: systemd-analyze is not installed (Debian package: systemd)"
  exit 77
fi
[ -x "$bin" ] || { echo "FAIL: no kcld binary at $bin"; exit 1; }
case $bin in /*) ;; *) bin=$PWD/$bin ;; esac

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

bad() {
  echo "FAIL $*"
  fail=1
}

# Duration to milliseconds: 250ms, 30s, 5m/5min, 1h, or plain seconds.
to_ms() {
  echo "$1" | awk '
    /^[0-9]+ms$/ { sub(/ms$/, ""); print $0; exit }
    /^[0-9]+s?$/ { sub(/s$/, ""); print $0 * 1000; exit }
    /^[0-9]+(m|min)$/ { sub(/m(in)?$/, ""); print $0 * 60000; exit }
    /^[0-9]+h$/ { sub(/h$/, ""); print $0 * 3600000; exit }
    { print -1 }'
}

# The value of the last KEY= line in the unit ("" when absent).
get() {
  sed -n "s/^$1=//p" "$unit" | tail -n 1
}

# ---- systemd-analyze verify
want_exec='/usr/local/bin/kcld --config /etc/kcld/kcld.yaml'
[ "$(get ExecStart)" = "$want_exec" ] ||
  bad "ExecStart is '$(get ExecStart)', want '$want_exec' (make install" \
      "rewrites that path)"
mkdir -p "$tmp/man/man8"
cp docs/man/kcld.8 "$tmp/man/man8/kcld.8"
if command -v man >/dev/null 2>&1; then
  manopt=--man=yes
else
  manopt=--man=no
  echo "note: man is not installed; not checking man:kcld(8)"
fi
# verify SRC NAME: a copy of unit file SRC as $tmp/NAME, ExecStart on the
# kcld under test, verified as $tmp/INSTANCE (NAME, or NAME's template with
# the instance "check").
verify() {
  sed "s|^ExecStart=/usr/local/bin/kcld |ExecStart=$bin |" "$1" > "$tmp/$2"
  case $2 in *@.service) inst=${2%@.service}@check.service ;; *) inst=$2 ;;
  esac
  if out=$(MANPATH="$tmp/man" systemd-analyze verify "$manopt" \
             "$tmp/$inst" 2>&1) && [ -z "$out" ]; then
    echo "ok   systemd-analyze verify $inst"
  else
    bad "systemd-analyze verify $inst:"
    printf '%s\n' "$out" | sed 's/^/     /'
  fi
}
verify "$unit" kcld.service

# ---- directives
for kv in Type=notify NotifyAccess=main WatchdogSec=30s Restart=on-failure \
    RestartSec=2s User=kcld Group=kcld KillSignal=SIGTERM KillMode=mixed \
    EnvironmentFile=-/etc/default/kcld ProtectSystem=strict ProtectHome=yes \
    NoNewPrivileges=yes PrivateTmp=yes PrivateDevices=yes \
    CapabilityBoundingSet= \
    'RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX' \
    SystemCallFilter=@system-service SystemCallArchitectures=native \
    ProtectKernelTunables=yes ProtectKernelModules=yes ProtectKernelLogs=yes \
    ProtectControlGroups=yes ProtectClock=yes ProtectHostname=yes \
    RestrictNamespaces=yes RestrictRealtime=yes RestrictSUIDSGID=yes \
    LockPersonality=yes MemoryDenyWriteExecute=yes UMask=0077 \
    StateDirectory=kcld \
    "ExecReload=/bin/kill -HUP \$MAINPID"; do
  grep -qxF "$kv" "$unit" || bad "$unit lacks the line '$kv'"
done
# Harmful here: a dynamic uid (the sysusers user owns /etc/kcld); no network
# or an IP allow list (AWS endpoints and the instance metadata service must
# stay reachable).
for k in DynamicUser PrivateNetwork IPAddressDeny IPAddressAllow; do
  if grep -q "^$k=" "$unit"; then bad "$unit sets $k="; fi
done
stop_ms=$(to_ms "$(get TimeoutStopSec)")
shut=$(sed -n 's/^shutdown_timeout:[[:space:]]*\([^[:space:]#]*\).*/\1/p' \
         conf/kcld.yaml)
shut_ms=$(to_ms "${shut:-none}")
if [ "$shut_ms" -lt 0 ] || [ "$stop_ms" -lt 0 ]; then
  bad "cannot read TimeoutStopSec ('$(get TimeoutStopSec)') or" \
      "conf/kcld.yaml shutdown_timeout ('$shut')"
elif [ "$stop_ms" -le $((shut_ms + 2000)) ]; then
  bad "TimeoutStopSec=$(get TimeoutStopSec) is not above shutdown_timeout" \
      "$shut + 2s"
else
  echo "ok   TimeoutStopSec=$(get TimeoutStopSec) > shutdown_timeout $shut + 2s"
fi
wd_ms=$(to_ms "$(get WatchdogSec)")
[ "$wd_ms" -ge 2000 ] || bad "WatchdogSec=$(get WatchdogSec) is too short"

# ---- sysusers and tmpfiles in a scratch root
user=$(get User)
group=$(get Group)
if command -v systemd-sysusers >/dev/null 2>&1 &&
   command -v systemd-tmpfiles >/dev/null 2>&1; then
  root="$tmp/root"
  mkdir -p "$root/etc/kcld"
  cp conf/kcld.yaml "$root/etc/kcld/kcld.yaml"
  cp conf/kcld.yaml "$root/etc/kcld/orders.yaml" # a kcld@orders instance's
  if ! out=$(systemd-sysusers --root="$root" - < systemd/kcld.sysusers 2>&1)
  then
    bad "systemd-sysusers:"; printf '%s\n' "$out" | sed 's/^/     /'
  fi
  uid=$(awk -F: -v u="$user" '$1 == u { print $3 }' "$root/etc/passwd" \
          2>/dev/null || true)
  gid=$(awk -F: -v g="$group" '$1 == g { print $3 }' "$root/etc/group" \
          2>/dev/null || true)
  shell=$(awk -F: -v u="$user" '$1 == u { print $7 }' "$root/etc/passwd" \
            2>/dev/null || true)
  if [ -z "$uid" ] || [ -z "$gid" ]; then
    bad "kcld.sysusers does not create user '$user' and group '$group'"
  elif [ "$uid" -ge 1000 ] || [ "$uid" -eq 0 ]; then
    bad "user $user got uid $uid, not a system uid"
  elif [ "$shell" != /usr/sbin/nologin ]; then
    bad "user $user has shell '$shell'"
  else
    echo "ok   sysusers: $user uid $uid, $group gid $gid"
  fi
  if ! out=$(systemd-tmpfiles --root="$root" --create - \
               < systemd/kcld.tmpfiles 2>&1); then
    bad "systemd-tmpfiles:"; printf '%s\n' "$out" | sed 's/^/     /'
  fi
  d=$(stat -c '%a %u %g' "$root/etc/kcld")
  f=$(stat -c '%a %u %g' "$root/etc/kcld/kcld.yaml")
  o=$(stat -c '%a %u %g' "$root/etc/kcld/orders.yaml")
  if [ "$d" = "750 0 ${gid:-x}" ] && [ "$f" = "640 0 ${gid:-x}" ] &&
     [ "$o" = "$f" ]; then
    echo "ok   tmpfiles: /etc/kcld 0750 root:$group, kcld.yaml and" \
      "orders.yaml 0640"
  else
    bad "tmpfiles: /etc/kcld is '$d', kcld.yaml '$f', orders.yaml '$o'" \
      "(want 750/640 0 $gid)"
  fi
else
  echo "note: systemd-sysusers/systemd-tmpfiles missing; not checked"
fi

# ---- exposure
exposure() {
  out=$(systemd-analyze security --offline=yes "$tmp/$1" 2>&1) || true
  score=$(printf '%s\n' "$out" |
          sed -n "s/.*Overall exposure level for $1: \\([0-9.]*\\).*/\\1/p")
  if [ -z "$score" ]; then
    bad "systemd-analyze security $1 gave no score:"
    printf '%s\n' "$out" | tail -n 5 | sed 's/^/     /'
  elif awk -v s="$score" -v m="$max" 'BEGIN { exit !(s > m) }'; then
    bad "exposure of $1 $score is above $max:"
    printf '%s\n' "$out" | grep '✗' | sed 's/^/     /'
  else
    echo "ok   exposure of $1 $score (limit $max)"
  fi
}
exposure kcld.service

# ---- the template
want_exec='/usr/local/bin/kcld --config /etc/kcld/%i.yaml'
tget() {
  sed -n "s/^$1=//p" "$template" | tail -n 1
}
[ "$(tget ExecStart)" = "$want_exec" ] ||
  bad "$template: ExecStart is '$(tget ExecStart)', want '$want_exec'"
[ "$(tget StateDirectory)" = 'kcld/%i' ] ||
  bad "$template: StateDirectory is '$(tget StateDirectory)', want kcld/%i"
grep -qxF 'EnvironmentFile=-/etc/default/kcld-%i' "$template" ||
  bad "$template lacks EnvironmentFile=-/etc/default/kcld-%i"
case $(tget Description) in *%i*) ;;
  *) bad "$template: the Description does not name the instance (%i)" ;;
esac
# Line for line kcld.service, but for the lines above (comments aside).
same() {
  grep -v -e '^#' -e '^$' -e '^Description=' -e '^ExecStart=' \
    -e '^StateDirectory' -e '^EnvironmentFile=-/etc/default/kcld-%i$' "$1"
}
same "$unit" > "$tmp/unit.lines"
same "$template" > "$tmp/template.lines"
if out=$(diff "$tmp/unit.lines" "$tmp/template.lines"); then
  echo "ok   $template is $unit but for the instance's lines"
else
  bad "$template and $unit differ (< unit, > template):"
  printf '%s\n' "$out" | sed 's/^/     /'
fi
verify "$template" kcld@.service
exposure kcld@check.service
exit "$fail"
