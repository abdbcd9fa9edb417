// A TCP load balancer for the tests: listens on a free loopback port and forwards each new
// connection to the first node of its list that accepts it. While node A is up, everything goes
// to A; once A stops listening (SIGTERM: it stops accepting at once), new connections, and so the
// clients' reconnects, go to B. Bytes are piped untouched, so the `Host` and `Origin` a browser
// sends are the proxy's, as behind a real proxy that forwards `Host`.
//
// One connection is one upstream: Socket.IO's long-polling sends several requests per session,
// which reach the same node only while the first node stays up (a real balancer needs sticky
// sessions for polling; websocket-only clients do not).

import { once } from 'node:events';
import net from 'node:net';

export class Proxy {
  /** `targets`: node URLs (`http://127.0.0.1:PORT/`), in order of preference. */
  constructor(targets) {
    this.targets = targets.map((t) => {
      const u = new URL(t);
      return { url: t, host: u.hostname, port: Number(u.port) };
    });
    /** Every accepted connection: `{ target }` (the node URL it went to, or null). */
    this.connections = [];
    this.open = new Set();
    this.paused = false;
    this.server = net.createServer((client) => this.accept(client));
  }

  /** Starts listening; resolves with the proxy's URL. */
  async listen() {
    this.server.listen(0, '127.0.0.1');
    await once(this.server, 'listening');
    this.url = `http://127.0.0.1:${this.server.address().port}/`;
    return this.url;
  }

  accept(client) {
    const record = { target: null };
    this.connections.push(record);
    if (this.paused) {
      // A network that is down: the connection is cut before any byte goes through.
      client.destroy();
      return;
    }
    client.pause();
    this.open.add(client);
    client.on('close', () => this.open.delete(client));
    client.on('error', () => {});
    const tryTarget = (i) => {
      if (i >= this.targets.length || client.destroyed) {
        client.destroy();
        return;
      }
      const target = this.targets[i];
      const upstream = net.connect(target.port, target.host);
      let connected = false;
      upstream.once('error', () => {
        // Refused: this node is gone (or not listening any more); the next one gets it.
        if (!connected) tryTarget(i + 1);
      });
      upstream.once('connect', () => {
        connected = true;
        if (this.paused) {
          upstream.destroy();
          client.destroy();
          return;
        }
        record.target = target.url;
        upstream.setNoDelay(true);
        client.setNoDelay(true);
        this.open.add(upstream);
        upstream.on('close', () => {
          this.open.delete(upstream);
          client.destroy();
        });
        upstream.on('error', () => {});
        client.on('close', () => upstream.destroy());
        client.pipe(upstream);
        upstream.pipe(client);
        client.resume();
      });
    };
    tryTarget(0);
  }

  /** Cuts every open connection, both ways, as a network failure would. */
  cut() {
    for (const socket of this.open) socket.destroy();
  }

  /** Cuts every connection and refuses new ones until `resume()`. */
  pause() {
    this.paused = true;
    this.cut();
  }

  resume() {
    this.paused = false;
  }

  /** Connections accepted so far that went to `url`. */
  countTo(url) {
    return this.connections.filter((c) => c.target === url).length;
  }

  async close() {
    this.pause();
    await new Promise((resolve) => this.server.close(resolve));
  }
}

/** Starts a proxy in front of `targets` (node URLs, first preferred). */
export async function startProxy(targets) {
  const proxy = new Proxy(targets);
  await proxy.listen();
  return proxy;
}
