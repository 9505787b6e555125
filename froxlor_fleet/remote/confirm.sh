#!/bin/sh
# shellcheck shell=sh
# froxlor-fleet commit-confirmed UFW changes, ON THE MANAGED HOST. POSIX sh.
# The control side (froxlor_fleet/confirm.py) runs it as
#   sh -c '<this script>' froxlor-fleet SUBCOMMAND ARGS...
#
#   arm TIMEOUT TOKEN [COMMAND ARGS...]
#       Inside the guarded UFW step, before the change. Snapshots UFW's four files
#       (cp -p) and whether UFW is active into /var/lib/froxlor-fleet/pending/TOKEN/,
#       starts a detached revert timer (setsid -f), runs COMMAND (the UFW change), and
#       returns. TIMEOUT seconds after COMMAND ends, unless TOKEN was confirmed, the
#       timer restores the files, makes UFW's live state match (was active: ufw reload,
#       which re-runs ufw-init from the restored files; was inactive: ufw --force
#       disable), logs it (logger -t froxlor-fleet, /var/lib/froxlor-fleet/revert.log)
#       and exits.
#       COMMAND failing: the snapshot is restored at once (when anything changed) and
#       arm exits with COMMAND's status. TIMEOUT 0: no snapshot, no timer; only waits for
#       pending reverts of other runs, then runs COMMAND.
#   confirm TOKEN    Over a new SSH connection, not under the host lock. Cancels the
#                    revert: prints "confirmed", exit 0. The revert has started or
#                    happened: one line, exit 2. Unknown token: exit 3.
#   status           Lists pending reverts (token, state, deadline).
#   boot             Optional boot hook (not installed by the deploy): finishes reverts a
#                    reboot interrupted, reverts unconfirmed changes whose deadline has
#                    passed, re-arms the others for the time they have left.
#
# The host lock. The guarded step holds /run/froxlor-fleet.lock through fd 9. When arm
# is started with that fd open (same open file description), the timer keeps it: no
# other froxlor-fleet step can run on this host until the change is confirmed or
# reverted (a waiting run then plans again from the result). When fd 9 is not passed
# to arm, the timer holds no lock; then every arm (all UFW changes go through it) first
# waits for pending reverts of other runs, so a UFW change still never interleaves with
# one. `status` shows which of the two a pending revert has (lock=held or lock=none).
# (steps.STEP_SCRIPT, as this is written, runs the step's command with `9>&-`: there the
# second mode applies.) Either way the timer never keeps fd 7, the relay's "running"
# lock, so the guarded step returns as soon as the change is made.
#
# The race between confirm and the timer. pending/TOKEN is claimed by rename(2), which
# is atomic: confirm renames it to TOKEN.confirming, the timer (at the deadline) to
# TOKEN.reverting. Exactly one rename succeeds; the loser finds the source gone. The
# timer restores only after its own rename succeeded and then ignores TERM; confirm kills
# the timer's process group only after its own rename succeeded, so it can only kill a
# timer that has not claimed (and checks pid, start time and boot id first). The revert
# logs its line before it removes TOKEN.reverting, so a late confirm sees one of the two.
# A failing COMMAND: arm claims TOKEN.reverting itself while the timer still waits for
# the change to end (it cannot claim before), then stops the timer and restores.
# A revert cut short (crash, reboot) leaves TOKEN.reverting: `boot` or the next arm
# finishes it.
#
# The timer is its own session (setsid -f): an SSH disconnect or a dead control side
# can't stop it. It would not survive a logind that kills a session's processes at
# logout (KillUserProcesses=yes; Debian's default is no, and root is excluded).
#
# Reboot before the deadline: the timer dies; pending/TOKEN survives in /var/lib; ufw's
# boot service loads the NEW rules; nothing reverts unless `boot` runs at startup
# (after ufw). Without it, the next arm finds a pending revert whose timer is gone,
# records it as abandoned in revert.log (that run reached the host, so the current
# firewall is kept) and moves it to /var/lib/froxlor-fleet/abandoned/.
#
# Testing: FROXLOR_FLEET_ROOT prefixes every path (default /), FROXLOR_FLEET_LOCK the
# lock's path, FROXLOR_FLEET_UFW / FROXLOR_FLEET_IPTABLES the commands (ufw, iptables).
set -u
LC_ALL=C
export LC_ALL
PATH=$PATH:/usr/sbin:/sbin:/usr/bin:/bin
umask 077

