#!/bin/sh
# lint-dockerfile.sh DOCKERFILE... — the Dockerfile rules kcld cares about
# (a small stand-in for hadolint, which Debian does not package):
#
#   pinned-base      FROM names a tag or digest, and not :latest
#   apt-recommends   apt-get install uses --no-install-recommends
#   apt-yes          apt-get install uses -y
#   apt-lists        a RUN that runs apt-get update/install ends with
#                    rm -rf /var/lib/apt/lists/*
#   apt-update-alone apt-get update runs in the same RUN as the install
#   no-add           ADD only for remote URLs; COPY for local files
#   exec-form        CMD and ENTRYPOINT in exec (JSON array) form
#   user             the final stage switches to a non-root USER before
#                    its ENTRYPOINT/CMD
#   healthcheck      the final stage has a HEALTHCHECK
#
# Prints FILE:LINE: RULE: message per finding; exits 1 on any, 2 on usage.
set -eu
[ $# -ge 1 ] || { echo "usage: $0 DOCKERFILE..." >&2; exit 2; }
status=0
for f in "$@"; do
  [ -r "$f" ] || { echo "$f: cannot read" >&2; exit 2; }
  awk -v file="$f" '
    function is_root(u) {
      sub(/:.*/, "", u)
      return u == "" || u == "root" || u == "0"
    }
    function report(line, rule, msg) {
      printf "%s:%d: %s: %s\n", file, line, rule, msg
      bad = 1
    }
    # Checks one whole instruction (continuations joined).
    function check(line, text,    kw, args, n, w, img, i, src) {
      kw = toupper(text); sub(/[ \t].*/, "", kw)
      args = text; sub(/^[^ \t]+[ \t]*/, "", args)
      if (kw == "FROM") {
        stage++
        user = ""; user_line = 0; health = 0; root_entry = 0
        n = split(args, w, /[ \t]+/)
        img = ""
        for (i = 1; i <= n; i++)
          if (w[i] !~ /^--/) { img = w[i]; break }
        if (n >= i + 2 && toupper(w[i + 1]) == "AS")
          alias[tolower(w[i + 2])] = 1
        if (tolower(img) in alias || img == "scratch")
          return
        if (img ~ /@sha256:[0-9a-f]+$/)
          return
        if (img !~ /:[^\/]+$/)
          report(line, "pinned-base", "base image " img " has no tag")
        else if (img ~ /:latest$/)
          report(line, "pinned-base", "base image " img " uses :latest")
      } else if (kw == "RUN") {
        if (args ~ /apt-get[ \t]+([^;&|]*[ \t])?install/) {
          if (args !~ /--no-install-recommends/)
            report(line, "apt-recommends",
                   "apt-get install without --no-install-recommends")
          if (args !~ /apt-get[ \t]+([^;&|]*[ \t])?(-y|--yes|--assume-yes|-[a-z]*y[a-z]*)([ \t]|$)/)
            report(line, "apt-yes", "apt-get install without -y")
        }
        if (args ~ /apt-get[ \t]+([^;&|]*[ \t])?(update|install)/ &&
            args !~ /rm[ \t]+-(rf|fr)[ \t]+\/var\/lib\/apt\/lists\/\*/)
          report(line, "apt-lists",
                 "apt-get without rm -rf /var/lib/apt/lists/*")
        if (args ~ /apt-get[ \t]+([^;&|]*[ \t])?update/ &&
            args !~ /apt-get[ \t]+([^;&|]*[ \t])?install/)
          report(line, "apt-update-alone",
                 "apt-get update in a RUN without the install")
      } else if (kw == "ADD") {
        n = split(args, w, /[ \t]+/)
        for (i = 1; i < n; i++) {
          if (w[i] ~ /^--/)
            continue
          src = w[i]
          if (src !~ /^(https?:\/\/|git@)/)
            report(line, "no-add", "ADD of local " src "; use COPY")
        }
      } else if (kw == "CMD" || kw == "ENTRYPOINT") {
        if (args !~ /^\[.*\][ \t]*$/)
          report(line, "exec-form", kw " in shell form; use a JSON array")
        if (is_root(user) && !root_entry)
          root_entry = line
      } else if (kw == "USER") {
        user = args; user_line = line
      } else if (kw == "HEALTHCHECK") {
        health = (toupper(args) ~ /^NONE/) ? 0 : line
      }
    }
    BEGIN { stage = 0; bad = 0 }
    {
      sub(/\r$/, "")
      if (cont) {
        if ($0 ~ /^[ \t]*#/) next          # comment inside a continuation
        buf = buf " " $0
      } else {
        if ($0 ~ /^[ \t]*(#|$)/) next
        buf = $0; start = NR
      }
      if (buf ~ /\\[ \t]*$/) {
        sub(/\\[ \t]*$/, "", buf); cont = 1; next
      }
      cont = 0
      sub(/^[ \t]+/, "", buf)
      check(start, buf)
    }
    END {
      if (stage == 0) {
        report(1, "pinned-base", "no FROM")
      } else {
        if (is_root(user))
          report(user_line ? user_line : NR, "user",
                 "the final stage runs as root; add USER (not root)")
        else if (root_entry)
          report(root_entry, "user",
                 "ENTRYPOINT/CMD before the non-root USER")
        if (!health)
          report(NR, "healthcheck", "the final stage has no HEALTHCHECK")
      }
      exit bad
    }
  ' "$f" || status=1
done
exit "$status"
