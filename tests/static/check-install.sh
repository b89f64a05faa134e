#!/bin/sh
# check-install.sh — `make install` and `make uninstall` into scratch
# DESTDIRs: every file lands where PREFIX says with the right mode (the
# docs, docs/*.md, in share/doc/kcld), the units' ExecStart follows PREFIX, /etc/kcld/kcld.yaml is written only when
# absent and kept by uninstall once edited.  The binary is not rebuilt
# (make -o).  Run from the repository root; KCLD_BIN names the kcld binary
# of the build under test (default build/kcld).  Exit 0 pass, 1 fail.
set -eu
bin=${KCLD_BIN:-$PWD/build/kcld}
case $bin in /*) ;; *) bin=$PWD/$bin ;; esac
build=$(dirname "$bin")
build=${build#"$PWD"/}
[ -x "$bin" ] || { echo "FAIL: no kcld binary at $bin"; exit 1; }
# Not the outer make's jobserver or flags.
unset MAKEFLAGS MFLAGS MAKELEVEL MAKEOVERRIDES || true

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
bad() {
  echo "FAIL $*"
  fail=1
}
mk() {
  make --no-print-directory -s -o "$build/kcld" BUILD="$build" "$@" 2>&1
}
# expect FILE MODE: the file exists with that octal mode.
expect() {
  if [ ! -f "$1" ]; then
    bad "missing $1"
  elif [ "$(stat -c %a "$1")" != "$2" ]; then
    bad "$1 has mode $(stat -c %a "$1"), want $2"
  fi
}

for prefix in /usr/local /usr /opt/kcld; do
  d="$tmp/root$(echo "$prefix" | tr / _)"
  if ! out=$(mk install DESTDIR="$d" PREFIX="$prefix"); then
    bad "make install PREFIX=$prefix:"; printf '%s\n' "$out" | sed 's/^/     /'
    continue
  fi
  case $out in
    *systemd-sysusers*) bad "install with DESTDIR ran systemd-sysusers" ;;
  esac
  expect "$d$prefix/bin/kcld" 755
  expect "$d$prefix/lib/systemd/system/kcld.service" 644
  expect "$d$prefix/lib/systemd/system/kcld@.service" 644
  expect "$d$prefix/lib/sysusers.d/kcld.conf" 644
  expect "$d$prefix/lib/tmpfiles.d/kcld.conf" 644
  expect "$d$prefix/share/man/man8/kcld.8" 644
  expect "$d$prefix/share/doc/kcld/kcld.yaml.example" 644
  for doc in docs/*.md; do
    expect "$d$prefix/share/doc/kcld/${doc#docs/}" 644
    cmp -s "$doc" "$d$prefix/share/doc/kcld/${doc#docs/}" ||
      bad "PREFIX=$prefix: share/doc/kcld/${doc#docs/} is not $doc"
  done
  expect "$d/etc/kcld/kcld.yaml" 640
  cmp -s "$bin" "$d$prefix/bin/kcld" || bad "installed kcld is not $bin"
  cmp -s conf/kcld.yaml "$d/etc/kcld/kcld.yaml" ||
    bad "/etc/kcld/kcld.yaml is not conf/kcld.yaml"
  for u in kcld.service:kcld.yaml kcld@.service:%i.yaml; do
    conf=${u#*:} u=${u%%:*}
    exec_line=$(grep '^ExecStart=' "$d$prefix/lib/systemd/system/$u")
    [ "$exec_line" = "ExecStart=$prefix/bin/kcld --config /etc/kcld/$conf" ] ||
      bad "PREFIX=$prefix: $u has '$exec_line'"
    # Only ExecStart differs from the source unit.
    n=$(diff "systemd/$u" "$d$prefix/lib/systemd/system/$u" |
        grep -c '^[<>]' || true)
    [ "$prefix" = /usr/local ] && want=0 || want=2
    [ "$n" -eq "$want" ] || bad "PREFIX=$prefix: $u differs in $n lines"
  done
  [ "$fail" -ne 0 ] || echo "ok   install PREFIX=$prefix"
done

# Reinstall over an edited configuration: kept; uninstall keeps it too.
d="$tmp/root_usr"
echo "# edited" >> "$d/etc/kcld/kcld.yaml"
out=$(mk install DESTDIR="$d" PREFIX=/usr) || bad "reinstall: $out"
grep -q '^# edited' "$d/etc/kcld/kcld.yaml" ||
  bad "reinstall overwrote the edited /etc/kcld/kcld.yaml"
case $out in *keeping*) ;; *) bad "reinstall did not say it kept the file" ;;
esac
out=$(mk uninstall DESTDIR="$d" PREFIX=/usr) || bad "uninstall: $out"
left=$(cd "$d" && find . -type f | sort | tr '\n' ' ')
[ "$left" = "./etc/kcld/kcld.yaml " ] ||
  bad "after uninstall (config edited), left: $left"
# Uninstall of an untouched install removes everything, /etc/kcld too.
d="$tmp/root_opt_kcld"
out=$(mk uninstall DESTDIR="$d" PREFIX=/opt/kcld) || bad "uninstall: $out"
left=$(cd "$d" && find . -type f | sort | tr '\n' ' ')
[ -z "$left" ] || bad "after uninstall, left: $left"
[ ! -e "$d/etc/kcld" ] || bad "uninstall left an empty /etc/kcld"
[ "$fail" -ne 0 ] || echo "ok   config kept on reinstall; uninstall"
exit "$fail"
