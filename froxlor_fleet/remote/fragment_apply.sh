#!/bin/sh
# ON THE MANAGED HOST, as a guarded step (under the host lock): the ProFTPd fragment.
#
#   check PATH CONTENT
#       Would ProFTPd accept CONTENT at PATH? Tried with `proftpd -t -c CANDIDATE`
#       without touching PATH (see candidate_main); ProFTPd is not restarted, nothing
#       changes. Runs before any firewall change (exit 1: ProFTPd's message).
#   apply PATH CONTENT MARKER
#       Make PATH exactly CONTENT ("" = remove it), test the whole configuration with
#       `proftpd -t`, restart a running ProFTPd (systemd, or its init script) and check
#       it runs; then write CONTENT's sha256 to MARKER (what ProFTPd has loaded). On
#       any failure the previous fragment is put back and ProFTPd restarted on it (the
#       marker is removed if that fails too: the next run restarts it), exit 1.
#       In a passive-range change, switch_step.sh runs this and then moves UFW.
# Temporary files (the backup, the candidate) live in a folder of the step's own
# (FROXLOR_FLEET_STEP_DIR, root-only, from step.sh), removed on every way out.
set -u
export LC_ALL=C  # globs and sort in byte order: ProFTPd sorts Include matches by strcmp
mode=$1; path=$2; content=$3
dir=${path%/*}; name=${path##*/}
main=${dir%/*}/proftpd.conf  # ProFTPd's main file, beside conf.d (Debian, froxlor)

work=$(mktemp -d "${FROXLOR_FLEET_STEP_DIR:?run as a guarded step (step.sh)}/fragment.XXXXXX") || exit 1
tmp=
trap 'rm -rf "$work"; if [ -n "$tmp" ]; then rm -f "$tmp"; fi' EXIT
trap 'exit 1' INT TERM HUP

# `proftpd -t` passes when it exits 0 and prints no "fatal:" (ProFTPd 1.3.7a-1.3.8c
# exit 0 when an included file has a fatal error). "$@": more options (-c FILE).
config_ok() {
  out=$(proftpd -t "$@" 2>&1); rc=$?
  [ $rc -eq 0 ] && ! printf '%s\n' "$out" | grep -q 'fatal:'
}
proftpd_says() { printf '%s\n' "$out" | grep -v '^Checking syntax' >&2; }

prev=$work/previous; had=no
if [ -f "$path" ]; then cp -p "$path" "$prev"; had=yes; fi
put() {  # $1: the fragment text ("" = no fragment)
  if [ -n "$1" ]; then
    # beside conf.d, not in it: ProFTPd includes every file there, temporary ones too
    tmp=$(mktemp "$dir/../.froxlor-fleet-fragment.XXXXXX")
    printf '%s' "$1" > "$tmp"; chmod 0644 "$tmp"; mv -f "$tmp" "$path"; tmp=
  else
    rm -f "$path"
  fi
}
restore() {
  if [ $had = yes ]; then
    tmp=$(mktemp "$dir/../.froxlor-fleet-fragment.XXXXXX")
    cp -p "$prev" "$tmp"; mv -f "$tmp" "$path"; tmp=
  else
    rm -f "$path"
  fi
}

# The Include target of line $1 (quotes taken off), or nothing when it is no Include.
include_target() {
  case $1 in *[Ii][Nn][Cc][Ll][Uu][Dd][Ee]*) ;; *) return 0 ;; esac
  printf '%s\n' "$1" | sed -n 's/^[[:space:]]*[Ii][Nn][Cc][Ll][Uu][Dd][Ee][[:space:]]\{1,\}"\{0,1\}\([^"]*[^"[:space:]]\)"\{0,1\}[[:space:]]*$/\1/p'
}
# Does name $1 match pattern $2 as fnmatch(FNM_PERIOD) does ("": a directory Include,
# every name)? With IncludeOptions IgnoreTempFiles, *~ and *.sw? are left out.
included_name() {
  case $temp_files in
    ignored) case $1 in .*) ;; *~|*.sw?) return 1 ;; esac ;;
  esac
  [ -z "$2" ] && return 0
  case $1 in .*) case $2 in .*) ;; *) return 1 ;; esac ;; esac
  # shellcheck disable=SC2254  # $2 is the pattern
  case $1 in $2) return 0 ;; esac
  return 1
}
# What ProFTPd reads for an Include of every name matching $2 in $dir, in its order
# (strcmp of the path), with the candidate $1 in the fragment's place: one Include
# line per file. A subdirectory or a broken link is skipped (ProFTPd: EISDIR/ENOENT).
expanded() {
  { ls -A "$dir"; printf '%s\n' "$name"; } | sort -u | while IFS= read -r n; do
    included_name "$n" "$2" || continue
    if [ "$n" = "$name" ]; then f=$1
    elif [ -f "$dir/$n" ]; then f=$dir/$n
    else continue
    fi
    case $f in *[][*?\"]*)  # ProFTPd would take it for a glob, or can't quote it
      echo "cannot name $f in an Include" >&2; return 1 ;;
    esac
    printf 'Include "%s"\n' "$f"
  done
}

# The candidate configuration: a copy of the main file ($main) in which each Include
# that reads the fragment's file (conf.d itself, a glob in conf.d that matches its
# name, or the file) is replaced by Includes of the files it reads, one by one in
# ProFTPd's order, with the candidate ($1) instead of the fragment. ProFTPd reads a
# directory or glob Include as exactly that sequence of single-file Includes under the
# same IncludeOptions (parser.c parse_config_path2()), so `proftpd -t -c` on it parses
# what a restart parses once PATH holds CONTENT; PATH itself is never written. All
# other lines, includes of other files among them, stay as they are (absolute paths:
# ProFTPd takes no relative Include). Exit 1: no Include in $main reads the fragment
# (conf.d included from another file): it can't be tried apart from the live file.
candidate_main() {
  temp_files="read" found=no
  while IFS= read -r line || [ -n "$line" ]; do
    words=${line#"${line%%[![:space:]]*}"}
    case $words in
      [Ii][Nn][Cc][Ll][Uu][Dd][Ee][Oo][Pp][Tt][Ii][Oo][Nn][Ss][[:space:]]*)
        # replaces the options in force for every later Include
        case " $words " in *[[:space:]]IgnoreTempFiles[[:space:]]*) temp_files=ignored ;;
          *) temp_files="read" ;; esac
        printf '%s\n' "$line"; continue ;;
    esac
    t=$(include_target "$line")
    pattern=-
    case $t in
      "$path") pattern=$name ;;
      "$dir"|"$dir"/) if [ -d "$dir" ] && [ ! -L "$dir" ]; then pattern=; fi ;;
      "$dir"/*[][*?]*)
        case ${t#"$dir"/} in */*) ;; *) if [ ! -L "$dir" ]; then pattern=${t#"$dir"/}; fi ;; esac ;;
    esac
    if [ "$pattern" != - ] && included_name "$name" "$pattern"; then
      expanded "$1" "$pattern" || return 1
      found=yes
    else
      printf '%s\n' "$line"
    fi
  done < "$main" > "$work/proftpd.conf" || return 1
  if [ $found = no ]; then
    echo "no Include in $main reads $path, so the new fragment can't be tried apart from the live file;" \
      "nothing was changed on this host" >&2
    return 1
  fi
}