root=${FROXLOR_FLEET_ROOT:-/}
root=${root%/}
state_dir=$root/var/lib/froxlor-fleet
pending=$state_dir/pending
revert_log=$state_dir/revert.log
lock_path=${FROXLOR_FLEET_LOCK:-$root/run/froxlor-fleet.lock}
ufw_cmd=${FROXLOR_FLEET_UFW:-ufw}
iptables_cmd=${FROXLOR_FLEET_IPTABLES:-iptables}
# UFW's state: name in the snapshot, path below the root.
FILES="user.rules:etc/ufw/user.rules user6.rules:etc/ufw/user6.rules"
FILES="$FILES ufw.conf:etc/ufw/ufw.conf default-ufw:etc/default/ufw"

say() { printf 'froxlor-fleet: %s\n' "$*"; }
die() { die_code=$1; shift; say "$*"; exit "$die_code"; }
now() { date +%s; }
clock() { date -d "@$1" '+%Y-%m-%d %H:%M:%S %Z' 2>/dev/null || printf 'epoch %s\n' "$1"; }
boot_id() { cat /proc/sys/kernel/random/boot_id 2>/dev/null || echo unknown; }

valid_token() {
  case $1 in ''|*[!A-Za-z0-9-]*) return 1 ;; esac
  [ "${#1}" -ge 8 ] && [ "${#1}" -le 64 ]
}

valid_timeout() {
  case $1 in ''|*[!0-9]*|0?*) return 1 ;; esac
  [ "${#1}" -le 6 ] && [ "$1" -le 86400 ]
}

# A live process's start time (field 22 of /proc/PID/stat); fails for a dead or zombie one.
proc_start() {
  ps_stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  ps_stat=${ps_stat##*) }
  # shellcheck disable=SC2086 # split the fields on purpose
  set -- $ps_stat
  [ $# -ge 20 ] || return 1
  case $1 in Z|X|x) return 1 ;; esac
  shift 19
  printf '%s\n' "$1"
}

# The timer recorded in DIR/timer is still this boot's, alive, and the same process.
timer_alive() {
  [ -f "$1/timer" ] || return 1
  ta_pid='' ta_start='' ta_boot=''
  read -r ta_pid ta_start ta_boot < "$1/timer" || return 1
  [ -n "$ta_pid" ] && [ "$ta_boot" = "$(boot_id)" ] || return 1
  [ "$(proc_start "$ta_pid")" = "$ta_start" ]
}

# Whether process group PGID has a live (not zombie) member. Builtins only.
group_alive() {
  ga_pgid=$1
  for ga_stat in /proc/[0-9]*/stat; do
    ga_line=
    { read -r ga_line < "$ga_stat"; } 2>/dev/null || continue
    ga_line=${ga_line##*) }
    # shellcheck disable=SC2086 # split the fields on purpose
    set -- $ga_line
    if [ $# -ge 3 ] && [ "$3" = "$ga_pgid" ]; then
      case $1 in Z|X|x) ;; *) return 0 ;; esac
    fi
  done
  return 1
}

# Stop DIR's timer (its process group: the timer and its sleep). Only after a claim.
# Only the timer's shell holds the host lock (fd 9): it is released once that is gone.
kill_timer() {
  timer_alive "$1" || return 0
  read -r kt_pid kt_start _ < "$1/timer" || return 0
  kill -s TERM -- "-$kt_pid" 2>/dev/null || kill -s TERM "$kt_pid" 2>/dev/null
  kt_n=0
  while [ "$(proc_start "$kt_pid")" = "$kt_start" ]; do
    kt_n=$((kt_n + 1))
    if [ "$kt_n" -eq 50 ]; then kill -s KILL -- "-$kt_pid" 2>/dev/null; fi
    if [ "$kt_n" -gt 100 ]; then say "the revert timer (pid $kt_pid) does not exit"; return 1; fi
    sleep 0.1
  done
  kt_n=0  # and its sleep, which got the same TERM (no stray process; at most 2 s)
  while group_alive "$kt_pid" && [ "$kt_n" -lt 20 ]; do
    kt_n=$((kt_n + 1))
    sleep 0.1
  done
  return 0
}

ufw_enabled() {
  grep -Eiq '^[[:space:]]*ENABLED[[:space:]]*=[[:space:]]*["'\'']?yes' "$root/etc/ufw/ufw.conf" 2>/dev/null
}

