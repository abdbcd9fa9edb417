"""Runs python-socketio's three clients against a Sidecast node as apps written for
Flask-SocketIO use them, and reports what each one saw. e2e/test/unchanged-clients.test.js
drives it and asserts on the report.

Usage: unchanged_clients.py BASE_URL SOCKETIO_PATH MODE

BASE_URL is the node (http://127.0.0.1:PORT). The script logs in at BASE_URL/login with
requests and publishes with `POST /api/` and that session cookie, as the original app's page
does. It connects, all at once, every combination of

  client     socketio.Client, socketio.AsyncClient, socketio.SimpleClient
  transport  websocket only, the default (polling, then upgrade)
  role       natural: the handler an app writes, `@sio.on('message') def on_message(data)`
             (SimpleClient: `event, data = sio.receive()`), plus a catch-all for anything
             else; catch-all: only `@sio.on('*') def any(event, *args)` (SimpleClient: the
             list `receive()` returns), which sees the exact argument list

MODE unchanged: no `auth`; publishes "hi", an object and "end" and waits for "end" everywhere.

MODE opted-in: the clients opt in to recovery as an app would, with `auth={"offset": ""}` and
handlers that take the offset as their last argument (`on_message(data, offset)`,
`event, data, offset = sio.receive()`). Waits for every report (`sidecast:recovery`), publishes
"one", waits for it, disconnects them all, publishes "two" and "three", reconnects each with
`auth={"offset": <the last offset it saw>}`, waits for "three", publishes an object and waits
for it.

Prints one JSON object: `clients` (per client: `label`, `received` — each item the event name
and its arguments, as the client's handlers got them —, `errors` — exceptions raised where the
app would see them —, `offsets_sent`), `published` (each POST's body, status and answer) and
`logged` (every ERROR log record and every exception that ended a thread). A handler that
raises never reaches the app: python-socketio 5.18.1 runs Client handlers in a thread of their
own, which the TypeError of an extra argument ends (threading.excepthook), and AsyncClient
handlers in a task whose exception asyncio logs ("Task exception was never retrieved"); other
paths log "<event> handler error". Exits 0 whenever it could report.
"""

import asyncio
import json
import logging
import sys
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor

import requests
import socketio

# How long one phase (connects, deliveries) may take before the client is reported as it is:
# the opted-in run has four such waits, and e2e/run gives a test 90 s.
DEADLINE = 12.0

OBJECT = {"text": "héllo ✓", "n": 42, "ok": True, "none": None, "list": [1, "two", {"three": 3}]}

TRANSPORTS = {"websocket": ["websocket"], "default": None}


class Captured(logging.Handler):
    """Keeps every ERROR record: where a raising handler's exception ends up."""

    def __init__(self):
        super().__init__(level=logging.ERROR)
        self.records = []

    def emit(self, record):
        text = f"{record.name}: {record.getMessage()}"
        if record.exc_info:
            text += "\n" + "".join(traceback.format_exception(*record.exc_info))
        self.records.append(text)


class Probe:
    """One client under test: what its handlers received, in order, and what raised."""

    def __init__(self, kind, transport, role, opted_in, base, path, cookie):
        self.label = f"{kind} {transport} {role}"
        self.transports = TRANSPORTS[transport]
        self.role = role
        self.opted_in = opted_in
        self.base = base
        self.path = path
        self.cookie = cookie
        self.received = []
        self.errors = []
        self.offsets_sent = []
        self.cond = threading.Condition()

    def keep(self, item):
        with self.cond:
            self.received.append(item)
            self.cond.notify_all()

    def failed(self, where, error):
        with self.cond:
            self.errors.append(f"{where}: {type(error).__name__}: {error}")
            self.cond.notify_all()

    def last_offset(self):
        """The last argument of the last item: the offset an opted-in app keeps."""
        with self.cond:
            return self.received[-1][-1] if self.received else None

    def connect_kwargs(self, auth):
        self.offsets_sent.append(None if auth is None else auth.get("offset"))
        return {
            "headers": {"Cookie": self.cookie},
            "transports": self.transports,
            "socketio_path": self.path,
            "auth": auth,
            "wait_timeout": 10,
        }

    def wait_for(self, predicate):
        """Until `predicate(received)` holds or the deadline passes; reported either way."""
        with self.cond:
            self.cond.wait_for(lambda: predicate(self.received), timeout=DEADLINE)

    def report(self):
        return {"label": self.label, "received": self.received, "errors": self.errors,
                "offsets_sent": self.offsets_sent}


def register(probe, sio, coroutine):
    """The handlers of `probe.role` on a Client or AsyncClient, as an app writes them."""

    def wrap(fn):
        if not coroutine:
            return fn

        # An app's `async def on_message(data)` called with two arguments raises the same
        # TypeError, on the same path (the handler's task fails).
        async def handler(*args):
            return fn(*args)

        return handler

    if probe.role == "natural":
        if probe.opted_in:
            def on_message(data, offset):
                probe.keep(["message", data, offset])

            def on_recovery(report, offset):
                probe.keep(["sidecast:recovery", report, offset])

            sio.on("sidecast:recovery", wrap(on_recovery))
        else:
            def on_message(data):
                probe.keep(["message", data])
        sio.on("message", wrap(on_message))

    # The natural role also catches anything else (an unexpected event shows up); the
    # catch-all role sees everything, with the exact argument list.
    def any_event(event, *args):
        probe.keep([event, *args])

    sio.on("*", wrap(any_event))


