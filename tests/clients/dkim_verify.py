#!/usr/bin/env python3
"""Verifies the DKIM signature of a message file with dkimpy, against a TXT record given on the
command line instead of DNS. Run by tests/suite/queue.rs. Exit 0 when the signature verifies.

    dkim_verify.py MESSAGE 'mailfold._domainkey.acme.test.' 'v=DKIM1; k=rsa; p=...'
"""

import sys

import dkim


def main():
    path, name, record = sys.argv[1], sys.argv[2], sys.argv[3]
    with open(path, "rb") as file:
        message = file.read()

    def dns(query, timeout=5):
        asked = query.decode() if isinstance(query, bytes) else query
        if asked.rstrip(".").lower() == name.rstrip(".").lower():
            return record.encode()
        return None

    ok = dkim.verify(message, dnsfunc=dns)
    print("pass" if ok else "fail")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
