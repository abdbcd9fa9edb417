/*
 * Sidecast connection state recovery for the official Socket.IO client (4.x), unchanged.
 *
 *   <script src="/sidecast-recovery.js"></script>
 *   const socket = sidecastRecovery(io(url, { path: "/ws/socket.io" }));
 *   socket.on("sidecast:recovery", (report) => { ... });  // {status, recovered}
 *
 * It opts the socket in to recovery: it sends `auth.offset` on every (re)connect ("" on the first
 * one), next to the auth the app gives (an object, or a function as socket.io allows). From then
 * on every event from Sidecast carries its offset as the last argument; this script remembers the
 * last one and sends it on the next reconnect. The server then replays what the socket missed,
 * before live events, and sends `sidecast:recovery`: `status` is "new", "recovered",
 * "trimmed" (missed more than the history keeps: refetch), "unknown" (the offset is not in the
 * history: refetch) or "unavailable" (the history could not be read: refetch).
 * `socket.sidecast.offset` is the last offset seen; `socket.sidecast.report` the last report.
 */
(function (global) {
    "use strict";

    function sidecastRecovery(socket) {
        var state = { offset: null, report: null };
        var appAuth = socket.auth;
        socket.sidecast = state;
        // Read by the client at each CONNECT; set before the connection opens (io() connects
        // asynchronously), so the first CONNECT uses it too.
        socket.auth = function (send) {
            function withOffset(auth) {
                var merged = {};
                var key;
                for (key in auth || {}) {
                    if (Object.prototype.hasOwnProperty.call(auth, key)) {
                        merged[key] = auth[key];
                    }
                }
                // "" asks for offsets without a position to recover from (a first connect).
                merged.offset = state.offset !== null ? state.offset : "";
                send(merged);
            }
            if (typeof appAuth === "function") {
                appAuth(withOffset);
            } else {
                withOffset(appAuth);
            }
        };
        socket.onAny(function (event) {
            // The disconnect reason is the one event without an offset.
            if (event === "sidecast:disconnect" || arguments.length < 2) {
                return;
            }
            var last = arguments[arguments.length - 1];
            if (typeof last === "string") {
                state.offset = last;
            }
            if (event === "sidecast:recovery") {
                state.report = arguments[1];
            }
        });
        return socket;
    }

    global.sidecastRecovery = sidecastRecovery;
    if (typeof module !== "undefined" && module.exports) {
        module.exports = sidecastRecovery;
    }
})(typeof window !== "undefined" ? window : globalThis);
