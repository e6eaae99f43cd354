#!/usr/bin/env python3
"""STARTTLS command injection against Mailfold's submission port (RFC 3207 §4.2).

Run by tests/suite/smtp.rs. Sends `STARTTLS\\r\\nRSET\\r\\n` in one write, completes the TLS
handshake (verifying the server against --cafile), sends NOOP, and prints every reply line
that arrives after the handshake as `after tls: LINE`. A server that buffered the injected
RSET answers it ("reset") before the NOOP.
"""

import argparse
import socket
import ssl


def read_reply(stream):
    lines = []
    while True:
        line = stream.readline()
        if not line:
            raise SystemExit(f"connection closed after {lines}")
        lines.append(line.decode("utf-8", "replace").rstrip("\r\n"))
        if len(lines[-1]) < 4 or lines[-1][3] != "-":
            return lines


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cafile", required=True)
    arguments = parser.parse_args()
    context = ssl.create_default_context(cafile=arguments.cafile)

    plain = socket.create_connection(("127.0.0.1", arguments.port), timeout=20)
    stream = plain.makefile("rb")
    print("greeting:", read_reply(stream))
    plain.sendall(b"EHLO client.example.test\r\n")
    print("ehlo:", read_reply(stream))
    plain.sendall(b"STARTTLS\r\nRSET\r\n")
    started = read_reply(stream)
    print("starttls:", started)
    if not started[-1].startswith("220"):
        raise SystemExit("STARTTLS refused")

    tls = context.wrap_socket(plain, server_hostname="localhost")
    tls.settimeout(5)
    secure = tls.makefile("rb")
    tls.sendall(b"NOOP\r\n")
    for line in read_reply(secure):
        print("after tls:", line)
    # Anything more within a moment would be a late answer to the injected command.
    tls.sendall(b"QUIT\r\n")
    for line in read_reply(secure):
        print("after tls:", line)


if __name__ == "__main__":
    main()
