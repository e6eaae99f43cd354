#!/usr/bin/env python3
"""A POP3 session with Python's poplib against Mailfold, checking every reply.

Run by tests/suite/pop3.rs; exits non-zero, with the failed check on stderr, when anything
differs from what RFC 1939, RFC 2449 and RFC 2595 require. The server certificate is always
verified (CERT_REQUIRED, host name checked) against the file given with --cafile.

Modes:
  session   every transaction command: STAT LIST [n] UIDL [n] RETR TOP NOOP DELE RSET QUIT,
            with CAPA before and after STLS; prints {"uidl": [...]} as JSON on stdout
  retrieve  log in, RETR and TOP 0 of every message, QUIT: for messages whose lines matter

--expect names a folder holding the mailbox's messages as stored, as 1.eml, 2.eml, ... in
maildrop order. Their lines are what RETR must give back once poplib has removed the
dot-stuffing and the CRLFs; for `session` they must be stored with CRLF line ends, so the sizes
on disk are the sizes the server announces.
"""

import argparse
import json
import os
import poplib
import re
import ssl
import sys

BASE_CAPABILITIES = ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"]


class CheckFailed(Exception):
    """A reply that is not what the server should have sent."""


def check(condition, message):
    if not condition:
        raise CheckFailed(message)


def expect_error(action, prefix, what):
    """Runs action, which must fail with a -ERR reply starting with prefix."""
    try:
        reply = action()
    except poplib.error_proto as error:
        text = error.args[0] if error.args else b""
        check(text.startswith(prefix), f"{what}: got {text!r}, wanted {prefix!r}...")
        return
    raise CheckFailed(f"{what}: succeeded with {reply!r}, wanted {prefix!r}")


def read_expected(folder):
    messages = []
    index = 1
    while os.path.exists(os.path.join(folder, f"{index}.eml")):
        with open(os.path.join(folder, f"{index}.eml"), "rb") as file:
            messages.append(file.read())
        index += 1
    check(messages, f"no messages in {folder}")
    return messages


def lines_of(message):
    """The lines a POP3 client sees: any of CRLF, LF or CR ends a line."""
    lines = re.split(rb"\r\n|\n|\r", message)
    if lines and lines[-1] == b"":
        lines.pop()
    return lines


def header_and_body(message):
    lines = lines_of(message)
    blank = lines.index(b"") if b"" in lines else len(lines)
    return lines[: blank + 1], lines[blank + 1 :]


def verifying_context(cafile):
    context = ssl.create_default_context(cafile=cafile)
    check(context.verify_mode == ssl.CERT_REQUIRED, "context does not require a certificate")
    check(context.check_hostname, "context does not check the host name")
    return context


def unverifiable_context():
    """The system roots only: the server's self-signed certificate must be refused."""
    return ssl.create_default_context()


def capabilities(client, what):
    try:
        capa = client.capa()
    except poplib.error_proto as error:
        raise CheckFailed(f"CAPA {what}: {error}") from error
    for name in BASE_CAPABILITIES:
        check(name in capa, f"CAPA {what}: {name} missing from {capa}")
    return capa


def check_logins_offered(capa, offered, what):
    has_user = "USER" in capa
    has_plain = "PLAIN" in capa.get("SASL", [])
    check(has_user == offered, f"CAPA {what}: USER offered={has_user}, wanted {offered}")
    check(has_plain == offered, f"CAPA {what}: SASL PLAIN offered={has_plain}, wanted {offered}")


def connect(args):
    """A logged-out client under TLS, after the CAPA checks of its transport."""
    context = verifying_context(args.cafile)
    if args.transport == "implicit":
        try:
            poplib.POP3_SSL(args.host, args.port, context=unverifiable_context(), timeout=10)
        except ssl.SSLCertVerificationError:
            pass
        else:
            raise CheckFailed("implicit TLS: an unverifiable certificate was accepted")
        client = poplib.POP3_SSL(args.host, args.port, context=context, timeout=10)
        capa = capabilities(client, "under implicit TLS")
        check("STLS" not in capa, f"CAPA under implicit TLS offers STLS: {capa}")
        check_logins_offered(capa, True, "under implicit TLS")
        return client

    probe = poplib.POP3(args.host, args.port, timeout=10)
    try:
        probe.stls(context=unverifiable_context())
    except ssl.SSLCertVerificationError:
        pass
    else:
        raise CheckFailed("STLS: an unverifiable certificate was accepted")
    probe.sock.close()

    client = poplib.POP3(args.host, args.port, timeout=10)
    check(client.getwelcome().startswith(b"+OK"), f"greeting {client.getwelcome()!r}")
    capa = capabilities(client, "before STLS")
    check("STLS" in capa, f"CAPA before STLS lacks STLS: {capa}")
    plaintext = args.plaintext == "allowed"
    check_logins_offered(capa, plaintext, "before STLS")
    if not plaintext:
        # RFC 2595 §2.2: no password in clear; RFC 3206: the [AUTH] response code.
        expect_error(lambda: client.user(args.user), b"-ERR [AUTH]", "USER before STLS")
    reply = client.stls(context=context)
    check(reply.startswith(b"+OK"), f"STLS reply {reply!r}")
    check(isinstance(client.sock, ssl.SSLSocket), "no TLS after STLS")
    check(client.sock.getpeercert(), "no verified peer certificate after STLS")
    capa = capabilities(client, "after STLS")
    check("STLS" not in capa, f"CAPA after STLS still offers STLS: {capa}")
    check_logins_offered(capa, True, "after STLS")
    expect_error(lambda: client._shortcmd("STLS"), b"-ERR", "a second STLS")
    return client


