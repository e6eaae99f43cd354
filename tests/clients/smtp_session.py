#!/usr/bin/env python3
"""One SMTP transaction with Python's smtplib against Mailfold, every reply reported.

Run by tests/suite/smtp.rs. The script does not judge the replies: it prints them as JSON on
stdout, and the Rust test checks them. TLS is always verified (CERT_REQUIRED, host name
checked) against the certificate given with --cafile; a verification failure exits with 3.

Transports:
  plain     no TLS (MX on port 25, or submission before STARTTLS)
  starttls  EHLO, STARTTLS, EHLO again (submission on 587)
  implicit  TLS from the first byte (submission on 465)

Output: {"tls": bool, "ehlo": [keywords], "auth": [code, text] | null,
         "mail": [code, text], "rcpt": [[code, text], ...], "data": [code, text] | null}
"""

import argparse
import json
import smtplib
import ssl
import sys


def reply(pair):
    code, text = pair
    return [code, text.decode("utf-8", "replace") if isinstance(text, bytes) else text]


def context(cafile):
    tls = ssl.create_default_context(cafile=cafile)
    if tls.verify_mode != ssl.CERT_REQUIRED or not tls.check_hostname:
        raise SystemExit("the TLS context does not verify the server")
    return tls


def run(arguments):
    tls = context(arguments.cafile)
    if arguments.transport == "implicit":
        client = smtplib.SMTP_SSL(arguments.host, arguments.port, context=tls, timeout=20)
    else:
        client = smtplib.SMTP(arguments.host, arguments.port, timeout=20)
    result = {"tls": False, "ehlo": [], "auth": None, "mail": None, "rcpt": [], "data": None}
    client.ehlo("client.example.test")
    if arguments.transport == "starttls":
        code, _ = client.starttls(context=tls)
        if code != 220:
            raise SystemExit(f"STARTTLS answered {code}")
        client.ehlo("client.example.test")
    result["tls"] = isinstance(client.sock, ssl.SSLSocket)
    result["ehlo"] = sorted(client.esmtp_features)

    if arguments.user is not None:
        client.user, client.password = arguments.user, arguments.password
        mechanism = arguments.mechanism.upper()
        method = {"PLAIN": client.auth_plain, "LOGIN": client.auth_login}[mechanism]
        try:
            result["auth"] = reply(client.auth(mechanism, method, initial_response_ok=True))
        except smtplib.SMTPAuthenticationError as error:
            result["auth"] = reply((error.smtp_code, error.smtp_error))
        except smtplib.SMTPException as error:
            result["auth"] = [0, str(error)]
        if result["auth"][0] != 235:
            print(json.dumps(result))
            client.close()
            return

    result["mail"] = reply(client.mail(arguments.sender, arguments.mail_option))
    if result["mail"][0] == 250:
        for recipient in arguments.rcpt:
            result["rcpt"].append(reply(client.rcpt(recipient, arguments.rcpt_option)))
        if any(code == 250 for code, _ in result["rcpt"]):
            with open(arguments.message, "rb") as message:
                body = message.read()
            result["data"] = reply(client.data(body))
    try:
        client.quit()
    except smtplib.SMTPServerDisconnected:
        pass
    print(json.dumps(result))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--transport", choices=["plain", "starttls", "implicit"], required=True)
    parser.add_argument("--host", default="localhost")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cafile", required=True)
    parser.add_argument("--user")
    parser.add_argument("--password", default="")
    parser.add_argument("--mechanism", default="PLAIN")
    parser.add_argument("--sender", required=True)
    parser.add_argument("--rcpt", action="append", default=[])
    parser.add_argument("--mail-option", action="append", default=[])
    parser.add_argument("--rcpt-option", action="append", default=[])
    parser.add_argument("--message", required=True)
    arguments = parser.parse_args()
    try:
        run(arguments)
    except ssl.SSLCertVerificationError as error:
        print(f"certificate not verified: {error}", file=sys.stderr)
        sys.exit(3)


if __name__ == "__main__":
    main()
