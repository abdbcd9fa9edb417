"""Emits one event the way existing programs do, through Flask-SocketIO's write-only emitter.

    python emit.py QUEUE_URL EVENT JSON_DATA [--to ROOM] [--channel CHANNEL] [--namespace NS]

This is the original application's external script — `SocketIO(message_queue=URL).emit(EVENT,
DATA)` — with its options: Redis (`redis://`) or, through kombu, AMQP (`amqp://`).
"""
import argparse
import json

from flask_socketio import SocketIO

parser = argparse.ArgumentParser()
parser.add_argument('url')
parser.add_argument('event')
parser.add_argument('data', type=json.loads)
parser.add_argument('--to')
parser.add_argument('--channel', default='flask-socketio')
parser.add_argument('--namespace', default='/')
args = parser.parse_args()

SocketIO(message_queue=args.url, channel=args.channel).emit(
    args.event, args.data, to=args.to, namespace=args.namespace)
