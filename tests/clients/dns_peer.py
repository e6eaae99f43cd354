#!/usr/bin/env python3
"""A DNS server for the queue suite, on dnspython: answers from a small zone given as JSON.

Run by tests/suite/queue.rs. It listens on UDP 127.0.0.1:--port and prints "ready". The zone
maps names to record types to values:
  {"example.net.": {"MX": ["10 mx1.example.net."]}, "mx1.example.net.": {"A": ["127.0.0.1"]}}
A name not in the zone is NXDOMAIN; a known name without the asked type is an empty NOERROR.
"""

import argparse
import json
import socket

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--zone", required=True)
    arguments = parser.parse_args()
    zone = {name.lower(): types for name, types in json.loads(arguments.zone).items()}

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", arguments.port))
    print("ready", flush=True)
    while True:
        data, peer = sock.recvfrom(4096)
        try:
            query = dns.message.from_wire(data)
        except Exception:
            continue
        response = dns.message.make_response(query)
        question = query.question[0]
        name = question.name.to_text().lower()
        kind = dns.rdatatype.to_text(question.rdtype)
        if name not in zone:
            response.set_rcode(dns.rcode.NXDOMAIN)
        elif kind in zone[name]:
            response.answer.append(
                dns.rrset.from_text_list(question.name, 60, "IN", kind, zone[name][kind])
            )
        sock.sendto(response.to_wire(), peer)


if __name__ == "__main__":
    main()
