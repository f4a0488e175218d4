/* Visitor chat demo: the public profile, a conversation kept in localStorage,
   messages posted over REST and the reply streamed over Server-Sent Events.
   Plain JavaScript, no build step. Text from the server is only ever inserted
   as text nodes (never innerHTML), and links only when they are https. */
(function () {
  "use strict";

  var app = document.getElementById("chat-app");
  var handle = app.dataset.handle;
  var API = app.dataset.api;
  var STORE_KEY = "assistant-chat:" + handle;
  var MAX_BACKOFF_MS = 15000;

  var els = {
    name: document.getElementById("profile-name"),
    subtitle: document.getElementById("profile-subtitle"),
    description: document.getElementById("profile-description"),
    image: document.getElementById("profile-image"),
    services: document.getElementById("services"),
    log: document.getElementById("chat-log"),
    notice: document.getElementById("notice"),
    typing: document.getElementById("typing"),
    form: document.getElementById("chat-form"),
    input: document.getElementById("chat-input"),
    send: document.getElementById("chat-send"),
    nameRow: document.getElementById("name-row"),
    visitorName: document.getElementById("visitor-name"),
    newChat: document.getElementById("new-chat"),
    teamBanner: document.getElementById("team-banner"),
  };

  var session = loadSession(); // {conversationId, visitorToken, lastEventId}
  var source = null;
  var reconnectTimer = null;
  var backoffMs = 1000;
  var failuresWithoutOpen = 0;
  var bubblesByMessage = new Map();
  var bubblesByRun = new Map();
  var activeRuns = new Set();

  // --- storage -----------------------------------------------------------------
  function loadSession() {
    try {
      var raw = window.localStorage.getItem(STORE_KEY);
      var parsed = raw ? JSON.parse(raw) : null;
      return parsed && parsed.conversationId && parsed.visitorToken ? parsed : null;
    } catch (e) {
      return null;
    }
  }
  function saveSession() {
    try {
      if (session) window.localStorage.setItem(STORE_KEY, JSON.stringify(session));
      else window.localStorage.removeItem(STORE_KEY);
    } catch (e) { /* private mode: the chat still works for this page view */ }
  }

  // --- helpers -----------------------------------------------------------------
  function uuid() {
    if (window.crypto && typeof window.crypto.randomUUID === "function") return window.crypto.randomUUID();
    var b = window.crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    var h = Array.prototype.map.call(b, function (x) { return (x + 0x100).toString(16).slice(1); }).join("");
    return h.slice(0, 8) + "-" + h.slice(8, 12) + "-" + h.slice(12, 16) + "-" + h.slice(16, 20) + "-" + h.slice(20);
  }

  // Redis stream ids are "<ms>-<seq>": compare numerically, part by part.
  function compareIds(a, b) {
    var pa = String(a).split("-"), pb = String(b).split("-");
    for (var i = 0; i < 2; i++) {
      var x = Number(pa[i] || 0), y = Number(pb[i] || 0);
      if (x !== y) return x < y ? -1 : 1;
    }
    return 0;
  }

  function isHttpsUrl(value) {
    try { return new URL(value).protocol === "https:"; } catch (e) { return false; }
  }

  // Images: https anywhere, or this site's own /media/ files (local storage over http).
  function isShownImageUrl(value) {
    try {
      var url = new URL(value, window.location.href);
      return url.protocol === "https:" || url.origin === window.location.origin;
    } catch (e) { return false; }
  }

  function showNotice(text) {
    els.notice.textContent = text;
    els.notice.hidden = !text;
  }

  function api(path, options) {
    options = options || {};
    var headers = { Accept: "application/json" };
    if (options.body !== undefined) headers["Content-Type"] = "application/json";
    if (session) headers["X-Visitor-Token"] = session.visitorToken;
    return fetch(API + path, {
      method: options.method || "GET",
      headers: headers,
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (body) {
        return { ok: response.ok, status: response.status, body: body, headers: response.headers };
      });
    });
  }

  // --- profile -----------------------------------------------------------------
  function formatPrice(service) {
    if (service.starting_price === null || service.starting_price === undefined) return "";
    try {
      return "from " + new Intl.NumberFormat(undefined, {
        style: "currency", currency: service.currency || "USD",
      }).format(Number(service.starting_price));
    } catch (e) {
      return "from " + service.starting_price + " " + (service.currency || "");
    }
  }

  function renderProfile(profile) {
    els.name.textContent = profile.public_name || handle;
    document.title = "Chat with " + (profile.public_name || handle);
    els.subtitle.textContent = profile.subtitle || "";
    els.description.textContent = profile.description || "";
    if (profile.profile_image_url && isShownImageUrl(profile.profile_image_url)) {
      els.image.src = profile.profile_image_url;
      els.image.hidden = false;
    }
    els.services.textContent = "";
    (profile.services || []).forEach(function (service) {
      var li = document.createElement("li");
      li.className = "service";
      var name = document.createElement("strong");
      name.textContent = service.name;
      li.appendChild(name);
      var facts = [formatPrice(service), service.duration_minutes ? service.duration_minutes + " min" : ""]
        .filter(Boolean).join(" · ");
      if (facts) {
        var meta = document.createElement("span");
        meta.className = "service-meta";
        meta.textContent = facts;
        li.appendChild(meta);
      }
      if (service.description) {
        var d = document.createElement("p");
        d.textContent = service.description;
        li.appendChild(d);
      }
      els.services.appendChild(li);
    });
  }

  function loadProfile() {
    return api("/workspaces/" + encodeURIComponent(handle)).then(function (r) {
      if (r.ok) renderProfile(r.body);
      else showNotice("This business is not available right now.");
    }).catch(function () { showNotice("Could not reach the server. Check your connection."); });
  }

  // --- messages ----------------------------------------------------------------
  var ROLE_LABELS = { user: "You", assistant: "Assistant", owner: "Team" };

  function scrollToEnd() { els.log.scrollTop = els.log.scrollHeight; }

  function setRichText(el, text) {
    el.textContent = "";
    var pattern = /https:\/\/[^\s<>"]+/g, last = 0, match;
    while ((match = pattern.exec(text)) !== null) {
      var url = match[0].replace(/[.,!?;:)\]]+$/, "");
      el.appendChild(document.createTextNode(text.slice(last, match.index)));
      var a = document.createElement("a");
      a.href = url; a.textContent = url; a.target = "_blank"; a.rel = "noopener noreferrer";
      el.appendChild(a);
      last = match.index + url.length;
      pattern.lastIndex = last;
    }
    el.appendChild(document.createTextNode(text.slice(last)));
  }

  function addBubble(role, text, state) {
    var li = document.createElement("li");
    li.className = "msg " + role;
    li.dataset.role = role;
    li.dataset.state = state || "done";
    var who = document.createElement("span");
    who.className = "who";
    who.textContent = ROLE_LABELS[role] || role;
    var body = document.createElement("div");
    body.className = "text";
    if (state === "streaming") body.textContent = text || "";
    else setRichText(body, text || "");
    var extras = document.createElement("div");
    extras.className = "extras";
    li.appendChild(who); li.appendChild(body); li.appendChild(extras);
    els.log.appendChild(li);
    scrollToEnd();
    return li;
  }

  function addBadge(bubble, text, kind) {
    var badge = document.createElement("span");
    badge.className = "badge " + (kind || "");
    badge.textContent = text;
    bubble.querySelector(".extras").appendChild(badge);
  }

  function addBookingLink(bubble, link) {
    if (bubble.querySelector(".book-button")) return;
    var a = document.createElement("a");
    a.className = "book-button";
    a.href = link; a.target = "_blank"; a.rel = "noopener noreferrer";
    a.textContent = "Book now";
    a.dataset.testid = "booking-link";
    a.setAttribute("data-testid", "booking-link");
    bubble.querySelector(".extras").appendChild(a);
    scrollToEnd();
  }

  function assistantBubble(runId, messageId) {
    var bubble = (messageId && bubblesByMessage.get(messageId)) || (runId && bubblesByRun.get(runId));
    if (!bubble) bubble = addBubble("assistant", "", "streaming");
    if (messageId) { bubble.dataset.messageId = messageId; bubblesByMessage.set(messageId, bubble); }
    if (runId) { bubble.dataset.runId = runId; bubblesByRun.set(runId, bubble); }
    return bubble;
  }

  function updateTyping() { els.typing.hidden = activeRuns.size === 0; }

  // `paused`: a person from the business has taken the conversation over.
  function showAgentMode(mode) {
    var paused = mode === "paused";
    els.teamBanner.hidden = !paused;
    app.dataset.agentMode = paused ? "paused" : "auto";
    if (paused) showNotice("");
  }

  function resetLog() {
    els.log.textContent = "";
    bubblesByMessage.clear(); bubblesByRun.clear(); activeRuns.clear();
    updateTyping();
  }

  function loadHistory() {
    if (!session) return Promise.resolve(false);
    var collected = [];
    function page(since, round) {
      var q = "?limit=200" + (since ? "&since=" + encodeURIComponent(since) : "");
      return api("/conversations/" + session.conversationId + "/messages" + q).then(function (r) {
        if (r.status === 401 || r.status === 404) return false;
        if (!r.ok) throw new Error("history " + r.status);
        collected = collected.concat(r.body.messages || []);
        if (r.body.agent_mode) showAgentMode(r.body.agent_mode);
        if ((r.body.messages || []).length === 200 && r.body.next_since && round < 50) {
          return page(r.body.next_since, round + 1);
        }
        return true;
      });
    }
    return page(null, 0).then(function (found) {
      if (!found) { forgetConversation("Your previous conversation has ended. Say hello to start a new one."); return false; }
      resetLog();
      collected.forEach(function (m) {
        var bubble = addBubble(m.role, m.content, "done");
        bubble.dataset.messageId = m.id;
        bubblesByMessage.set(m.id, bubble);
        if (m.role === "assistant") {
          if (m.run_id) bubblesByRun.set(m.run_id, bubble);
          if (m.meta && m.meta.degraded) addBadge(bubble, "limited reply", "degraded");
        }
      });
      return true;
    });
  }

  // --- the event stream ----------------------------------------------------------
  var HANDLERS = {
    message_start: function (d) {
      activeRuns.add(d.run_id);
      assistantBubble(d.run_id, d.message_id);
    },
    delta: function (d) {
      var bubble = assistantBubble(d.run_id, d.message_id);
      if (bubble.dataset.state !== "streaming") return;
      bubble.querySelector(".text").appendChild(document.createTextNode(d.text_chunk || ""));
      scrollToEnd();
    },
    tool_result: function (d) {
      if (d.tool !== "get_booking_link" || d.status !== "ok" || !d.data) return;
      if (d.data.available && isHttpsUrl(d.data.link)) addBookingLink(assistantBubble(d.run_id, null), d.data.link);
    },
    message_end: function (d) {
      var bubble = assistantBubble(d.run_id, d.message_id);
      var wasStreaming = bubble.dataset.state === "streaming";
      bubble.dataset.state = "done";
      setRichText(bubble.querySelector(".text"), d.full_text || "");
      if (wasStreaming && d.degraded) addBadge(bubble, "limited reply", "degraded");
      if (wasStreaming && d.status && d.status !== "completed") addBadge(bubble, "reply " + d.status, "stopped");
      activeRuns.delete(d.run_id);
    },
    message: function (d) {
      // A message written by the business itself (not a run's reply).
      if (bubblesByMessage.has(d.message_id)) return;
      var bubble = addBubble(d.role, d.content || "", "done");
      bubble.dataset.messageId = d.message_id;
      bubblesByMessage.set(d.message_id, bubble);
      scrollToEnd();
    },
    agent_mode: function (d) { showAgentMode(d.mode); },
    handoff: function () {
      if (els.teamBanner.hidden) showNotice("We've asked someone from the team to join this chat.");
    },
    error: function (d) {
      var bubble = assistantBubble(d.run_id, null);
      addBadge(bubble, "The assistant ran into a problem" + (d.message ? ": " + d.message : "."), "error");
    },
  };

  function onStreamEvent(name, event) {
    var id = event.lastEventId;
    if (id && session.lastEventId && compareIds(id, session.lastEventId) <= 0) return; // replayed
    var data;
    try { data = JSON.parse(event.data); } catch (e) { return; }
    HANDLERS[name](data);
    updateTyping();
    if (id) { session.lastEventId = id; saveSession(); }
  }

  function onResync() {
    closeStream();
    session.lastEventId = null;
    saveSession();
    loadHistory().then(function (ok) { if (ok) openStream(null); });
  }

  function closeStream() {
    if (reconnectTimer) { clearTimeout(reconnectTimer); reconnectTimer = null; }
    if (source) { source.close(); source = null; }
  }

  function openStream(cursor) {
    closeStream();
    if (!session) return;
    var url = API + "/conversations/" + session.conversationId + "/stream?visitor_token=" +
      encodeURIComponent(session.visitorToken) + (cursor ? "&last_event_id=" + encodeURIComponent(cursor) : "");
    var es = new EventSource(url);
    source = es;
    Object.keys(HANDLERS).forEach(function (name) {
      es.addEventListener(name, function (event) { onStreamEvent(name, event); });
    });
    es.addEventListener("resync", onResync);
    es.onopen = function () { backoffMs = 1000; failuresWithoutOpen = 0; app.dataset.stream = "open"; };
    // Reconnect ourselves, with the newest cursor in the URL, rather than let the
    // browser retry the original URL (whose last_event_id would be stale).
    es.onerror = function () {
      if (source !== es) return;
      app.dataset.stream = "reconnecting";
      es.close(); source = null;
      failuresWithoutOpen += 1;
      var delay = backoffMs;
      backoffMs = Math.min(backoffMs * 2, MAX_BACKOFF_MS);
      reconnectTimer = setTimeout(function () {
        reconnectTimer = null;
        if (failuresWithoutOpen >= 3) {
          // Maybe the conversation is gone or the token no longer works: ask over REST.
          loadHistory().then(function (ok) { if (ok) openStream(session.lastEventId); })
            .catch(function () { openStream(session && session.lastEventId); });
        } else {
          openStream(session && session.lastEventId);
        }
      }, delay);
    };
  }

  // --- sending -------------------------------------------------------------------
  function forgetConversation(message) {
    closeStream();
    session = null;
    saveSession();
    resetLog();
    showAgentMode("auto");
    els.nameRow.hidden = false;
    showNotice(message || "");
  }

  function ensureConversation() {
    if (session) return Promise.resolve(true);
    var body = { workspace_handle: handle };
    var name = els.visitorName.value.trim();
    if (name) body.visitor_name = name;
    return api("/conversations", { method: "POST", body: body }).then(function (r) {
      if (!r.ok) { showNotice(errorText(r)); return false; }
      session = { conversationId: r.body.conversation_id, visitorToken: r.body.visitor_token, lastEventId: null };
      saveSession();
      els.nameRow.hidden = true;
      return true;
    });
  }

  function errorText(r) {
    if (r.status === 429) {
      var wait = r.headers.get("Retry-After");
      return "You are sending messages too quickly. Please wait" + (wait ? " " + wait + " seconds." : " a moment.");
    }
    if (r.status === 422 && r.body.errors && r.body.errors.content) return r.body.errors.content.join(" ");
    return r.body.detail || "Something went wrong (" + r.status + "). Please try again.";
  }

  function postMessage(content, key, attempt) {
    var path = "/conversations/" + session.conversationId + "/messages";
    return api(path, { method: "POST", body: { content: content, idempotency_key: key } }).catch(function (err) {
      // Same idempotency key on retry: the server answers with the first message, no second run.
      if (attempt < 2) return new Promise(function (res) { setTimeout(res, 800 * (attempt + 1)); })
        .then(function () { return postMessage(content, key, attempt + 1); });
      throw err;
    });
  }

  function send(content) {
    showNotice("");
    els.send.disabled = true;
    return ensureConversation().then(function (ok) {
      if (!ok) return;
      var bubble = addBubble("user", content, "pending");
      return postMessage(content, uuid(), 0).then(function (r) {
        if (r.status === 401 || r.status === 404) {
          forgetConversation("That conversation has ended. Please send your message again.");
          els.input.value = content;
          return;
        }
        if (!r.ok) {
          bubble.dataset.state = "failed";
          addBadge(bubble, "not sent", "error");
          showNotice(errorText(r));
          return;
        }
        bubble.dataset.state = "done";
        bubble.dataset.messageId = r.body.message && r.body.message.id;
        if (r.body.run && ["queued", "running"].indexOf(r.body.run.status) >= 0) activeRuns.add(r.body.run.id);
        updateTyping();
        if (!source) openStream(session.lastEventId || r.body.stream_cursor);
      });
    }).catch(function () {
      showNotice("Could not reach the server. Check your connection and try again.");
    }).then(function () { els.send.disabled = false; });
  }

  els.form.addEventListener("submit", function (event) {
    event.preventDefault();
    var content = els.input.value.trim();
    if (!content) { showNotice("Type a message first."); els.input.focus(); return; }
    els.input.value = "";
    send(content);
  });
  els.input.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      els.form.requestSubmit();
    }
  });
  els.newChat.addEventListener("click", function () { forgetConversation(""); els.input.focus(); });

  // --- start -------------------------------------------------------------------------
  loadProfile();
  if (session) {
    els.nameRow.hidden = true;
    loadHistory().then(function (ok) { if (ok) openStream(session.lastEventId); })
      .catch(function () { showNotice("Could not load the conversation. Reload the page to try again."); });
  }
  app.dataset.ready = "true";
})();