if [ "$mode" = check ]; then
  mkdir "$work/candidate"
  cand=$work/candidate/$name
  if [ -n "$content" ]; then printf '%s' "$content" > "$cand"; else : > "$cand"; fi
  candidate_main "$cand" || exit 1
  if config_ok -c "$work/proftpd.conf"; then exit 0; fi
  echo "proftpd -t rejects the new passive-port fragment; nothing was changed on this host:" >&2
  # ProFTPd names the candidate's files: name the ones a restart would read instead
  out=$(printf '%s\n' "$out" | sed -e "s|$cand|$path|g" -e "s|$work/proftpd.conf|$main|g")
  proftpd_says
  exit 1
fi

marker=$4

pid_running() { [ -s /run/proftpd.pid ] && kill -0 "$(cat /run/proftpd.pid)" 2>/dev/null; }
# Restart a running ProFTPd (a stopped one reads the file when it starts) and check it
# runs again. Not a SIGHUP reload: with froxlor's ratelimit file (mod_ban) a SIGHUP
# kills ProFTPd 1.3.7a-1.3.8c (signal 11), seen on Debian 11-13; froxlor's own
# templates restart it too. Prints what it did; exit 1 when ProFTPd does not come back.
restart() {
  if [ -d /run/systemd/system ]; then
    if ! systemctl is-active --quiet proftpd; then
      echo "proftpd is not running; the fragment applies when it starts"; return 0
    fi
    systemctl restart proftpd || return 1
    systemctl is-active --quiet proftpd || return 1
    echo "proftpd restarted"
  elif pid_running; then
    if [ -x /etc/init.d/proftpd ]; then
      /etc/init.d/proftpd restart >/dev/null || return 1
    else
      kill -TERM "$(cat /run/proftpd.pid)" || return 1
      i=0; while pid_running && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
      proftpd || return 1
    fi
    sleep 0.2  # it forks and writes its pidfile
    pid_running || return 1
    echo "proftpd restarted"
  else
    echo "proftpd is not running; the fragment applies when it starts"
  fi
}
fail() {  # $1: what went wrong (the previous fragment is back)
  echo "$1" >&2
  exit 1
}

put "$content"
if ! config_ok; then
  restore
  proftpd_says
  fail "proftpd -t rejected the configuration, previous fragment restored"
fi
if ! said=$(restart 2>&1); then
  if [ -n "$said" ]; then printf '%s\n' "$said" >&2; fi
  restore
  if ! restart >/dev/null 2>&1; then
    rm -f "$marker"  # what ProFTPd runs with is unknown now: the next run restarts it
    echo "ProFTPd did not come back on the previous fragment either" >&2
  fi
  fail "ProFTPd did not restart with the new fragment, previous fragment restored"
fi
printf '%s\n' "$said"
mkdir -p "$(dirname "$marker")"
if [ -n "$content" ]; then
  printf '%s' "$content" | sha256sum | cut -d' ' -f1 > "$marker"
else
  rm -f "$marker"
fi