class ClientProbe(Probe):
    """socketio.Client (threads; websocket-client for websocket, requests for polling)."""

    def __init__(self, *args):
        super().__init__("Client", *args)
        self.sio = socketio.Client(reconnection=False)
        register(self, self.sio, coroutine=False)

    def connect(self, auth):
        self.sio.connect(self.base, **self.connect_kwargs(auth))

    def disconnect(self):
        self.sio.disconnect()


class AsyncProbe(Probe):
    """socketio.AsyncClient (aiohttp), on an event loop of its own."""

    def __init__(self, *args):
        super().__init__("AsyncClient", *args)
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.sio = socketio.AsyncClient(reconnection=False)
        register(self, self.sio, coroutine=True)

    def run(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(DEADLINE)

    def connect(self, auth):
        self.run(self.sio.connect(self.base, **self.connect_kwargs(auth)))

    def disconnect(self):
        self.run(self.sio.disconnect())


class SimpleProbe(Probe):
    """socketio.SimpleClient: the app pulls events with receive()."""

    def __init__(self, *args):
        super().__init__("SimpleClient", *args)
        self.sio = None
        self.stop = threading.Event()
        self.reader = None

    def connect(self, auth):
        self.sio = socketio.SimpleClient()
        self.sio.connect(self.base, **self.connect_kwargs(auth))
        self.stop.clear()
        self.reader = threading.Thread(target=self.read, args=(self.sio,), daemon=True)
        self.reader.start()

    def read(self, sio):
        while not self.stop.is_set():
            try:
                item = sio.receive(timeout=0.2)
            except socketio.exceptions.TimeoutError:
                continue
            except socketio.exceptions.DisconnectedError:
                return
            if self.role == "catch-all":
                self.keep(item)
                continue
            # What an app writes: as many names as the arguments it expects.
            try:
                if self.opted_in:
                    event, data, offset = item
                    self.keep([event, data, offset])
                else:
                    event, data = item
                    self.keep([event, data])
            except ValueError as e:
                self.failed(f"unpacking {item!r}", e)

    def disconnect(self):
        self.stop.set()
        self.reader.join(DEADLINE)
        self.sio.disconnect()


def login(base):
    """`GET /login` with requests; the `Cookie` header value to send back."""
    response = requests.get(f"{base}/login", timeout=10)
    response.raise_for_status()
    return response.headers["Set-Cookie"].split(";", 1)[0]


def publish(base, cookie, body, published):
    """`POST /api/` as the original page does; the answer is kept for the report."""
    payload = {"channel": "message", "body": body}
    response = requests.post(f"{base}/api/", json=payload, headers={"Cookie": cookie},
                             timeout=10)
    try:
        answer = response.json()
    except ValueError:
        answer = response.text
    published.append({"body": payload, "status": response.status_code, "answer": answer})


def each(probes, what, action):
    """Runs `action(probe)` for every probe at once; an exception is that probe's error."""

    def run(probe):
        try:
            action(probe)
        except Exception as e:  # reported, asserted on by the test
            probe.failed(what, e)

    with ThreadPoolExecutor(len(probes)) as pool:
        list(pool.map(run, probes))


def has_data(data):
    """Predicate: an item whose first argument is `data` was received."""
    return lambda received: any(len(item) > 1 and item[1] == data for item in received)


def has_event(event, count):
    """Predicate: at least `count` items named `event` were received."""
    return lambda received: sum(1 for item in received if item[0] == event) >= count


def unchanged(probes, base, cookie, published):
    each(probes, "connect", lambda probe: probe.connect(None))
    for body in ["hi", OBJECT, "end"]:
        publish(base, cookie, body, published)
    each(probes, "wait", lambda probe: probe.wait_for(has_data("end")))


def opted_in(probes, base, cookie, published):
    each(probes, "connect", lambda probe: probe.connect({"offset": ""}))
    each(probes, "wait", lambda probe: probe.wait_for(has_event("sidecast:recovery", 1)))
    publish(base, cookie, "one", published)
    each(probes, "wait", lambda probe: probe.wait_for(has_data("one")))
    each(probes, "disconnect", lambda probe: probe.disconnect())
    for body in ["two", "three"]:
        publish(base, cookie, body, published)
    each(probes, "reconnect", lambda probe: probe.connect({"offset": probe.last_offset()}))
    each(probes, "wait", lambda probe: probe.wait_for(has_event("sidecast:recovery", 2)))
    publish(base, cookie, OBJECT, published)
    each(probes, "wait", lambda probe: probe.wait_for(has_data(OBJECT)))


def main():
    base, path, mode = sys.argv[1:4]
    if mode not in ("unchanged", "opted-in"):
        print(f"unknown mode {mode}", file=sys.stderr)
        sys.exit(2)
    captured = Captured()
    logging.getLogger().addHandler(captured)
    threading.excepthook = lambda args: captured.records.append(
        "thread: " + "".join(traceback.format_exception(args.exc_type, args.exc_value,
                                                       args.exc_traceback)))
    cookie = login(base)
    probes = [
        cls(transport, role, mode == "opted-in", base, path, cookie)
        for cls in (ClientProbe, AsyncProbe, SimpleProbe)
        for transport in TRANSPORTS
        for role in ("natural", "catch-all")
    ]
    published = []
    started = time.monotonic()
    (unchanged if mode == "unchanged" else opted_in)(probes, base, cookie, published)
    each(probes, "disconnect", lambda probe: probe.disconnect())
    print(json.dumps({
        "clients": [probe.report() for probe in probes],
        "published": published,
        "logged": captured.records,
        "seconds": round(time.monotonic() - started, 2),
    }))


if __name__ == "__main__":
    main()
