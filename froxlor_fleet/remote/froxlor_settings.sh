#!/bin/sh
# Runs ON THE MANAGED HOST as the last part of discover's one read (discover/fact.py):
# froxlor's own settings, read-only. $@: the folders froxlor may be installed in, tried
# in order (the fact runs this only when one of them holds lib/userdata.inc.php).
# Prints, one per line, for the fact's "froxlor" section:
#   install DIR                     the folder holding froxlor's lib/userdata.inc.php
#   database NAME                   froxlor's database (its name, never a credential)
#   system<TAB>VARNAME<TAB>VALUE    a panel_settings row of the whitelist below, as
#                                   mysql --batch prints it (\t \n \\ escaped)
#   reason TEXT                     why no settings are read (the last line then)
# Never: the password (userdata.inc.php is matched line by line for two keys, the
# database's name and host; nothing runs it as PHP), froxlor's own commands (its CLI may
# run a database update), a column or row outside the whitelist.
# FROXLOR_FLEET_ROOT: a folder standing in for / (tests, as for state.sh).
PATH=$PATH:/usr/sbin:/sbin:/usr/bin:/bin
root=${FROXLOR_FLEET_ROOT:-}

say() {
  printf 'reason %s\n' "$1"
  exit 0
}

file=
for dir in "$@"; do
  if [ -e "$root$dir/lib/userdata.inc.php" ]; then
    file=$root$dir/lib/userdata.inc.php
    break
  fi
done
[ -n "$file" ] || say "froxlor not installed"
printf 'install %s\n' "$dir"
where=$dir/lib/userdata.inc.php
if [ ! -f "$file" ] || [ ! -r "$file" ]; then
  say "$where is not readable (the read needs root: --sudo)"
fi

# The database's name and host as "NAME HOST": "=" where the key is missing (or empty),
# "!" where its value is anything but a plain name. froxlor 2.x writes
#   $sql = [ 'debug' => false, 'host' => '...', 'user' => '...',
#            'password' => <<<'EOT' (the password's lines) EOT, 'db' => '...', ];
# (then $sql_root = [...] alike); froxlor 0.9/0.10 wrote $sql['db'] = '...'; lines.
# Heredocs and nowdocs (a password) are skipped whole, whatever they hold; a key counts
# only at the top level of $sql. Only the two names are ever printed.
found=$(awk -v q="'" '
function value(line, allowed,   v) {
  v = line
  sub(/^[^=]*=>?[ \t]*/, "", v)
  if (v !~ "^" Q "[^\"" q "]*" Q "[ \t]*[,;]?[ \t]*$") return "!"
  sub("^" Q, "", v)
  sub(Q "[ \t]*[,;]?[ \t]*$", "", v)
  if (v == "") return "="
  return v ~ ("^[" allowed "]+$") && length(v) <= 64 ? v : "!"
}
function take(line, key) {
  if (key == "db" && db == "=") db = value(line, "A-Za-z0-9_-")
  if (key == "host" && host == "=") host = value(line, "A-Za-z0-9_.:-")
}
BEGIN {
  Q = "[\"" q "]"
  db = "="; host = "="; doc = ""; block = 0; depth = 0
  opening = "^[ \t]*\\$sql[ \t]*=[ \t]*(\\[|array[ \t]*\\()[ \t]*$"
  nested = "(\\[|array[ \t]*\\()[ \t]*$"
  closing = "^[ \t]*[])][ \t]*[,;]?[ \t]*$"
  keyed = "^[ \t]*" Q "(db|host)" Q "[ \t]*=>"
  old = "^[ \t]*\\$sql[ \t]*\\[[ \t]*" Q "(db|host)" Q "[ \t]*\\][ \t]*="
  heredoc = "<<<[ \t]*" Q "?[A-Za-z_][A-Za-z0-9_]*" Q "?[ \t]*$"
}
doc != "" {
  t = $0
  sub(/^[ \t]+/, "", t)
  if (substr(t, 1, length(doc)) == doc && substr(t, length(doc) + 1) ~ /^[ \t]*[,;]?[ \t]*$/) doc = ""
  next
}
$0 ~ heredoc {
  doc = $0
  sub(/^.*<<<[ \t]*/, "", doc)
  gsub(Q, "", doc)
  sub(/[ \t]*$/, "", doc)
  next
}
$0 ~ opening { block = 1; depth = 1; next }
block && $0 ~ closing { depth--; if (depth == 0) block = 0; next }
block && $0 ~ nested { depth++; next }
block && depth == 1 && $0 ~ keyed {
  k = $0; sub(/^[ \t]*./, "", k); sub(/.[ \t]*=>.*$/, "", k); take($0, k); next
}
$0 ~ old { k = $0; sub(/^[^[]*\[[ \t]*./, "", k); sub(/.[ \t]*\].*$/, "", k); take($0, k) }
END { print db, host }
' "$file" 2>/dev/null)
case $found in
  *" "*) ;;
  *) say "could not read $where" ;;
esac
db=${found%% *}
host=${found#* }
case $db in
  "=") say "no database name in $where" ;;
  "!") say "the database name in $where is not a plain name: not read" ;;
esac
case $host in
  "="|localhost|127.0.0.1|::1) ;;
  "!") say "the database host in $where is not a plain name: not read" ;;
  *) say "froxlor's database is on $host: not read" ;;
esac

# The local server as root, through MariaDB's unix-socket login (no password anywhere):
# mariadb first (MariaDB 11 warns on stderr when called as mysql), then mysql.
if command -v mariadb >/dev/null 2>&1; then
  client=mariadb
elif command -v mysql >/dev/null 2>&1; then
  client=mysql
else
  say "no mysql client (mariadb, mysql) installed"
fi
if command -v timeout >/dev/null 2>&1; then
  set -- timeout 20 "$client"
else
  set -- "$client"
fi
printf 'database %s\n' "$db"
# The whitelist: what froxlor says about the services a server runs. Nothing else: the
# table also holds secrets (system.mail_smtp_passwd, Let's Encrypt keys).
sql="SELECT settinggroup, varname, value FROM panel_settings WHERE settinggroup = 'system' AND varname IN ('webserver', 'ftpserver', 'bind_enable', 'dns_server', 'mtaserver', 'mdaserver', 'mysql_access_host', 'nameservers', 'axfrservers', 'http3_support') ORDER BY varname"
# Rows straight to stdout; stderr kept to say why it failed (no temporary file).
{ err=$("$@" --batch --skip-column-names --connect-timeout=5 --protocol=socket \
    --database="$db" --execute="$sql" 2>&1 >&3 3>&-); rc=$?; } 3>&1
if [ "$rc" -ne 0 ]; then
  case $err in
    *"Access denied"*) say "mysql: access denied (the read needs root: --sudo)" ;;
    *"Unknown database"*) say "mysql: froxlor's database $db does not exist" ;;
    *"doesn't exist"*) say "mysql: no panel_settings table in $db" ;;
    *"Can't connect"*|*"(2002)"*) say "mysql: cannot connect to the local server (is it running?)" ;;
  esac
  [ "$rc" -ne 124 ] || say "mysql: no answer in 20 s"
  say "mysql failed (exit $rc)"
fi
