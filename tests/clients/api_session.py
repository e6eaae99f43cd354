#!/usr/bin/env python3
"""The JSON API end to end, with Python's http.client, against a running `mailfold serve`.

Run by tests/suite/api.rs on a copy of the quick start (tenants acme and globex, their
administrators jane, shopkeeper and gina). Every step checks the status, the error body and,
for writes, what a later read shows; the first wrong answer stops the script with exit 1 and a
message naming the step. On success it prints one JSON object with what the Rust side checks
further (the alias it created for the SMTP check, the number of changes made).

Usage: api_session.py --port PORT --operator-token TOKEN [--mx PORT] [--cafile CA]
"""

import argparse
import base64
import http.client
import json
import smtplib
import ssl
import sys
import urllib.parse

JANE = ("jane@acme.test", "jane-pw")
JANE_BY_LOGIN = ("jane@acme", "jane-pw")
SHOPKEEPER = ("shopkeeper@acme", "shopkeeper-pw")
GINA = ("gina@globex", "gina-pw")


class Failure(Exception):
    pass


class Api:
    def __init__(self, port, cafile):
        self.port = port
        self.cafile = cafile
        self.changes = 0

    def connection(self):
        if self.cafile:
            tls = ssl.create_default_context(cafile=self.cafile)
            return http.client.HTTPSConnection("127.0.0.1", self.port, context=tls, timeout=20)
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)

    def call(self, method, path, body=None, auth=None, raw=None, content_type="application/json"):
        """(status, parsed JSON or None, headers)."""
        headers = {}
        if isinstance(auth, tuple):
            pair = f"{auth[0]}:{auth[1]}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        elif isinstance(auth, str):
            headers["Authorization"] = auth
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
        if data is not None:
            headers["Content-Type"] = content_type
        connection = self.connection()
        connection.request(method, path, body=data, headers=headers)
        response = connection.getresponse()
        text = response.read()
        connection.close()
        try:
            parsed = json.loads(text) if text else None
        except ValueError:
            raise Failure(f"{method} {path}: the answer is not JSON: {text[:200]!r}")
        if method in ("POST", "PUT", "PATCH", "DELETE") and 200 <= response.status < 300:
            self.changes += 1
        return response.status, parsed, response.headers

    def expect(self, step, status, method, path, body=None, auth=None, **kwargs):
        got, parsed, headers = self.call(method, path, body, auth, **kwargs)
        if got != status:
            raise Failure(f"{step}: {method} {path} answered {got}, wanted {status}: {parsed}")
        if got >= 400:
            error = (parsed or {}).get("error")
            if not isinstance(error, dict) or not error.get("code") or not error.get("message"):
                raise Failure(f"{step}: the {got} answer has no JSON error body: {parsed}")
        return parsed, headers

    def error(self, step, status, code, method, path, body=None, auth=None, field=None, **kw):
        parsed, headers = self.expect(step, status, method, path, body, auth, **kw)
        error = parsed["error"]
        if error["code"] != code:
            raise Failure(f"{step}: code {error['code']!r}, wanted {code!r}: {error}")
        if field is not None and error.get("field") != field:
            raise Failure(f"{step}: field {error.get('field')!r}, wanted {field!r}: {error}")
        text = json.dumps(parsed)
        for leak in ("dc=example", "ou=", "/var/", "ldap result"):
            if leak in text:
                raise Failure(f"{step}: the error body leaks {leak!r}: {text}")
        return error, headers


def check(step, condition, detail=""):
    if not condition:
        raise Failure(f"{step}: {detail}")


def q(text):
    return urllib.parse.quote(text, safe="")


