#!/bin/sh
# check-man.sh — docs/man/kcld.8 renders without groff warnings, and it
# agrees with `kcld --help`: every option and visible command of the help
# is documented, and every option in the page's OPTIONS section exists.
# Run from the repository root; KCLD_BIN names the kcld binary (default
# build/kcld).  Exit 0 pass, 1 fail.
set -eu
page=${KCLD_MAN:-docs/man/kcld.8}
bin=${KCLD_BIN:-build/kcld}
fail=0
bad() {
  echo "FAIL $*"
  fail=1
}

if command -v groff >/dev/null 2>&1; then
  if out=$(groff -man -ww -z "$page" 2>&1) && [ -z "$out" ]; then
    echo "ok   groff -man -ww: no warnings"
  else
    bad "groff -man -ww:"
    printf '%s\n' "$out" | sed 's/^/     /'
  fi
else
  echo "note: groff is not installed (Debian package groff-base);" \
    "rendering not checked"
fi
for s in NAME SYNOPSIS DESCRIPTION OPTIONS COMMANDS FILES SIGNALS \
    "EXIT STATUS" ENVIRONMENT "SEE ALSO"; do
  grep -qx "\.SH \"\{0,1\}$s\"\{0,1\}" "$page" || bad "$page has no section $s"
done

[ -x "$bin" ] || { echo "FAIL: no kcld binary at $bin"; exit 1; }
help=$("$bin" --help) || { echo "FAIL: $bin --help failed"; exit 1; }

# Options: "  -c, --config PATH" / "      --dump-config" lines of the help.
opts=$(printf '%s\n' "$help" |
       sed -n 's/^ \{1,\}\(-[A-Za-z]\)\{0,1\},\{0,1\} *\(--[a-z][a-z-]*\).*/\1 \2/p')
[ -n "$opts" ] || bad "no options found in --help"
n=0
for o in $opts; do
  n=$((n + 1))
  esc=$(printf '%s' "$o" | sed 's/-/\\\\-/g')
  grep -q -- "$esc" "$page" || bad "--help lists $o; $page does not"
done
# Visible commands: the lines after "commands:".
cmds=$(printf '%s\n' "$help" | sed -n '/^commands:/,$p' |
       sed -n 's/^  \([a-z][a-z-]*\)  .*/\1/p')
for c in $cmds; do
  n=$((n + 1))
  esc=$(printf '%s' "$c" | sed 's/-/\\\\-/g')
  grep -qx "\.B \($c\|$esc\)" "$page" ||
    bad "--help lists command $c; $page does not"
done
# The page's OPTIONS section documents only real options.
documented=$(sed -n '/^\.SH OPTIONS/,/^\.SH /p' "$page" |
             grep -o '\\-\\-[a-z][a-z\\-]*' | sed 's/\\//g' | sort -u)
for o in $documented; do
  printf '%s\n' "$help" | grep -q -- "$o" ||
    bad "$page documents $o; --help does not list it"
done
[ "$fail" -ne 0 ] || echo "ok   $n options and commands of --help documented"
exit "$fail"
