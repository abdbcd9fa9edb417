// A publisher of numbered events for the "nothing lost" checks: it posts event 0, 1, 2, ... one
// after the other through `POST /api/` while it runs, and keeps which were acknowledged (200).
// Posting one at a time makes the order of the acknowledgements the order of the history.

import { publish, waitUntil } from './harness.js';

export class Publisher {
  /**
   * `urls`: the nodes (or load balancer) to post to, in turn; `body(n)`: the body of event `n`
   * on `channel` (the event name).
   */
  constructor(urls, { cookie, channel = 'count', body = (n) => ({ n }), deadline = 20_000, interval = 5 } = {}) {
    this.urls = urls;
    this.cookie = cookie;
    this.channel = channel;
    this.body = body;
    this.deadline = deadline;
    this.next = 0;
    /** The numbers of the events whose POST answered 200, in order. */
    this.acked = [];
    /** The events whose POST answered something else, or nothing: `"n: why"`. */
    this.failed = [];
    this.stopped = false;
    /** The pause after each POST, in ms: 5 (about 200 events/s at most) unless given. */
    this.interval = interval;
    /** Every POST: `{n, url, status, retryAfter, sent, answered}` (`status` 0: no answer). */
    this.attempts = [];
  }

  start() {
    this.loop = (async () => {
      while (!this.stopped) {
        const n = this.next++;
        const url = this.urls[n % this.urls.length];
        const attempt = { n, url, status: 0, retryAfter: null, sent: Date.now(), answered: null };
        this.attempts.push(attempt);
        try {
          const res = await publish(url, { channel: this.channel, body: this.body(n) }, { cookie: this.cookie });
          attempt.status = res.status;
          attempt.retryAfter = res.retryAfter;
          if (res.status === 200) this.acked.push(n);
          else this.failed.push(`${n}: ${res.status} ${JSON.stringify(res.body)}`);
        } catch (e) {
          // No answer (the node went away mid-request): not acknowledged, may or may not arrive.
          this.failed.push(`${n}: ${e.cause?.code ?? e.message}`);
        }
        attempt.answered = Date.now();
        // Pacing, not waiting for a condition: a load that leaves the nodes some of the machine's
        // cores.
        await new Promise((r) => setTimeout(r, this.interval));
      }
    })();
    return this;
  }

  /** Waits until `count` more events are acknowledged. */
  async acknowledged(count) {
    const target = this.acked.length + count;
    await waitUntil(() => this.acked.length >= target, {
      ms: this.deadline,
      what: `${count} more acknowledged events (${this.acked.length} so far, failures ${JSON.stringify(this.failed.slice(-3))})`,
    });
  }

  /** Stops posting; resolves once the last POST has answered. */
  async stop() {
    this.stopped = true;
    await this.loop;
  }
}