def tenant_logins(api):
    _, headers = api.error("no credentials", 401, "unauthorized", "GET", "/v1/domains")
    challenge = headers.get("WWW-Authenticate", "")
    check("challenge", "Basic" in challenge and "Bearer" in challenge, challenge)
    api.error("wrong password", 401, "unauthorized", "GET", "/v1/domains", auth=("jane@acme", "x"))
    api.error("unknown scheme", 401, "unauthorized", "GET", "/v1/domains", auth="Digest abc")
    api.error("a mailbox is no admin", 401, "unauthorized", "GET", "/v1/domains",
              auth=("alice@acme.test", "alice-pw"))

    listed, _ = api.expect("jane lists", 200, "GET", "/v1/domains", auth=JANE)
    names = sorted(d["name"] for d in listed["items"])
    check("jane's domains", names == ["acme-shop.test", "acme.test", "paused.test"], names)
    acme = next(d for d in listed["items"] if d["name"] == "acme.test")
    check("usage", acme["usage"]["mailboxes"] >= 9 and acme["usage"]["max_aliases"] == 100,
          acme["usage"])
    check("alias names", acme["alias_names"] == ["acme-mail.test"], acme)
    again, _ = api.expect("jane by uid@tenant", 200, "GET", "/v1/domains", auth=JANE_BY_LOGIN)
    check("same view", again == listed)

    shop, _ = api.expect("shopkeeper lists", 200, "GET", "/v1/domains", auth=SHOPKEEPER)
    check("shopkeeper's domains", [d["name"] for d in shop["items"]] == ["acme-shop.test"], shop)
    api.error("shopkeeper outside its domains", 403, "forbidden", "GET",
              "/v1/domains/acme.test/aliases", auth=SHOPKEEPER)


def tokens(api):
    issued, _ = api.expect("token", 201, "POST", "/v1/tokens", auth=JANE)
    check("token shape", issued["token_type"] == "Bearer" and issued["expires_in"] > 0, issued)
    bearer = "Bearer " + issued["token"]
    api.expect("bearer works", 200, "GET", "/v1/domains", auth=bearer)
    api.error("no token from a token", 403, "forbidden", "POST", "/v1/tokens", auth=bearer)
    api.expect("revoke", 204, "DELETE", "/v1/tokens/current", auth=bearer)
    api.error("revoked", 401, "unauthorized", "GET", "/v1/domains", auth=bearer)
    api.error("revoke without a token", 400, "bad_request", "DELETE", "/v1/tokens/current",
              auth=JANE)
    tampered = "Bearer " + issued["token"][:-2] + ("AA" if not issued["token"].endswith("AA") else "BB")
    api.error("tampered token", 401, "unauthorized", "GET", "/v1/domains", auth=tampered)
    fresh, _ = api.expect("second token", 201, "POST", "/v1/tokens", auth=JANE)
    return "Bearer " + fresh["token"]


