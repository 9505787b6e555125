# shellcheck shell=sh
# froxlor-fleet: what the control side (ftpconf/dump.py) needs to know about a
# host's FTP daemons, read in one go as part of the state fact. POSIX sh, no python.
#   sh proftpd_dump.sh [ROOT [CONFDIR]]   ROOT: default / (tests pass a temp tree),
#                                          CONFDIR: ProFTPd's, default /etc/proftpd
# One record a line; paths are as the host sees them (ROOT stripped):
#   @bin NAME /PATH      a daemon binary     @run NAME PID   its pidfile's live pid
#   @conf /PATH          ProFTPd's main file @pure KEY VALUE /etc/pure-ftpd/conf/KEY
#   @root /PATH DEPTH    a tree listed below (DEPTH - : all of it)
#   @f TY /PATH          one entry of it, find's %y%Y (ff file, dd dir, lf/ld/lN link)
#   @missing /PATH       an Include target outside CONFDIR that does not exist
#   @unknown /PATH       an Include target this script does not list
#   PATH:LINE:TEXT       a directive line (grep -n; PATH relative to ROOT)
set -f
cd "${1:-${FROXLOR_FLEET_ROOT:-/}}" 2>/dev/null || exit 0
conf=${2:-/etc/proftpd}
conf=${conf#/}

for n in proftpd pure-ftpd pure-ftpd-mysql pure-ftpd-postgresql pure-ftpd-ldap pure-ftpd-wrapper; do
  for d in usr/local/sbin usr/sbin sbin usr/bin bin; do
    if [ -x "$d/$n" ]; then echo "@bin $n /$d/$n"; break; fi
  done
done
for p in run/proftpd.pid:proftpd run/pure-ftpd/pure-ftpd.pid:pureftpd; do
  pid=
  if [ -r "${p%:*}" ]; then read -r pid < "${p%:*}" || :; fi
  case $pid in
    ''|*[!0-9]*) ;;
    *) if kill -0 "$pid" 2>/dev/null; then echo "@run ${p#*:} $pid"; fi ;;
  esac
done
for k in PassivePortRange ForcePassiveIP; do
  if [ -r "etc/pure-ftpd/conf/$k" ]; then
    v=; read -r v < "etc/pure-ftpd/conf/$k" || :; echo "@pure $k $v"
  fi
done

# Directive lines ProFTPd's PassivePorts/MasqueradeAddress scoping depends on.
# Anchored at line start: '#' comments never match (ProFTPd has no trailing comments).
pat='^[[:space:]]*(</?(Global|VirtualHost|IfModule|IfDefine|IfClass|IfUser|IfGroup|IfAuthenticated|Anonymous|Directory|Limit)([[:space:]>]|$)|(Include|IncludeOptions|PassivePorts|MasqueradeAddress|TLSMasqueradeAddress)([[:space:]]|$))'
# The absolute path argument of an Include line in grep's output (GNU sed, I: any case).
inc='s/^.*:[0-9]*:[[:space:]]*include[[:space:]]\{1,\}"\{0,1\}\/\([^"[:space:]]*\).*$/\1/Ip'
echo "@conf /$conf/proftpd.conf"
todo=$conf; seen=
while [ -n "$todo" ]; do
  # shellcheck disable=SC2086  # split on spaces; set -f: no globbing
  set -- $todo; todo=
  for t in "$@"; do
    t=${t%/}
    case " $seen " in *" $t "*) continue ;; esac
    seen="$seen $t"
    if [ "$t" = "$conf" ]; then
      dir=$t; depth=-     # all of CONFDIR: includes anywhere below it resolve here
    else
      case $t in "$conf"/*) case $t in *..*) ;; *) continue ;; esac ;; esac
      # List from the directory above the first glob component, as deep as the
      # pattern reaches; a plain directory one level (ProFTPd does not recurse).
      dir=${t%%[][*?]*}; depth=1
      if [ "$dir" != "$t" ]; then
        case $dir in */*) dir=${dir%/*} ;; *) dir= ;; esac
        r=${t#"$dir"/}
        while [ "${r#*/}" != "$r" ]; do r=${r#*/}; depth=$((depth + 1)); done
      fi
      if [ -z "$dir" ]; then echo "@unknown /$t"; continue; fi
      if [ ! -e "$dir" ] && [ ! -L "$dir" ]; then echo "@missing /$dir"; continue; fi
    fi
    md=; [ "$depth" = - ] || md="-maxdepth $depth"
    echo "@root /$dir $depth"
    # shellcheck disable=SC2086  # $md: two words or none
    out=$(find "$dir" $md -printf '@f %y%Y /%p\n' \( -type f -o -xtype f \) \
      -exec grep -n -i -H -I -E "$pat" {} + 2>/dev/null)
    [ -z "$out" ] || printf '%s\n' "$out"
    todo="$todo $(printf '%s\n' "$out" | sed -n "$inc")"
  done
done
