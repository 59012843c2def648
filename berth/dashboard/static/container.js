/* Berth dashboard, container detail page: the terminal (xterm.js on the exec websocket the
   stock client uses) and logs follow. No inline scripts: see the CSP. */
(function () {
  "use strict";

  function post(url, csrf, fields) {
    var body = new URLSearchParams(fields);
    body.set("csrf", csrf);
    return fetch(url, { method: "POST", body: body, credentials: "same-origin" }).then(function (r) {
      return r.json().catch(function () { return null; }).then(function (data) {
        if (!r.ok) {
          throw new Error((data && data.error) || ("The dashboard answered " + r.status + ": reload the page."));
        }
        return data;
      });
    });
  }

  // ---- the terminal -------------------------------------------------------------------
  function setupTerminal() {
    var card = document.getElementById("terminal-card");
    if (!card || typeof window.Terminal !== "function") { return; }
    var form = document.getElementById("terminal-open");
    var closeButton = document.getElementById("terminal-close");
    var startButton = document.getElementById("terminal-start");
    var box = document.getElementById("terminal");
    var state = document.getElementById("terminal-state");
    var url = card.getAttribute("data-url");
    var csrf = card.getAttribute("data-csrf");
    var term = null, fit = null, socket = null, execId = null, resizeTimer = null;
    var encoder = new TextEncoder();

    function say(text, level) {
      state.textContent = text;
      state.className = "stream-state " + (level === "error" ? "error-text" : "muted");
    }
    function mark(value) {
      card.setAttribute("data-state", value);
      var open = value === "connecting" || value === "connected";
      startButton.disabled = open;
      closeButton.hidden = !open;
    }
    function sendSize() {
      if (!execId || !term) { return; }
      var cols = term.cols, rows = term.rows;
      post(url + "/resize", csrf, { exec_id: execId, cols: cols, rows: rows })
        .then(function () { card.setAttribute("data-size", cols + "x" + rows); })
        .catch(function (err) { say(err.message, "error"); });
    }
    function refit() {
      if (!fit || box.hidden) { return; }
      fit.fit();
    }
    function stop() {
      if (socket) { socket.close(1000); }
    }

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      if (socket) { return; }
      var command = form.elements.command.value.trim() || "sh";
      box.hidden = false;
      if (!term) {
        term = new window.Terminal({ cursorBlink: true, fontSize: 14, scrollback: 5000,
          fontFamily: 'ui-monospace, "DejaVu Sans Mono", monospace' });
        fit = new window.FitAddon.FitAddon();
        term.loadAddon(fit);
        term.open(box);
        term.onData(function (data) {
          if (socket && socket.readyState === WebSocket.OPEN) { socket.send(encoder.encode(data)); }
        });
        term.onResize(function () {
          window.clearTimeout(resizeTimer);
          resizeTimer = window.setTimeout(sendSize, 150);
        });
        window.addEventListener("resize", refit);
      } else {
        term.reset();
      }
      refit();
      mark("connecting");
      say("Starting " + command + "…");
      post(url, csrf, { command: command }).then(function (session) {
        execId = session.exec_id;
        var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
        socket = new WebSocket(scheme + window.location.host + session.path, ["binary"]);
        socket.binaryType = "arraybuffer";
        socket.onopen = function () {
          mark("connected");
          sendSize();
          say("Connected: " + session.command + " in a terminal of " + term.cols + "×" + term.rows + ".");
          term.focus();
        };
        socket.onmessage = function (event) {
          term.write(typeof event.data === "string" ? event.data : new Uint8Array(event.data));
        };
        socket.onclose = function (event) {
          var opened = card.getAttribute("data-state") === "connected";
          socket = null;
          execId = null;
          mark("closed");
          if (opened) {
            term.write("\r\n\x1b[2m[session ended]\x1b[0m\r\n");
            say(event.code === 1001 ? "The session was idle too long and ended: open it again."
              : "The session ended. Open it again to start a new one.");
          } else {
            say("The session could not start (the container must be Running): check its status, then try again.", "error");
          }
        };
      }).catch(function (err) {
        mark("closed");
        say(err.message, "error");
      });
    });
    closeButton.addEventListener("click", stop);
    window.addEventListener("pagehide", stop);
  }

  // ---- logs follow --------------------------------------------------------------------
  function setupFollow() {
    var button = document.getElementById("follow-logs");
    var logs = document.getElementById("logs");
    var mode = document.getElementById("logs-mode");
    var refresh = document.getElementById("refresh-logs");
    if (!button || !logs) { return; }
    var controller = null;

    function stop() {
      if (controller) { controller.abort(); controller = null; }
      button.textContent = "Follow";
      button.setAttribute("aria-pressed", "false");
      mode.textContent = "last lines";
    }
    function note(text) {
      var p = document.createElement("p");
      p.className = "muted stream-state";
      p.id = "follow-state";
      p.textContent = text;
      logs.appendChild(p);
    }
    function start() {
      controller = new AbortController();
      var mine = controller;
      button.textContent = "Stop following";
      button.setAttribute("aria-pressed", "true");
      mode.textContent = "following";
      var pre = document.createElement("pre");
      pre.className = "logs";
      pre.id = "logs-stream";
      logs.replaceChildren(pre);
      var decoder = new TextDecoder();
      fetch(button.getAttribute("data-url"), { credentials: "same-origin", signal: mine.signal })
        .then(function (response) {
          if (!response.ok) {
            return response.text().then(function (text) { throw new Error(text); });
          }
          var reader = response.body.getReader();
          function pump() {
            return reader.read().then(function (part) {
              if (part.done) { return; }
              var atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
              pre.appendChild(document.createTextNode(decoder.decode(part.value, { stream: true })));
              if (atBottom) { pre.scrollTop = pre.scrollHeight; }
              return pump();
            });
          }
          return pump();
        })
        .then(function () {
          if (controller === mine) {
            stop();
            note("The output ended (the container stopped). Follow again to resume.");
          }
        })
        .catch(function (err) {
          if (controller === mine) {
            stop();
            note(err.name === "AbortError" ? "" : err.message.trim());
          }
        });
    }
    button.addEventListener("click", function () {
      if (controller) { stop(); } else { start(); }
    });
    if (refresh) { refresh.addEventListener("click", stop); }
    window.addEventListener("pagehide", stop);
  }

  function ready() {
    setupTerminal();
    setupFollow();
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", ready);
  } else {
    ready();
  }
})();