def aliases(api, jane):
    base = "/v1/domains/acme.test/aliases"
    created, headers = api.expect("create", 201, "POST", base, auth=jane,
                                  body={"address": "helpdesk", "targets": ["bob@acme.test"],
                                        "description": "Front desk"})
    check("created", created == {"address": "helpdesk@acme.test", "targets": ["bob@acme.test"],
                                 "description": "Front desk", "status": "active"}, created)
    check("location", headers.get("Location") == base + "/helpdesk@acme.test", headers)
    shown, _ = api.expect("show", 200, "GET", base + "/helpdesk@acme.test", auth=jane)
    check("shown", shown == created, shown)

    first, _ = api.expect("page 1", 200, "GET", base + "?limit=2", auth=jane)
    check("page size", len(first["items"]) == 2 and first["next"], first)
    second, _ = api.expect("page 2", 200, "GET", f"{base}?limit=2&after={q(first['next'])}",
                           auth=jane)
    check("pages continue", second["items"][0]["address"] > first["next"], second)
    everything, _ = api.expect("all", 200, "GET", base + "?limit=1000", auth=jane)
    addresses = [a["address"] for a in everything["items"]]
    check("sorted and complete", addresses == sorted(addresses) and "helpdesk@acme.test" in addresses
          and everything["next"] is None, addresses)
    api.error("bad limit", 422, "invalid", "GET", base + "?limit=0", auth=jane, field="limit")
    api.error("unknown parameter", 422, "invalid", "GET", base + "?colour=red", auth=jane,
              field="colour")

    patched, _ = api.expect("patch", 200, "PATCH", base + "/helpdesk@acme.test", auth=jane,
                            body={"targets": ["carol@acme.test", "x@ext.example"]})
    check("patched", patched["targets"] == ["carol@acme.test", "x@ext.example"]
          and patched["description"] == "Front desk", patched)
    put, _ = api.expect("put", 200, "PUT", base + "/helpdesk@acme.test", auth=jane,
                        body={"targets": ["bob@acme.test"]})
    check("put resets", put["description"] is None and put["status"] == "active", put)
    api.expect("disable", 200, "PATCH", base + "/helpdesk@acme.test", auth=jane,
               body={"status": "disabled"})
    api.expect("enable", 200, "PATCH", base + "/helpdesk@acme.test", auth=jane,
               body={"status": "active", "description": None})

    # Rules: collisions, loops, syntax, shapes.
    api.error("taken by a mailbox", 409, "conflict", "POST", base, auth=jane,
              body={"address": "alice@acme.test", "targets": ["bob@acme.test"]})
    api.error("taken by another tenant", 422, "invalid", "POST", base, auth=jane,
              body={"address": "info@globex.test", "targets": ["bob@acme.test"]}, field="address")
    api.expect("loop a", 201, "POST", base, auth=jane,
               body={"address": "loopy-a", "targets": ["loopy-b@acme.test"]})
    api.error("loop b", 409, "loop", "POST", base, auth=jane,
              body={"address": "loopy-b", "targets": ["loopy-a@acme.test"]}, field="targets")
    api.error("self loop", 409, "loop", "PATCH", base + "/loopy-a@acme.test", auth=jane,
              body={"targets": ["loopy-a@acme.test"]})
    api.expect("cleanup loop", 204, "DELETE", base + "/loopy-a@acme.test", auth=jane)
    for bad in (["not an address"], [], ["a@b@c"], ["x@" + "a" * 300 + ".test"], ["\u0000@acme.test"]):
        api.error(f"target {bad!r}", 422, "invalid", "POST", base, auth=jane,
                  body={"address": "t1", "targets": bad}, field="targets")
    api.error("targets missing", 422, "invalid", "POST", base, auth=jane,
              body={"address": "t1"}, field="targets")
    api.error("targets not a list", 422, "invalid", "POST", base, auth=jane,
              body={"address": "t1", "targets": "bob@acme.test"}, field="targets")
    api.error("unknown field", 422, "invalid", "POST", base, auth=jane,
              body={"address": "t1", "targets": ["bob@acme.test"], "colour": "red"}, field="colour")
    api.error("bad status", 422, "invalid", "PATCH", base + "/helpdesk@acme.test", auth=jane,
              body={"status": "deleting"}, field="status")
    api.error("malformed json", 400, "bad_request", "POST", base, auth=jane, raw=b"{\"address\":")
    api.error("not an object", 400, "bad_request", "POST", base, auth=jane, raw=b"[1, 2]")
    api.error("not json", 415, "unsupported_media_type", "POST", base, auth=jane,
              raw=b"address=x", content_type="application/x-www-form-urlencoded")
    big = {"address": "big", "targets": ["bob@acme.test"], "description": "x" * 70000}
    api.error("too large", 413, "too_large", "POST", base, auth=jane, body=big)
    api.error("unknown alias", 404, "not_found", "GET", base + "/nobody@acme.test", auth=jane)
    api.error("alias of another domain in this path", 404, "not_found", "GET",
              "/v1/domains/acme-shop.test/aliases/sales@acme.test", auth=jane)


def alias_limit(api, operator, jane):
    shop = "/v1/domains/acme-shop.test/aliases"
    current, _ = api.expect("shop aliases", 200, "GET", shop, auth=jane)
    count = len(current["items"])
    api.expect("cap the shop", 200, "PATCH", "/v1/admin/domains/acme-shop.test", auth=operator,
               body={"limits": {"max_aliases": count + 1}})
    api.expect("one more fits", 201, "POST", shop, auth=jane,
               body={"address": "orders", "targets": ["shop@acme-shop.test"]})
    api.error("over the cap", 409, "limit_reached", "POST", shop, auth=jane,
              body={"address": "returns", "targets": ["shop@acme-shop.test"]})
    listed, _ = api.expect("usage shows it", 200, "GET", "/v1/domains/acme-shop.test", auth=jane)
    check("usage at the cap", listed["usage"]["aliases"] == count + 1
          and listed["usage"]["max_aliases"] == count + 1, listed["usage"])
    api.expect("uncap", 200, "PATCH", "/v1/admin/domains/acme-shop.test", auth=operator,
               body={"limits": {"max_aliases": None}})


