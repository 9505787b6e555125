#!/bin/sh
# Runs ON THE MANAGED HOST as the deploy's state fact: one remote command prints, in
# sections, everything the deploy needs (UFW files, whether its chains are loaded, the
# SSH session pyinfra uses, the host's own addresses, the passive-port fragment and
# whether ProFTPd loaded it; the FTP daemons' configuration follows from proftpd_dump.sh).
# $1: the fragment's path, $2: the loaded-fragment marker, $3: pure-ftpd's loaded-range
# marker, $4: the host program's folder (hostprogram.py). Read-only: it changes nothing.
PATH=$PATH:/usr/sbin:/sbin
frag=${1:-}
loaded=${2:-}
pureloaded=${3:-}
progdir=${4:-}

section() { printf ':::froxlor-fleet:%s\n' "$1"; }

# File $1's lines, each ended by a newline, the last one too when the file lacks it (a
# hand-edited file may): the next section's marker always starts a line of its own.
# Read by the shell itself, not cat/tail/wc (a no-op run pays for every process it
# starts; these files are a few lines).
show() {
  if [ ! -r "$1" ]; then return 0; fi
  while IFS= read -r line; do printf '%s\n' "$line"; done < "$1"
  if [ -n "$line" ]; then printf '%s\n' "$line"; fi
}

# The SSH session this command arrived through, into $session. sudo and su reset the
# environment, so when $SSH_CONNECTION is gone, look for it in the environment of the
# processes we descend from (sudo, the login shell, sshd's session): readable by root.
ssh_session() {
  session=${SSH_CONNECTION:-}
  if [ -n "$session" ]; then return; fi
  pid=$$
  while [ -n "$pid" ] && [ "$pid" -gt 1 ]; do
    session=$(tr '\0' '\n' < "/proc/$pid/environ" 2>/dev/null | sed -n 's/^SSH_CONNECTION=//p')
    if [ -n "$session" ]; then return; fi
    pid=$(sed -n 's/^PPid:[[:space:]]*//p' "/proc/$pid/status" 2>/dev/null)
  done
}

ssh_session
section ssh; printf '%s\n' "$session"
# The host's addresses, read once (one process) for the two sections below. Lines read
# "2: eth0    inet 10.0.0.5/24 brd 10.0.0.255 scope global eth0\ ..."; here-documents,
# not pipes, feed them to the loops: no process more.
addrs=$(ip -o addr show 2>/dev/null)
# The interface that holds the address the session connected to: UFW rules that name
# an interface can only match the session if it is this one.
section sshif
read -r _ _ server _ <<EOF
$session
EOF
server=${server#::ffff:}
if [ -n "$server" ]; then
  while read -r _ dev _ addr _; do
    if [ "${addr%/*}" = "$server" ]; then printf '%s\n' "$dev"; fi
  done <<EOF
$addrs
EOF
fi
# The host's own global IPv4 and IPv6 addresses (not loopback's or link-local ones:
# scope host / link), in ip's order, each followed by those of its flags that say
# whether the host holds it and whether customers reach it: "fd00::5 deprecated", plain
# "10.0.0.5" when none. What each flag excludes is decided in one place, facts.py
# (NOT_HELD, UNREACHABLE: the flags listed here): a source naming a group this host is
# in ("@web_servers") stands for all the addresses it holds, the audit's --probe tries
# those customers reach. ip ends each flag with a space (an IPv4 label is glued to the
# "\" after it, so a label is never taken for a flag).
section addrs
while read -r _ _ family addr rest; do
  case $family in inet | inet6) ;; *) continue ;; esac
  case " $rest " in *" scope global "*) ;; *) continue ;; esac
  flags=
  for flag in tentative dadfailed deprecated temporary; do
    case " $rest " in *" $flag "*) flags="$flags $flag" ;; esac
  done
  printf '%s%s\n' "${addr%/*}" "$flags"
