// A websocket to one of the studio's live streams that reconnects after a drop.
//
// Reconnects back off exponentially from 0.5 s up to 30 s, with jitter so that many pages do not
// reconnect at once. A close with 4403 (may not see it) or 4404 (gone) is final.
window.StudioLive = (function () {
  "use strict";

  const CLOSE_FORBIDDEN = 4403;
  const CLOSE_NOT_FOUND = 4404;

  // `path` is a function, so that each reconnect can ask for what came after the last message.
  // Handlers: onOpen(reconnected), onMessage(message), onRefused(code), onRetry(); and
  // shouldRetry() returns false once the page needs no more messages.
  function connect(path, handlers) {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    let socket = null;
    let retries = 0;
    let opened = false;

    function open() {
      socket = new WebSocket(`${scheme}://${location.host}${path()}`);
      socket.onopen = () => {
        retries = 0;
        if (handlers.onOpen) handlers.onOpen(opened);
        opened = true;
      };
      socket.onmessage = (event) => handlers.onMessage(JSON.parse(event.data));
      socket.onclose = (event) => {
        socket = null;
        if (event.code === CLOSE_FORBIDDEN || event.code === CLOSE_NOT_FOUND) {
          if (handlers.onRefused) handlers.onRefused(event.code);
          return;
        }
        if (handlers.shouldRetry && !handlers.shouldRetry()) return;
        const delay = Math.min(30000, 500 * 2 ** retries) * (0.75 + Math.random() / 2);
        retries += 1;
        if (handlers.onRetry) handlers.onRetry();
        setTimeout(open, delay);
      };
    }

    open();
    return {
      get connected() { return socket !== null && socket.readyState === WebSocket.OPEN; },
      // Close the current socket; the stream opens a new one as after any drop.
      reopen(code) { if (socket && socket.readyState === WebSocket.OPEN) socket.close(code); },
    };
  }

  return { connect, CLOSE_FORBIDDEN, CLOSE_NOT_FOUND };
})();