def cross_tenant(api, jane):
    before, _ = api.expect("acme aliases before", 200, "GET", "/v1/domains/acme.test/aliases?limit=1000",
                           auth=jane)
    sales = "/v1/domains/acme.test/aliases/sales@acme.test"
    attempts = [
        ("GET", "/v1/domains/acme.test", None),
        ("GET", "/v1/domains/acme.test/aliases", None),
        ("GET", "/v1/domains/acme.test/mailboxes", None),
        ("POST", "/v1/domains/acme.test/aliases", {"address": "x", "targets": ["info@globex.test"]}),
        ("GET", sales, None),
        ("PUT", sales, {"targets": ["info@globex.test"]}),
        ("PATCH", sales, {"targets": ["info@globex.test"]}),
        ("DELETE", sales, None),
        ("GET", "/v1/domains/acme-mail.test/aliases", None),
        ("GET", "/v1/domains/globex.test/aliases/sales@acme.test", None),
        ("DELETE", "/v1/domains/globex.test/aliases/sales@acme.test", None),
        ("GET", "/v1/domains/nonexistent.test/aliases", None),
    ]
    for method, path, body in attempts:
        status, parsed, _ = api.call(method, path, body, GINA)
        check(f"gina {method} {path}", status == 404 and parsed["error"]["code"] == "not_found",
              f"{status} {parsed}")
    # An operator route with a tenant's credentials is no way in either.
    status, _, _ = api.call("GET", "/v1/admin/tenants", None, GINA)
    check("gina on the operator api", status == 401, status)
    after, _ = api.expect("acme aliases after", 200, "GET", "/v1/domains/acme.test/aliases?limit=1000",
                          auth=jane)
    check("nothing changed in acme", before == after)


def injection(api, jane):
    nasty = ["*", "acme.test)(", "acme.test,ou=x", "..", "%00", "a\\2a", "acme.test\u0000",
             "*)(mailfoldDomainName=*", "acme.test/../globex.test"]
    for text in nasty:
        for path in (f"/v1/domains/{q(text)}/aliases", f"/v1/domains/acme.test/aliases/{q(text)}",
                     f"/v1/domains/acme.test/aliases/{q(text + '@acme.test')}"):
            status, parsed, _ = api.call("GET", path, None, jane)
            check(f"injection {path}", status in (400, 404) and parsed["error"], f"{status} {parsed}")
        # RFC 5321 atext allows some of these ("*"): such an alias is fine if it is literal,
        # found only by its own address, and removable.
        before, _ = api.expect("before", 200, "GET", "/v1/domains/acme.test/aliases?limit=1000",
                               auth=jane)
        status, parsed, _ = api.call("POST", "/v1/domains/acme.test/aliases",
                                     {"address": text, "targets": ["bob@acme.test"]}, jane)
        check(f"injection address {text!r}", status in (201, 409, 422), f"{status} {parsed}")
        if status == 201:
            literal = text.lower() + "@acme.test"
            check(f"literal {text!r}", parsed["address"] == literal, parsed)
            after, _ = api.expect("after", 200, "GET", "/v1/domains/acme.test/aliases?limit=1000",
                                  auth=jane)
            check(f"one more alias for {text!r}",
                  len(after["items"]) == len(before["items"]) + 1, after)
            shown, _ = api.expect("literal lookup", 200, "GET",
                                  f"/v1/domains/acme.test/aliases/{q(literal)}", auth=jane)
            check(f"found as itself {text!r}", shown["address"] == literal, shown)
            api.expect("remove it", 204, "DELETE", f"/v1/domains/acme.test/aliases/{q(literal)}",
                       auth=jane)
        status, parsed, _ = api.call("POST", "/v1/domains/acme.test/aliases",
                                     {"address": "inj", "targets": [text]}, jane)
        check(f"injection target {text!r}", status == 422, f"{status} {parsed}")
    status, parsed, _ = api.call("POST", "/v1/domains/acme.test/aliases",
                                 {"address": "ctl", "targets": ["bob@acme.test"],
                                  "description": "line\r\nbreak"}, jane)
    check("control characters in a description", status == 422, f"{status} {parsed}")
    api.expect("still listing", 200, "GET", "/v1/domains/acme.test/aliases", auth=jane)