ufw_loaded() {
  "$iptables_cmd" -w -n -L ufw-user-input >/dev/null 2>&1
}

# yes: ENABLED=yes and ufw's chains loaded (what the deploy calls active), else no.
ufw_active() {
  if ufw_enabled && ufw_loaded; then echo yes; else echo no; fi
}

snapshot() {
  mkdir "$1/files" || return 1
  for sn_pair in $FILES; do
    sn_name=${sn_pair%%:*}
    sn_path=$root/${sn_pair#*:}
    if [ -e "$sn_path" ]; then
      cp -p "$sn_path" "$1/files/$sn_name" || return 1
    else
      : > "$1/files/$sn_name.absent" || return 1
    fi
  done
  ufw_active > "$1/active" || return 1
  if ufw_enabled; then sn_e=yes; else sn_e=no; fi
  if ufw_loaded; then sn_l=yes; else sn_l=no; fi
  printf 'ENABLED=%s chains-loaded=%s\n' "$sn_e" "$sn_l" > "$1/was"
}

# Put the snapshot's files back byte for byte (atomically, one rename each).
restore_files() {
  rf_status=0
  for rf_pair in $FILES; do
    rf_name=${rf_pair%%:*}
    rf_path=$root/${rf_pair#*:}
    if [ -f "$1/files/$rf_name" ]; then
      if ! { cp -p "$1/files/$rf_name" "$rf_path.froxlor-fleet-restore" &&
             mv -f "$rf_path.froxlor-fleet-restore" "$rf_path"; }; then
        rf_status=1
      fi
    elif [ -f "$1/files/$rf_name.absent" ]; then
      rm -f "$rf_path" || rf_status=1
    fi
  done
  return "$rf_status"
}

# Whether UFW's files or active state differ from the snapshot in DIR.
changed_since() {
  for cs_pair in $FILES; do
    cs_name=${cs_pair%%:*}
    cs_path=$root/${cs_pair#*:}
    if [ -f "$1/files/$cs_name" ]; then
      cmp -s "$1/files/$cs_name" "$cs_path" || return 0
    elif [ -e "$cs_path" ]; then
      return 0
    fi
  done
  [ "$(ufw_active)" != "$(cat "$1/active" 2>/dev/null)" ]
}

log_line() {
  mkdir -p "$state_dir" 2>/dev/null
  printf '%s %s\n' "$(date '+%Y-%m-%dT%H:%M:%S%z')" "$1" >> "$revert_log"
  if command -v logger >/dev/null 2>&1; then
    logger -t froxlor-fleet -- "$1" 2>/dev/null || :
  fi
}

# Restore the snapshot in (claimed) DIR and make UFW's live state match it; log it.
revert() {
  rv_dir=$1 rv_why=$2 rv_token=$3
  rv_ok=ok
  restore_files "$rv_dir" || rv_ok="FAILED to restore some files"
  if [ "$(cat "$rv_dir/active" 2>/dev/null)" = yes ]; then
    rv_action="ufw reload"
    rv_out=$("$ufw_cmd" reload 2>&1)
  else
    rv_action="ufw --force disable"
    rv_out=$("$ufw_cmd" --force disable 2>&1)
  fi
  rv_rc=$?
  # ufw disable rewrites ENABLED in ufw.conf: put the snapshot's bytes back again.
  restore_files "$rv_dir" || rv_ok="FAILED to restore some files"
  rv_last=$(printf '%s\n' "$rv_out" | sed '/^[[:space:]]*$/d' | tail -n 1)
  if [ "$rv_rc" -eq 0 ]; then rv_res="ok"; else rv_res="FAILED (exit $rv_rc)"; fi
  rv_when=$(clock "$(cat "$rv_dir/created" 2>/dev/null || echo 0)")
  rv_was=$(cat "$rv_dir/was" 2>/dev/null)
  log_line "token=$rv_token reverted ($rv_why): files $rv_ok (user.rules, user6.rules, ufw.conf, /etc/default/ufw as of $rv_when); UFW was $rv_was: $rv_action $rv_res${rv_last:+: $rv_last}"
  [ "$rv_ok" = ok ] && [ "$rv_rc" -eq 0 ]
}

# Write the text of this script to FILE: the timer runs it from there.
save_script() {
  if [ "$(tr '\000' '\n' < "/proc/$$/cmdline" | sed -n 2p)" = "-c" ]; then
    tr '\n\000' '\001\n' < "/proc/$$/cmdline" | sed -n 3p | tr '\001' '\n' > "$1"
  elif [ -f "$0" ]; then
    cp "$0" "$1"
  else
    return 1
  fi
  [ -s "$1" ]
}

# Whether fd 9 is the host lock and this process holds it (an inherited, locked fd).
holds_host_lock() {
  [ -e "/proc/$$/fd/9" ] || return 1
  hl_fd=$(readlink "/proc/$$/fd/9" 2>/dev/null) || return 1
  hl_lock=$(readlink -f "$lock_path" 2>/dev/null) || return 1
  [ "$hl_fd" = "$hl_lock" ] && flock -n 9 2>/dev/null
}

# Start DIR's timer detached (new session, stdio on /dev/null, fds 3-8 closed: above
# all fd 7, the relay's; fd 9, the host lock, kept if open) and wait until it has
# recorded itself in DIR/timer. (POSIX sh can't name fds above 9; sshd and sudo pass
# none to the step.)
start_timer() {
  rm -f "$1/timer"
  setsid -f sh "$1/confirm.sh" _timer "$2" </dev/null >/dev/null 2>&1 \
    3>&- 4>&- 5>&- 6>&- 7>&- 8>&-
  stt_n=0
  while [ ! -s "$1/timer" ]; do
    stt_n=$((stt_n + 1))
    [ "$stt_n" -le 100 ] || return 1
    sleep 0.05
  done
}

# Settle one entry of pending/ left by another run: wait while its timer lives (up to
# its deadline + 60 s), else finish it (interrupted revert), drop it (interrupted
# confirm) or record it as abandoned (armed, timer gone: reboot or killed).
settle() {
  se_name=${1##*/}
  se_token=${se_name%%.*}
  se_said=
  while [ -e "$1" ]; do
    if ! timer_alive "$1"; then
      case $se_name in
        *.reverting)
          revert "$1" "finishing a revert that was interrupted" "$se_token"
          rm -rf "$1" ;;
        *.confirming) rm -rf "$1" ;;
        *)
          if ! { mkdir -p "$state_dir/abandoned" && rm -rf "$state_dir/abandoned/$se_token" &&
                 mv "$1" "$state_dir/abandoned/$se_token"; }; then
            rm -rf "$1"
          fi
          log_line "token=$se_token abandoned: its revert timer is gone (host restarted or timer killed) before it was confirmed; a later run reached the host, the current firewall stays"
          ;;
      esac
      continue
    fi
    se_deadline=$(cat "$1/deadline" 2>/dev/null) || se_deadline=$(now)
    if [ "$(now)" -gt "$((se_deadline + 60))" ]; then
      say "the pending revert $se_token has not finished 60 s after its deadline; UFW was not changed"
      return 1
    fi
    if [ -z "$se_said" ]; then
      say "waiting for the pending revert $se_token of another run (deadline $(clock "$se_deadline"))"
      se_said=1
    fi
    sleep 1
  done
}

wait_for_pending() {
  for wp_entry in "$pending"/.new-*; do
    [ -e "$wp_entry" ] && rm -rf "$wp_entry"
  done
  for wp_entry in "$pending"/*; do
    [ -e "$wp_entry" ] || continue
    settle "$wp_entry" || return 1
  done
}

token_used() {
  for tu_entry in "$pending/$1" "$pending/$1".*; do
    [ -e "$tu_entry" ] && return 0
  done
  grep -qF " token=$1 " "$revert_log" 2>/dev/null
}

cmd_arm() {
  [ $# -ge 2 ] || die 64 "usage: arm TIMEOUT TOKEN [COMMAND ARGS...]"
  timeout=$1 token=$2
  shift 2
  valid_timeout "$timeout" || die 64 "invalid timeout (whole seconds, 0-86400)"
  valid_token "$token" || die 64 "invalid token (8-64 characters A-Z a-z 0-9 -)"
  mkdir -p "$pending" || die 1 "cannot create $pending; UFW was not changed"
  wait_for_pending || exit 75
  if [ "$timeout" -eq 0 ]; then
    [ $# -eq 0 ] && exit 0
    exec "$@" 9>&-
  fi
  ! token_used "$token" || die 64 "token $token was used before on this host"

  new=$pending/.new-$token
  mkdir "$new" || die 1 "cannot create $new; UFW was not changed"
  if ! snapshot "$new" || ! save_script "$new/confirm.sh" ||
     ! printf '%s\n' "$timeout" > "$new/timeout" || ! now > "$new/created" ||
     ! : > "$new/applying"; then
    rm -rf "$new"
    die 1 "could not snapshot UFW's state into $new; UFW was not changed"
  fi
  if holds_host_lock; then
    echo held > "$new/lock"
  else
    echo none > "$new/lock"
    exec 9>&-  # whatever fd 9 is, the timer must not keep it
  fi
  cp "$new/confirm.sh" "$state_dir/.confirm.sh.new" 2>/dev/null &&
    mv -f "$state_dir/.confirm.sh.new" "$state_dir/confirm.sh"  # for a boot hook
  dir=$pending/$token
  mv "$new" "$dir" || { rm -rf "$new"; die 1 "cannot create $dir; UFW was not changed"; }

  # The timer starts its countdown when this lock is released: after COMMAND.
  exec 8>"$dir/applying"
  flock 8
  if ! start_timer "$dir" "$token"; then
    rm -rf "$dir"
    die 1 "could not start the revert timer; UFW was not changed"
  fi

  rc=0
  if [ $# -gt 0 ]; then
    "$@" 8>&- 9>&-
    rc=$?
  fi
  if [ "$rc" -eq 0 ]; then
    if [ ! -d "$dir" ]; then  # confirm came while the change ran
      say "the change is done and token $token is already confirmed"
      exit 0
    fi
    deadline=$(($(now) + timeout))
    echo "$deadline" > "$dir/deadline"
    exec 8>&-
    say "armed: unless confirmed by $(clock "$deadline") (${timeout} s)," \
      "this host restores its previous UFW state (token $token)"
    exit 0
  fi

  # COMMAND failed: nobody will confirm it. Put the snapshot back now.
  if mv "$dir" "$dir.reverting" 2>/dev/null; then
    kill_timer "$dir.reverting"
    if changed_since "$dir.reverting"; then
      if revert "$dir.reverting" "the change failed with exit status $rc" "$token"; then
        say "the change failed; UFW's previous state is restored"
      else
        say "the change failed and restoring UFW's previous state failed too: see $revert_log"
      fi
    else
      log_line "token=$token not reverted: the change failed with exit status $rc before it changed anything"
    fi
    rm -rf "$dir.reverting"
  else
    say "the change failed, but token $token was confirmed meanwhile; not restoring"
  fi
  exit "$rc"
}

cmd_timer() {
  token=$1
  dir=$pending/$token
  trap '' HUP INT
  printf '%s %s %s\n' "$$" "$(proc_start $$)" "$(boot_id)" > "$dir/timer.new" &&
    mv -f "$dir/timer.new" "$dir/timer" || exit 1
  flock "$dir/applying" true 2>/dev/null 9>&-  # wait for the change to end
  [ -d "$dir" ] || exit 0
  timeout=$(cat "$dir/timeout" 2>/dev/null) || timeout=60
  deadline=$(cat "$dir/deadline" 2>/dev/null) || deadline=
  if [ -z "$deadline" ]; then  # the arm died without writing it: count from now
    deadline=$(($(now) + timeout))
    echo "$deadline" > "$dir/deadline" || exit 0
  fi
  left=$((deadline - $(now)))
  if [ "$left" -gt 0 ]; then sleep "$left" 9>&-; fi
  mv "$dir" "$dir.reverting" 2>/dev/null || exit 0  # confirmed: confirm won the claim
  trap '' TERM
  revert "$dir.reverting" "not confirmed within $timeout s" "$token"
  rm -rf "$dir.reverting"
  exit 0
}

cmd_confirm() {
  [ $# -eq 1 ] || die 64 "usage: confirm TOKEN"
  token=$1
  valid_token "$token" || die 64 "invalid token (8-64 characters A-Z a-z 0-9 -)"
  dir=$pending/$token
  if mv "$dir" "$dir.confirming" 2>/dev/null || [ -d "$dir.confirming" ]; then
    kill_timer "$dir.confirming" || exit 1
    rm -rf "$dir.confirming"
    echo confirmed
    exit 0
  fi
  if [ -d "$dir.reverting" ]; then
    die 2 "too late: the revert of $token has started; this host is restoring its previous UFW state"
  fi
  cf_line=$(grep -F " token=$token " "$revert_log" 2>/dev/null | tail -n 1)
  if [ -n "$cf_line" ]; then
    die 2 "too late: $cf_line"
  fi
  die 3 "no pending revert with token $token on this host"
}

cmd_status() {
  st_found=0
  for st_entry in "$pending"/*; do
    [ -d "$st_entry" ] || continue
    st_found=1
    st_name=${st_entry##*/}
    case $st_name in
      *.reverting) st_state=reverting ;;
      *.confirming) st_state=confirming ;;
      *) st_state=armed ;;
    esac
    if st_deadline=$(cat "$st_entry/deadline" 2>/dev/null); then
      st_when="deadline=$st_deadline ($(clock "$st_deadline"))"
    else
      st_when="deadline=- (change still running)"
    fi
    if timer_alive "$st_entry"; then st_timer=alive; else st_timer=gone; fi
    printf '%s %s %s timer=%s lock=%s\n' "${st_name%%.*}" "$st_state" "$st_when" \
      "$st_timer" "$(cat "$st_entry/lock" 2>/dev/null || echo none)"
  done
  [ "$st_found" -eq 1 ] || echo "no pending reverts"
}

