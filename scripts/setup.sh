# shellcheck shell=bash
# Sourced by demo.sh, test.sh and .ci/run: system packages and the project's virtualenv.
# Works on a fresh Debian/Ubuntu machine as root; idempotent and quiet when done.
set -eu
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${VENV:-$ROOT/.venv}
# (shellcheck is for the lint stage of .ci/run.)
APT_PACKAGES="python3 python3-venv iproute2 openssh-server openssh-client ufw proftpd-basic iptables util-linux procps sudo shellcheck"

need_apt=()
for p in $APT_PACKAGES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need_apt+=("$p")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || { echo "setup: need root to install:$(printf ' %s' "${need_apt[@]}")" >&2; exit 1; }
  echo "setup: apt-get install$(printf ' %s' "${need_apt[@]}")"
  # policy-rc.d: packages must not start sshd/proftpd on this machine itself.
  made_policy=no
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; made_policy=yes
  fi
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  [ $made_policy = yes ] && rm -f /usr/sbin/policy-rc.d
fi

stamp="$VENV/.installed-$(cat "$ROOT/requirements.txt" "$ROOT/requirements-dev.txt" "$ROOT/pyproject.toml" \
  "$ROOT/scripts/setup.sh" | sha256sum | cut -c1-16)"
if [ ! -e "$stamp" ]; then
  echo "setup: virtualenv $VENV"
  python3 -m venv "$VENV"
  pip_install() {  # this machine's pip config names local mirrors that may be absent: hush that
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$@" 2>&1 \
      | { grep -v "^WARNING: Location 'file:" || true; }
    return "${PIPESTATUS[0]}"
  }
  pip_install -r "$ROOT/requirements.txt" -r "$ROOT/requirements-dev.txt"
  pip_install --no-deps -e "$ROOT"  # editable: the venv always runs this work tree
  rm -f "$VENV"/.installed-*; touch "$stamp"
fi
# shellcheck disable=SC2034  # PY is for the scripts that source this file
PY="$VENV/bin/python"
export PATH="$VENV/bin:$PATH"