def mailboxes(api, jane):
    listed, _ = api.expect("mailboxes", 200, "GET", "/v1/domains/acme.test/mailboxes?limit=1000",
                           auth=jane)
    alice = next(m for m in listed["items"] if m["address"] == "alice@acme.test")
    check("alice", alice["status"] == "active" and alice["usage"] is not None, alice)
    check("no store details for tenants", "shard" not in alice and "id" not in alice, alice)
    ivan = next(m for m in listed["items"] if m["address"] == "ivan@acme.test")
    check("ivan disabled", ivan["status"] == "disabled", ivan)
    api.error("mailboxes are read-only", 405, "method_not_allowed", "POST",
              "/v1/domains/acme.test/mailboxes", auth=jane, body={"address": "x@acme.test"})


def operator_api(api, operator):
    _, headers = api.error("no operator token", 401, "unauthorized", "GET", "/v1/admin/tenants")
    check("operator challenge", "Bearer" in headers.get("WWW-Authenticate", ""), headers)
    api.error("wrong operator token", 401, "unauthorized", "GET", "/v1/admin/tenants",
              auth="Bearer " + "x" * 40)

    tenants, _ = api.expect("tenants", 200, "GET", "/v1/admin/tenants", auth=operator)
    check("tenants", {"acme", "globex"} <= {t["id"] for t in tenants["items"]}, tenants)
    made, _ = api.expect("create tenant", 201, "POST", "/v1/admin/tenants", auth=operator,
                         body={"id": "hooli", "name": "Hooli", "limits": {"max_domains": 1,
                                                                          "max_mailboxes": 2}})
    check("tenant", made["id"] == "hooli" and made["name"] == "Hooli"
          and made["limits"]["max_domains"] == 1, made)
    api.error("tenant twice", 409, "conflict", "POST", "/v1/admin/tenants", auth=operator,
              body={"id": "hooli"})
    api.error("bad tenant id", 422, "invalid", "POST", "/v1/admin/tenants", auth=operator,
              body={"id": "a,b"}, field="id")
    api.error("unknown tenant", 404, "not_found", "GET", "/v1/admin/tenants/nobody", auth=operator)

    domain, _ = api.expect("create domain", 201, "POST", "/v1/admin/tenants/hooli/domains",
                           auth=operator, body={"name": "hooli.test", "alias_names": ["hooli-mail.test"],
                                                "catch_all": ["gavin@hooli.test"]})
    check("domain", domain["alias_names"] == ["hooli-mail.test"] and domain["tenant"] == "hooli", domain)
    api.error("domain limit", 409, "limit_reached", "POST", "/v1/admin/tenants/hooli/domains",
              auth=operator, body={"name": "hooli2.test"})
    api.error("hosted name", 409, "conflict", "POST", "/v1/admin/tenants/globex/domains",
              auth=operator, body={"name": "acme-mail.test"})

    mbase = "/v1/admin/domains/hooli.test/mailboxes"
    gavin, _ = api.expect("create mailbox", 201, "POST", mbase, auth=operator,
                          body={"address": "gavin@hooli.test", "password": "gavin-pw",
                                "quota_bytes": 1000000, "aliases": ["ceo@hooli-mail.test"],
                                "forward": ["gavin@elsewhere.example"]})
    check("mailbox", gavin["shard"] == "local" and gavin["quota_bytes"] == 1000000
          and gavin["addresses"] == ["gavin@hooli.test", "ceo@hooli-mail.test"]
          and gavin["usage"] == {"bytes": 0, "messages": 0}, gavin)
    api.error("address taken", 409, "conflict", "POST", mbase, auth=operator,
              body={"address": "gavin@hooli.test"})
    api.error("unknown shard", 422, "invalid", "POST", mbase, auth=operator,
              body={"address": "x@hooli.test", "shard": "nowhere"}, field="shard")
    api.expect("second mailbox", 201, "POST", mbase, auth=operator, body={"address": "jared@hooli.test"})
    api.error("mailbox limit", 409, "limit_reached", "POST", mbase, auth=operator,
              body={"address": "erlich@hooli.test"})
    changed, _ = api.expect("change mailbox", 200, "PATCH", mbase + "/gavin@hooli.test",
                            auth=operator, body={"quota_bytes": 2000000, "forward": None})
    check("changed", changed["quota_bytes"] == 2000000 and changed["forward"] == [], changed)

    admin, _ = api.expect("create admin", 201, "POST", "/v1/admin/tenants/hooli/admins",
                          auth=operator, body={"login": "boss", "password": "boss-pw",
                                               "mail": "boss@hooli.test"})
    check("admin", admin["role"] == "owner" and admin["managed_domains"] is None, admin)
    own, _ = api.expect("new admin logs in", 200, "GET", "/v1/domains", auth=("boss@hooli", "boss-pw"))
    check("new admin's domains", [d["name"] for d in own["items"]] == ["hooli.test"], own)
    api.expect("new admin makes an alias", 201, "POST", "/v1/domains/hooli.test/aliases",
               auth=("boss@hooli.test", "boss-pw"), body={"address": "team", "targets": ["gavin@hooli.test"]})

    gone, _ = api.expect("delete mailbox", 202, "DELETE", mbase + "/jared@hooli.test", auth=operator)
    check("deleting", gone["status"] == "deleting", gone)
    api.error("domain not empty", 409, "conflict", "DELETE", "/v1/admin/domains/hooli.test",
              auth=operator)
    api.error("tenant not empty", 409, "conflict", "DELETE", "/v1/admin/tenants/hooli",
              auth=operator)
    suspended, _ = api.expect("suspend tenant", 200, "PATCH", "/v1/admin/tenants/hooli",
                              auth=operator, body={"status": "suspended"})
    check("suspended", suspended["status"] == "suspended", suspended)
    api.error("suspended tenant's admin", 401, "unauthorized", "GET", "/v1/domains",
              auth=("boss@hooli", "boss-pw"))
    api.expect("delete admin", 204, "DELETE", "/v1/admin/tenants/hooli/admins/boss", auth=operator)
    api.error("admin gone", 404, "not_found", "GET", "/v1/admin/tenants/hooli/admins/boss",
              auth=operator)


