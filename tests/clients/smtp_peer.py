#!/usr/bin/env python3
"""A remote MTA for the queue suite, on aiosmtpd: it stores what it accepts and fails on command.

Run by tests/suite/queue.rs and tests/bench/queue.rs. Every accepted message is written to
--dir as <n>.eml (the bytes as received, dot-stuffing removed) and <n>.json (MAIL FROM, RCPT TO,
MAIL options), the .json last, so a reader that sees the .json sees the whole message.

Behaviour is read from the --control JSON file at every command, so a test can change it while
the peer runs:
  {"rcpt": {"address": "550 5.1.1 no such user", "*": "451 4.3.0 later"},
   "data": "451 4.3.0 later", "data_delay": 2.5}
"rcpt" maps a recipient (or "*" for any) to the reply; "data" answers the end of data;
"data_delay" waits that many seconds before answering it (a slow remote). Before waiting it
touches <dir>/data-started, so a test knows a delivery is in progress.
"""

import argparse
import asyncio
import json
import os
import ssl
import sys

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Handler:
    def __init__(self, folder, control):
        self.folder = folder
        self.control = control
        self.count = 0

    def rules(self):
        try:
            with open(self.control) as file:
                return json.load(file)
        except (OSError, ValueError):
            return {}

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        rules = self.rules().get("rcpt", {})
        reply = rules.get(address.lower(), rules.get("*"))
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 ok"

    async def handle_DATA(self, server, session, envelope):
        rules = self.rules()
        delay = rules.get("data_delay")
        if delay:
            open(os.path.join(self.folder, "data-started"), "w").close()
            await asyncio.sleep(float(delay))
        if rules.get("data"):
            return rules["data"]
        self.count += 1
        stem = os.path.join(self.folder, f"{os.getpid()}-{self.count:06d}")
        with open(stem + ".eml", "wb") as file:
            file.write(envelope.original_content or envelope.content)
        meta = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "mail_options": envelope.mail_options,
            "tls": session.ssl is not None,
            "authenticated": bool(session.authenticated),
            "session": "%s:%s" % tuple(session.peer[:2]),
        }
        with open(stem + ".json.tmp", "w") as file:
            json.dump(meta, file)
        os.rename(stem + ".json.tmp", stem + ".json")
        return "250 2.0.0 queued as %d" % self.count


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--control", required=True)
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--auth", help="user:password required (AUTH over TLS only)")
    parser.add_argument("--size", type=int, default=50 * 1024 * 1024, help="SIZE announced")
    arguments = parser.parse_args()

    options = {}
    if arguments.auth:
        user, password = arguments.auth.encode().split(b":", 1)

        def authenticator(server, session, envelope, mechanism, data):
            good = isinstance(data, LoginPassword) and (data.login, data.password) == (user, password)
            return AuthResult(success=good)

        options = {"authenticator": authenticator, "auth_required": True}

    context = None
    if arguments.cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(arguments.cert, arguments.key)
    handler = Handler(arguments.dir, arguments.control)
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=arguments.port,
        tls_context=context,
        require_starttls=False,
        data_size_limit=arguments.size,
        decode_data=False,
        enable_SMTPUTF8=True,
        **options,
    )
    controller.start()
    print("ready", flush=True)
    try:
        sys.stdin.read()
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
