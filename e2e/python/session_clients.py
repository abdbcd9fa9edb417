"""Connects to Sidecast with a session cookie through one Python client's cookie handling.

Usage: session_clients.py BASE_URL SOCKETIO_PATH CLIENT

BASE_URL is the node (http://127.0.0.1:PORT); the script logs in at BASE_URL/login itself, with
the HTTP library of the client under test, then connects a python-socketio client:

  aiohttp-websocket  AsyncClient, websocket only, the cookie as a `Cookie` header (python-engineio
                     moves it into aiohttp's cookie jar, which quotes values holding `=` or `/`)
  aiohttp-polling    AsyncClient, polling only, the cookie as a `Cookie` header
  aiohttp-jar        AsyncClient, websocket only, on an aiohttp session that logged in (the cookie
                     as aiohttp's jar parsed it from Set-Cookie)
  requests-polling   Client (requests), polling only, the cookie as a `Cookie` header
  websocket-client   Client (websocket-client), websocket only, the cookie as a `Cookie` header
  requests-jar       Client on a requests session that logged in, websocket then polling

Prints "ok" and exits 0 when the node accepted the socket; prints the refusal and exits 1.
"""

import asyncio
import sys

import aiohttp
import requests
import socketio


def login_cookie(base):
    """`GET /login` with requests; the `Cookie` header value to send back, as a browser would."""
    response = requests.get(f"{base}/login", timeout=10)
    response.raise_for_status()
    # The raw Set-Cookie value (name=value), not requests' re-serialisation.
    return response.headers["Set-Cookie"].split(";", 1)[0]


async def async_client(base, path, transports, cookie=None, session=None):
    client = socketio.AsyncClient(reconnection=False, http_session=session)
    headers = {"Cookie": cookie} if cookie else {}
    await client.connect(base, socketio_path=path, headers=headers, transports=transports,
                         wait_timeout=10)
    await client.disconnect()


async def aiohttp_jar(base, path):
    # unsafe=True: aiohttp's jar otherwise ignores cookies set by an IP address host (127.0.0.1).
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        async with session.get(f"{base}/login") as response:
            response.raise_for_status()
        await async_client(base, path, ["websocket"], session=session)


def sync_client(base, path, transports, cookie=None, session=None):
    client = socketio.Client(reconnection=False, http_session=session)
    headers = {"Cookie": cookie} if cookie else {}
    client.connect(base, socketio_path=path, headers=headers, transports=transports,
                   wait_timeout=10)
    client.disconnect()


def requests_jar(base, path):
    session = requests.Session()
    session.get(f"{base}/login", timeout=10).raise_for_status()
    sync_client(base, path, ["websocket"], session=session)
    sync_client(base, path, ["polling"], session=session)


def main():
    base, path, which = sys.argv[1:4]
    try:
        if which == "aiohttp-websocket":
            asyncio.run(async_client(base, path, ["websocket"], cookie=login_cookie(base)))
        elif which == "aiohttp-polling":
            asyncio.run(async_client(base, path, ["polling"], cookie=login_cookie(base)))
        elif which == "aiohttp-jar":
            asyncio.run(aiohttp_jar(base, path))
        elif which == "requests-polling":
            sync_client(base, path, ["polling"], cookie=login_cookie(base))
        elif which == "websocket-client":
            sync_client(base, path, ["websocket"], cookie=login_cookie(base))
        elif which == "requests-jar":
            requests_jar(base, path)
        else:
            print(f"unknown client {which}")
            sys.exit(2)
    except socketio.exceptions.ConnectionError as e:
        print(f"refused: {e}")
        sys.exit(1)
    print("ok")


if __name__ == "__main__":
    main()