def smtp_through_alias(mx):
    """Mail to an alias created through the API, delivered by the MX role at once."""
    subject = "via-api-alias"
    message = f"From: a@example.org\r\nTo: helpdesk@acme.test\r\nSubject: {subject}\r\n\r\nhello\r\n"
    with smtplib.SMTP("127.0.0.1", mx, timeout=20) as client:
        client.ehlo("client.example.org")
        refused = client.sendmail("a@example.org", ["helpdesk@acme.test"], message)
        check("smtp to the new alias", refused == {}, refused)
    return subject


def throttle(api):
    """Last: it leaves this client's network locked out for the window."""
    statuses = []
    for _ in range(30):
        status, parsed, headers = api.call("GET", "/v1/domains", None, ("jane@acme", "guess"))
        statuses.append(status)
        if status == 429:
            check("retry-after", int(headers.get("Retry-After", "0")) >= 1, headers)
            check("throttled body", parsed["error"]["code"] == "throttled", parsed)
            break
    check("throttled", statuses[-1] == 429 and set(statuses[:-1]) == {401}, statuses)
    status, _, _ = api.call("GET", "/v1/domains", None, JANE)
    check("even the right password waits", status == 429, status)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--operator-token", required=True)
    parser.add_argument("--mx", type=int)
    parser.add_argument("--cafile")
    parser.add_argument("--only", help="run only this step (tls checks)")
    arguments = parser.parse_args()
    api = Api(arguments.port, arguments.cafile)
    operator = "Bearer " + arguments.operator_token
    try:
        if arguments.only == "logins":
            tenant_logins(api)
            print(json.dumps({"changes": api.changes}))
            return
        tenant_logins(api)
        jane = tokens(api)
        aliases(api, jane)
        subject = smtp_through_alias(arguments.mx) if arguments.mx else None
        alias_limit(api, operator, jane)
        cross_tenant(api, jane)
        injection(api, jane)
        mailboxes(api, jane)
        operator_api(api, operator)
        throttle(api)
    except Failure as failure:
        print(f"api_session.py: {failure}", file=sys.stderr)
        sys.exit(1)
    print(json.dumps({"changes": api.changes, "subject": subject}))


if __name__ == "__main__":
    main()