def log_in(client, args):
    reply = client.user(args.user)
    check(reply.startswith(b"+OK"), f"USER reply {reply!r}")
    reply = client.pass_(args.password)
    check(reply.startswith(b"+OK"), f"PASS reply {reply!r}")


def check_message(client, number, message):
    """RETR and TOP of one message against its stored form."""
    reply, lines, octets = client.retr(number)
    check(reply.startswith(b"+OK"), f"RETR {number} reply {reply!r}")
    wanted = lines_of(message)
    check(lines == wanted, f"RETR {number}: lines differ:\n{lines!r}\nwanted\n{wanted!r}")

    header, body = header_and_body(message)
    for count in (0, 2):
        reply, lines, _ = client.top(number, count)
        check(reply.startswith(b"+OK"), f"TOP {number} {count} reply {reply!r}")
        wanted = header + body[:count]
        check(lines == wanted, f"TOP {number} {count}:\n{lines!r}\nwanted\n{wanted!r}")
    return octets


def session(args):
    messages = read_expected(args.expect)
    sizes = [len(m) for m in messages]
    client = connect(args)
    log_in(client, args)
    expect_error(lambda: client.user(args.user), b"-ERR", "USER in the TRANSACTION state")

    count, total = client.stat()
    check((count, total) == (len(messages), sum(sizes)), f"STAT {count} {total}, wanted "
          f"{len(messages)} {sum(sizes)}")
    reply, listing, _ = client.list()
    check(reply.startswith(b"+OK"), f"LIST reply {reply!r}")
    wanted = [f"{i + 1} {size}".encode() for i, size in enumerate(sizes)]
    check(listing == wanted, f"LIST {listing!r}, wanted {wanted!r}")
    for number, size in enumerate(sizes, start=1):
        reply = client.list(number)
        check(reply == f"+OK {number} {size}".encode(), f"LIST {number}: {reply!r}")
    expect_error(lambda: client.list(len(sizes) + 1), b"-ERR", "LIST of a missing message")

    reply, uidl, _ = client.uidl()
    check(reply.startswith(b"+OK"), f"UIDL reply {reply!r}")
    ids = []
    for number, line in enumerate(uidl, start=1):
        index, _, unique = line.decode().partition(" ")
        check(index == str(number), f"UIDL line {line!r} out of order")
        # RFC 1939 §7: 1 to 70 characters in the range 0x21 to 0x7E.
        check(re.fullmatch(r"[\x21-\x7e]{1,70}", unique), f"UIDL id {unique!r} is invalid")
        ids.append(unique)
        single = client.uidl(number)
        check(single == f"+OK {number} {unique}".encode(), f"UIDL {number}: {single!r}")
    check(len(ids) == len(messages), f"UIDL lists {len(ids)} of {len(messages)} messages")
    check(len(set(ids)) == len(ids), f"UIDL ids repeat: {ids}")

    for number, message in enumerate(messages, start=1):
        octets = check_message(client, number, message)
        # RFC 1939 §11: the announced size is the size in CRLF form, as sent, unstuffed.
        check(octets == sizes[number - 1], f"RETR {number}: {octets} octets, LIST said "
              f"{sizes[number - 1]}")

    check(client.noop().startswith(b"+OK"), "NOOP")
    check(client.dele(1).startswith(b"+OK"), "DELE 1")
    count, total = client.stat()
    check((count, total) == (len(messages) - 1, sum(sizes[1:])), f"STAT after DELE: {count}")
    expect_error(lambda: client.list(1), b"-ERR", "LIST of a deleted message")
    expect_error(lambda: client.retr(1), b"-ERR", "RETR of a deleted message")
    expect_error(lambda: client.dele(1), b"-ERR", "DELE of a deleted message")
    _, listing, _ = client.list()
    check(listing == wanted[1:], f"LIST after DELE {listing!r}")
    check(client.rset().startswith(b"+OK"), "RSET")
    count, _ = client.stat()
    check(count == len(messages), f"STAT after RSET: {count}")
    check(client.quit().startswith(b"+OK"), "QUIT")
    print(json.dumps({"uidl": ids}))


def retrieve(args):
    messages = read_expected(args.expect)
    client = connect(args)
    log_in(client, args)
    count, _ = client.stat()
    check(count == len(messages), f"STAT lists {count} messages, wanted {len(messages)}")
    for number, message in enumerate(messages, start=1):
        check_message(client, number, message)
    check(client.quit().startswith(b"+OK"), "QUIT")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["session", "retrieve"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--transport", choices=["stls", "implicit"], required=True)
    parser.add_argument("--cafile", required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--expect", required=True)
    parser.add_argument("--plaintext", choices=["allowed", "refused"], default="allowed")
    args = parser.parse_args()
    try:
        {"session": session, "retrieve": retrieve}[args.mode](args)
    except (CheckFailed, poplib.error_proto, ssl.SSLError, OSError) as error:
        print(f"poplib_session.py {args.mode}: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
