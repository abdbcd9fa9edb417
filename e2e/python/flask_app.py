"""The original Flask application (ORIGINAL.md), without its Flask-SocketIO part: Sidecast serves
the websocket next to it and trusts its session cookie (auth.policy = "flask-session").

    python flask_app.py [SECRET_KEY] [CLIENT_JS_URL]

Serves `/` (the original page) and `/login` (session['user'] = 'Gonzalo') on 127.0.0.1 at a free
port, printing `listening http://127.0.0.1:PORT` once it accepts connections. Stops on SIGTERM.
"""
import logging
import sys

from flask import Flask, render_template_string, session
from werkzeug.serving import make_server

SECRET_KEY = sys.argv[1] if len(sys.argv) > 1 else "your_secret_key"
CLIENT_JS = sys.argv[2] if len(sys.argv) > 2 else "//cdn.socket.io/4.0.0/socket.io.min.js"

app = Flask(__name__)
app.config["SECRET_KEY"] = SECRET_KEY

# The original's templates/index.html, with the client script's URL as a parameter.
INDEX = """<!DOCTYPE html>
<html lang="en">
<head>
    <meta charset="UTF-8">
    <title>Flask-SocketIO Websocket Example</title>
    <script src="{{ client_js }}"></script>
</head>
<body>
<h1>Flask-SocketIO Websocket Example</h1>
<input type="text" id="message" placeholder="type a message...">
<button onclick="sendMessage()">Send</button>
<ul id="messages"></ul>
<script>
    document.addEventListener("DOMContentLoaded", function () {
        let host = location.protocol + '//' + location.hostname + ':' + location.port
        let socket = io.connect(host, {
            path: '/ws/socket.io',
            reconnection: true,
            reconnectionDelayMax: 5000,
            reconnectionDelay: 1000
        });
        socket.on('connect', function () { console.log('Connected to ws'); });
        socket.on('connect_error', function (e) { console.log('connect_error: ' + e.message); });
        socket.on('disconnect', function () { console.log('Disconnected from ws'); });
        socket.on('message', function (msg) {
            let messageItem = document.createElement('li');
            messageItem.textContent = msg;
            document.getElementById('messages').appendChild(messageItem);
        });
        window.sendMessage = async function () {
            const payload = {"channel": "message", "body": document.getElementById('message').value};
            const response = await fetch('/api/', {
                method: 'POST',
                headers: {'Content-Type': 'application/json'},
                body: JSON.stringify(payload)
            });
            if (!response.ok) console.error('Error: ' + response.statusText);
        };
    });
</script>
</body>
</html>
"""


@app.route("/")
def index():
    return render_template_string(INDEX, client_js=CLIENT_JS)


@app.route("/login")
def login():
    session["user"] = "Gonzalo"
    return dict(name=session["user"])


if __name__ == "__main__":
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    print(f"listening http://127.0.0.1:{server.server_port}", flush=True)
    server.serve_forever()
