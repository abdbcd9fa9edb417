"""Session cookies made by a real Flask app (the original's SECRET_KEY by default), as JSON.

Usage: flask_cookies.py [SECRET_KEY]

Prints {"name": value, ...}: the `session` cookie value Flask sets for each case:
  user        session['user'] = 'Gonzalo' (as the original's /login)
  compressed  a session large enough that itsdangerous zlib-compresses it (leading '.')
  rooms       session['user'] = 'alice', session['rooms'] = ['team:7', 'game:1']
  no_user     a session without 'user'
  number      session['user'] = 42
  expired     session['user'] = 'Gonzalo', signed 32 days ago (PERMANENT_SESSION_LIFETIME: 31)
  oversize    session['user'] plus 6 KB of incompressible data
  other_key   session['user'] = 'Gonzalo' signed with another SECRET_KEY
  tagged      session['user'] = 'Gonzalo' with Flask's tagged types (tuple, bytes) beside it
"""

import json
import os
import sys
import time

import itsdangerous.timed
from flask import Flask, session

SECRET_KEY = sys.argv[1] if len(sys.argv) > 1 else "your_secret_key"


def make_app(secret):
    app = Flask(__name__)
    app.config["SECRET_KEY"] = secret
    cases = {
        "user": lambda: session.update(user="Gonzalo"),
        "compressed": lambda: session.update(user="Gonzalo", notes=["same text"] * 200),
        "rooms": lambda: session.update(user="alice", rooms=["team:7", "game:1"]),
        "no_user": lambda: session.update(theme="dark"),
        "number": lambda: session.update(user=42),
        "expired": lambda: session.update(user="Gonzalo"),
        "oversize": lambda: session.update(user="Gonzalo", blob=os.urandom(6000).hex()),
        "tagged": lambda: session.update(user="Gonzalo", pair=(1, 2), raw=b"\x00\x01"),
    }

    def view(name):
        cases[name]()
        return "ok"

    app.add_url_rule("/<name>", view_func=view)
    return app


def cookie(app, path):
    client = app.test_client()
    response = client.get(path)
    for header in response.headers.getlist("Set-Cookie"):
        name, _, rest = header.partition("=")
        if name == "session":
            return rest.split(";", 1)[0]
    raise SystemExit(f"no session cookie for {path}")


def main():
    app = make_app(SECRET_KEY)
    out = {}
    for name in ["user", "compressed", "rooms", "no_user", "number", "oversize", "tagged"]:
        out[name] = cookie(app, f"/{name}")
    real = itsdangerous.timed.TimestampSigner.get_timestamp
    itsdangerous.timed.TimestampSigner.get_timestamp = lambda self: int(time.time()) - 32 * 86400
    try:
        out["expired"] = cookie(app, "/expired")
    finally:
        itsdangerous.timed.TimestampSigner.get_timestamp = real
    out["other_key"] = cookie(make_app("another-secret-key"), "/user")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
