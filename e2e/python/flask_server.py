"""A Flask-SocketIO server on a message queue, like the application Sidecast replaces.

    python flask_server.py QUEUE_URL [CHANNEL]

Serves Socket.IO on 127.0.0.1 at a free port, printing `listening http://127.0.0.1:PORT` once it
accepts connections. Its clients receive what is emitted through the queue (Redis or, with an
amqp:// URL, kombu), such as `sidecast emit --format python-socketio`. A client joins the room
given in its `room` query parameter. Stops on SIGTERM.
"""
import logging
import sys

from flask import Flask, request
from flask_socketio import SocketIO, join_room
from werkzeug.serving import make_server

url = sys.argv[1]
channel = sys.argv[2] if len(sys.argv) > 2 else 'flask-socketio'

app = Flask(__name__)
socketio = SocketIO(app, message_queue=url, channel=channel, async_mode='threading')


@socketio.on('connect')
def on_connect():
    room = request.args.get('room')
    if room:
        join_room(room)


# One line per HTTP request is noise in test output; errors still show.
logging.getLogger('werkzeug').setLevel(logging.WARNING)

# Port 0: the system picks a free port, printed for the test to read.
server = make_server('127.0.0.1', 0, app, threaded=True)
print(f'listening http://127.0.0.1:{server.server_port}', flush=True)
server.serve_forever()