done <<EOF
$addrs
EOF
section ufw; command -v ufw || true
section conf; show /etc/ufw/ufw.conf
section default; show /etc/default/ufw
section rules4; grep -h '^### tuple ###' /etc/ufw/user.rules 2>/dev/null || true
section rules6; grep -h '^### tuple ###' /etc/ufw/user6.rules 2>/dev/null || true
section running
if iptables -w -n -L ufw-user-input >/dev/null 2>&1; then echo yes; else echo no; fi
# Other tenants of the firewall that change what the deploy may do: iptables-persistent
# (ufw's package Breaks it: installing ufw would remove it), an enabled nftables
# service whose config flushes the ruleset (at boot it wipes UFW's rules), fail2ban's
# chains that ufw flushes, Docker (what each means: tenants.py).
# (FROXLOR_FLEET_ROOT: a folder standing in for / in tests, as for proftpd_dump.sh.)
section tenants
# (files, not dpkg-query or systemctl: a no-op run pays for every process it starts)
# dpkg keeps a package's file list while it is installed, and drops it on removal.
root=${FROXLOR_FLEET_ROOT:-}
for pkg in iptables-persistent netfilter-persistent; do
  if [ -e "$root/var/lib/dpkg/info/$pkg.list" ]; then echo "persistent $pkg"; fi
done
# Enabled = systemctl enable's link in a target's .wants/ or .requires/ folder.
if [ -f "$root/etc/nftables.conf" ] \
    && grep -qs '^[[:space:]]*flush[[:space:]][[:space:]]*ruleset' "$root/etc/nftables.conf"; then
  for unit in "$root"/etc/systemd/system/*.wants/nftables.service \
              "$root"/etc/systemd/system/*.requires/nftables.service; do
    if [ -L "$unit" ] || [ -e "$unit" ]; then echo nftables-flush; break; fi
  done
fi
# MANAGE_BUILTINS=yes: ufw flushes the built-in chains on every reload, enable and
# disable, fail2ban's f2b-* jumps with them (listed only then: Debian's default is no).
if grep -qs '^MANAGE_BUILTINS=yes' "$root/etc/default/ufw" \
    && { iptables -w -S; ip6tables -w -S; } 2>/dev/null | grep -q '^-N f2b-'; then
  echo f2b-flushed
fi
# Docker publishes container ports through its own chains, past UFW's. (Debian's
# docker.io has /usr/sbin/dockerd, Docker's own docker-ce /usr/bin/dockerd.)
for dockerd in "$root/usr/sbin/dockerd" "$root/usr/bin/dockerd" "$root/sys/class/net/docker0"; do
  if [ -e "$dockerd" ]; then echo docker; break; fi
done
section pureloaded
if [ -n "$pureloaded" ]; then show "$pureloaded"; fi
section loaded
if [ -n "$loaded" ]; then show "$loaded"; fi
# Its first line: the sha256 of its exact bytes, then "no-final-newline" when the
# newline that ends the text shown is not in the file.
section fragment
if [ -n "$frag" ] && [ -f "$frag" ]; then
  read -r sum _ <<EOF
$(sha256sum < "$frag")
EOF
  line=
  while IFS= read -r line; do :; done < "$frag"  # $line: a last line without newline
  if [ -n "$line" ]; then sum="$sum no-final-newline"; fi
  printf '%s\n' "$sum"
  show "$frag"
fi
# The host program this version places: each file's sha256, and "unsafe" when anyone
# but root could write it or a folder above it (then it is placed again).
section program
if [ -n "$progdir" ] && [ -d "$progdir" ]; then
  if [ -n "$(find "${progdir%/*/*}" "${progdir%/*}" "$progdir" "$progdir"/* -maxdepth 0 \
             \( ! -user 0 -o -perm /022 \) -print 2>/dev/null)" ]; then
    echo unsafe
  fi
  (cd "$progdir" && sha256sum -- *.py 2>/dev/null) || true
fi
