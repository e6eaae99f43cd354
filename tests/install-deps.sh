#!/usr/bin/env bash
# Installs what the test suite needs on Debian 12, when it is missing. Safe to run again.
#
#   slapd, ldap-utils   the private OpenLDAP servers of the directory suites
#   openssl             certificates for the TLS tests
#   curl                the HTTP client of the binary suite
#   dovecot-imapd       doveadm, for the store's Maildir interoperability tests
#   swaks               an SMTP client of the SMTP suite
#   postfix             smtp-source, the SMTP load generator of the SMTP suite; installed with
#                       "No configuration", so no Postfix service is set up or started
#   fetchmail           a real POP3 fetcher for the pop3 suite
#   prometheus          promtool, which lints /metrics in the metrics suite; its server is not
#                       started (see policy-rc.d below) and no suite runs it
#
# Python packages (aiosmtpd, dkimpy, dnspython) come from tests/clients/requirements.txt.
set -euo pipefail

if ! python3 -c "import aiosmtpd, dkim, dns.message" >/dev/null 2>&1; then
  echo "tests/install-deps.sh: installing tests/clients/requirements.txt" >&2
  python3 -m pip install --quiet -r "$(dirname "$0")/clients/requirements.txt"
fi

packages=(slapd ldap-utils openssl curl dovecot-core dovecot-imapd fetchmail swaks postfix prometheus)
missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done
if ! command -v cargo-nextest >/dev/null 2>&1; then
  echo "tests/install-deps.sh: cargo-nextest not found; installing it with cargo" >&2
  cargo install --locked cargo-nextest
fi
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "tests/install-deps.sh: installing ${missing[*]}" >&2
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
$sudo apt-get update -qq
# Postfix is only wanted for smtp-source: no mail system of its own.
echo "postfix postfix/main_mailer_type select No configuration" | $sudo debconf-set-selections
# Package scripts must start no daemon (prometheus and postfix would): where the machine has no
# policy-rc.d of its own, one that refuses every start is put in place for this install.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
  $sudo chmod 755 "$policy"
  trap '$sudo rm -f "$policy"' EXIT
fi
# slapd's package scripts would otherwise ask for an admin password.
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