cmd_boot() {
  [ -d "$pending" ] || exit 0
  mkdir -p "${lock_path%/*}" 2>/dev/null
  : >> "$lock_path" 2>/dev/null || die 75 "cannot open $lock_path"
  exec 9>>"$lock_path"
  flock -w 300 9 || die 75 "could not take $lock_path within 300 s"
  for bt_entry in "$pending"/.new-*; do
    [ -e "$bt_entry" ] && rm -rf "$bt_entry"
  done
  for bt_entry in "$pending"/*; do
    [ -d "$bt_entry" ] || continue
    timer_alive "$bt_entry" && continue
    bt_name=${bt_entry##*/}
    bt_token=${bt_name%%.*}
    case $bt_name in
      *.reverting)
        revert "$bt_entry" "finishing a revert the restart interrupted" "$bt_token"
        rm -rf "$bt_entry" ;;
      *.confirming) rm -rf "$bt_entry" ;;
      *)
        bt_deadline=$(cat "$bt_entry/deadline" 2>/dev/null) || bt_deadline=0
        if [ "$bt_deadline" -le "$(now)" ]; then
          if mv "$bt_entry" "$bt_entry.reverting" 2>/dev/null; then
            revert "$bt_entry.reverting" "not confirmed before the host restarted" "$bt_token"
            rm -rf "$bt_entry.reverting"
          fi
        else
          echo held > "$bt_entry/lock"
          if start_timer "$bt_entry" "$bt_token"; then  # it keeps fd 9: the host lock
            say "re-armed the revert $bt_token for $(clock "$bt_deadline")"
          else
            say "could not re-arm the revert $bt_token; it stays pending"
          fi
        fi ;;
    esac
  done
}

[ $# -ge 1 ] || die 64 "usage: arm TIMEOUT TOKEN [COMMAND...] | confirm TOKEN | status | boot"
sub=$1
shift
case $sub in
  arm) cmd_arm "$@" ;;
  confirm) cmd_confirm "$@" ;;
  status) cmd_status ;;
  boot) cmd_boot ;;
  _timer) valid_token "${1:-}" || exit 64; cmd_timer "$1" ;;
  *) die 64 "unknown subcommand $sub (arm, confirm, status, boot)" ;;
esac
