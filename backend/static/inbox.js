/* The owner's inbox: sign in, see the workspace's conversations update live (the
   workspace's event stream, opened with a single-use ticket since EventSource cannot
   send an Authorization header), read one, take over, reply, hand back.
   Plain JavaScript, no build step; server text only ever goes in as text nodes. */
(function () {
  "use strict";

  var app = document.getElementById("inbox-app");
  var API = app.dataset.api;
  var TOKEN_KEY = "assistant-inbox:token";
  var MAX_BACKOFF_MS = 15000;
  var PAGE = 200;
  var EVENTS = [
    "conversation.created", "conversation.updated", "message.created",
    "run.started", "run.finished", "handoff.requested",
  ];

  function $(id) { return document.getElementById(id); }
  var els = {
    login: $("login"), loginForm: $("login-form"), email: $("login-email"), password: $("login-password"),
    loginError: $("login-error"), inbox: $("inbox"), workspaceName: $("workspace-name"), live: $("live"),
    logout: $("logout"), onlyHandoff: $("only-handoff"), list: $("conversations"), emptyList: $("empty-list"),
    thread: $("thread"), title: $("thread-title"), status: $("thread-status"), takeover: $("takeover"),
    release: $("release"), handoffNote: $("handoff-note"), messages: $("messages"), typing: $("agent-typing"),
    replyForm: $("reply-form"), replyInput: $("reply-input"), replySend: $("reply-send"), threadError: $("thread-error"),
  };

  var token = sessionStorage.getItem(TOKEN_KEY);
  var workspace = null;
  var conversations = new Map(); // id -> conversation (+ preview, unread, answering)
  var currentId = null;
  var shownMessages = new Set();
  var source = null, lastEventId = null, reconnectTimer = null, backoffMs = 1000;

  // --- HTTP ----------------------------------------------------------------------
  function api(path, opts) {
    opts = opts || {};
    var headers = { Accept: "application/json" };
    if (token) headers.Authorization = "Bearer " + token;
    var body = opts.body;
    if (body && !(body instanceof URLSearchParams)) { headers["Content-Type"] = "application/json"; body = JSON.stringify(body); }
    return fetch(API + path, { method: opts.method || "GET", headers: headers, body: body }).then(function (r) {
      var fresh = r.headers.get("X-Access-Token");
      if (fresh) { token = fresh; sessionStorage.setItem(TOKEN_KEY, token); }
      return r.text().then(function (text) {
        var parsed = null;
        try { parsed = text ? JSON.parse(text) : null; } catch (e) { parsed = null; }
        if (r.status === 401 || (r.status === 403 && parsed && parsed.detail === "Could not validate credentials")) {
          signOut("Your session has ended. Please sign in again.");
        }
        return { ok: r.ok, status: r.status, body: parsed || {} };
      });
    });
  }

  // --- signing in and out ----------------------------------------------------------
  function signOut(message) {
    closeEvents();
    token = null; workspace = null; currentId = null;
    sessionStorage.removeItem(TOKEN_KEY);
    conversations.clear(); shownMessages.clear();
    els.inbox.hidden = true; els.login.hidden = false; els.thread.hidden = true;
    app.dataset.state = "signed-out";
    els.loginError.textContent = message || "";
    els.loginError.hidden = !message;
  }

  els.loginForm.addEventListener("submit", function (event) {
    event.preventDefault();
    var form = new URLSearchParams({ username: els.email.value.trim(), password: els.password.value });
    api("/login/access-token", { method: "POST", body: form }).then(function (r) {
      if (!r.ok) {
        els.loginError.textContent = r.body.detail && typeof r.body.detail === "string" ? r.body.detail : "Could not sign in.";
        els.loginError.hidden = false;
        return;
      }
      token = r.body.access_token;
      sessionStorage.setItem(TOKEN_KEY, token);
      els.password.value = "";
      start();
    });
  });
  els.logout.addEventListener("click", function () { signOut(""); });

  function start() {
    api("/workspaces/me").then(function (r) {
      if (!r.ok) { if (token) signOut(r.body.detail || "No workspace for this account."); return; }
      workspace = r.body;
      els.workspaceName.textContent = (workspace.public_name || workspace.name) + " · Inbox";
      els.login.hidden = true; els.inbox.hidden = false; els.loginError.hidden = true;
      app.dataset.state = "signed-in";
      loadConversations().then(connectEvents);
    });
  }

  // --- the conversation list -------------------------------------------------------
  function loadConversations() {
    var query = "?limit=100" + (els.onlyHandoff.checked ? "&handoff=requested" : "");
    return api("/conversations/workspaces/" + workspace.id + query).then(function (r) {
      if (!r.ok) return;
      var fresh = new Map();
      (r.body.data || []).forEach(function (c) { fresh.set(c.id, merge(conversations.get(c.id), c)); });
      conversations = fresh;
      renderList();
    });
  }
  els.onlyHandoff.addEventListener("change", loadConversations);

  function merge(old, c) {
    c.preview = old ? old.preview : "";
    c.unread = old ? old.unread : 0;
    c.answering = old ? old.answering : false;
    return c;
  }

  function refreshConversation(id) {
    return api("/conversations/" + id).then(function (r) {
      if (!r.ok) { if (r.status === 404) { conversations.delete(id); renderList(); } return; }
      if (els.onlyHandoff.checked && !r.body.handoff_requested_at) conversations.delete(id);
      else conversations.set(id, merge(conversations.get(id), r.body));
      renderList();
      if (id === currentId) renderThreadHead();
    });
  }

  function activity(c) { return c.last_message_at || c.created_at || ""; }

  function renderList() {
    var items = Array.from(conversations.values()).sort(function (a, b) { return activity(a) < activity(b) ? 1 : -1; });
    els.list.textContent = "";
    items.forEach(function (c) {
      var li = document.createElement("li");
      li.className = "conversation";
      li.dataset.id = c.id;
      li.setAttribute("data-testid", "conversation");
      li.setAttribute("aria-current", c.id === currentId ? "true" : "false");
      li.tabIndex = 0;
      var name = document.createElement("span");
      name.className = "name";
      name.textContent = c.visitor_name || "Visitor";
      li.appendChild(name);
      if (c.handoff_requested_at) li.appendChild(badge("wants a person", "handoff"));
      if (c.agent_mode === "paused") li.appendChild(badge("you're answering", "paused"));
      if (c.unread) li.appendChild(badge(String(c.unread), "unread"));
      var preview = document.createElement("div");
      preview.className = "preview";
      preview.textContent = c.preview || "";
      li.appendChild(preview);
      li.addEventListener("click", function () { openConversation(c.id); });
      li.addEventListener("keydown", function (e) { if (e.key === "Enter") openConversation(c.id); });
      els.list.appendChild(li);
    });
    els.emptyList.hidden = items.length > 0;
  }

  function badge(text, kind) {
    var span = document.createElement("span");
    span.className = "badge " + kind;
    span.dataset.badge = kind;
    span.textContent = text;
    return span;
  }

  // --- one conversation ------------------------------------------------------------
  function openConversation(id) {
    currentId = id;
    var c = conversations.get(id);
    if (c) c.unread = 0;
    renderList();
    els.thread.hidden = false;
    els.threadError.hidden = true;
    renderThreadHead();
    loadMessages(id);
  }

  function loadMessages(id) {
    var path = "/conversations/" + id + "/messages?limit=" + PAGE;
    return api(path).then(function (r) {
      if (!r.ok || id !== currentId) return null;
      if (r.body.count > PAGE) return api(path + "&skip=" + (r.body.count - PAGE));
      return r;
    }).then(function (r) {
      if (!r || !r.ok || id !== currentId) return;
      els.messages.textContent = "";
      shownMessages.clear();
      (r.body.data || []).forEach(addMessage);
    });
  }

  var ROLE_LABELS = { user: "Visitor", assistant: "Assistant", owner: "You" };

  function addMessage(m) {
    var id = m.id || m.message_id;
    if (!id || shownMessages.has(id)) return;
    shownMessages.add(id);
    var li = document.createElement("li");
    li.className = "msg " + m.role;
    li.dataset.role = m.role;
    li.dataset.messageId = id;
    var who = document.createElement("span");
    who.className = "who";
    who.textContent = ROLE_LABELS[m.role] || m.role;
    var text = document.createElement("span");
    text.className = "text";
    text.textContent = m.content || "";
    li.appendChild(who);
    li.appendChild(text);
    els.messages.appendChild(li);
    els.messages.scrollTop = els.messages.scrollHeight;
  }

  function renderThreadHead() {
    var c = conversations.get(currentId);
    if (!c) return;
    var paused = c.agent_mode === "paused";
    els.title.textContent = c.visitor_name || "Visitor";
    els.status.textContent = paused ? "You're answering: the assistant is paused." : "The assistant is answering.";
    els.thread.dataset.agentMode = paused ? "paused" : "auto";
    els.takeover.hidden = paused;
    els.release.hidden = !paused;
    els.handoffNote.hidden = !c.handoff_requested_at;
    els.handoffNote.textContent = c.handoff_requested_at
      ? "The assistant asked for a person" + (c.handoff_reason ? ": " + c.handoff_reason : ".") : "";
    els.typing.hidden = !c.answering || paused;
  }

  function conversationAction(action) {
    var id = currentId;
    els.takeover.disabled = els.release.disabled = true;
    api("/conversations/" + id + "/" + action, { method: "POST" }).then(function (r) {
      els.takeover.disabled = els.release.disabled = false;
      if (!r.ok) { showThreadError(r); return; }
      conversations.set(id, merge(conversations.get(id), r.body));
      renderList();
      if (id === currentId) renderThreadHead();
    });
  }
  els.takeover.addEventListener("click", function () { conversationAction("takeover"); });
  els.release.addEventListener("click", function () { conversationAction("release"); });

  els.replyForm.addEventListener("submit", function (event) {
    event.preventDefault();
    var content = els.replyInput.value.trim();
    if (!content || !currentId) return;
    var id = currentId;
    els.replySend.disabled = true;
    api("/messages/conversations/" + id, { method: "POST", body: { content: content } }).then(function (r) {
      els.replySend.disabled = false;
      if (!r.ok) { showThreadError(r); return; }
      els.replyInput.value = "";
      if (id === currentId) addMessage(r.body);
    });
  });
  els.replyInput.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      els.replyForm.requestSubmit();
    }
  });

  function showThreadError(r) {
    var detail = r.body && r.body.detail;
    els.threadError.textContent = typeof detail === "string" ? detail : "Something went wrong (" + r.status + ").";
    els.threadError.hidden = false;
  }

  // --- the live events ---------------------------------------------------------------
  var HANDLERS = {
    "conversation.created": function (d) { refreshConversation(d.conversation_id); },
    "conversation.updated": function (d) { refreshConversation(d.conversation_id); },
    "handoff.requested": function (d) { refreshConversation(d.conversation_id); },
    "message.created": function (d) {
      var c = conversations.get(d.conversation_id);
      if (!c) { refreshConversation(d.conversation_id); return; }
      if (d.timestamp) c.last_message_at = d.timestamp;
      if (typeof d.content === "string") c.preview = d.content;
      if (d.conversation_id === currentId) {
        // The event carries the first 1,000 characters: a longer message is read over REST.
        if (typeof d.content === "string" && !d.truncated) addMessage({ id: d.message_id, role: d.role, content: d.content });
        else loadMessages(currentId);
      } else {
        c.unread = (c.unread || 0) + 1;
      }
      renderList();
    },
    "run.started": function (d) { setAnswering(d.conversation_id, true); },
    "run.finished": function (d) { setAnswering(d.conversation_id, false); },
  };

  function setAnswering(id, answering) {
    var c = conversations.get(id);
    if (!c) return;
    c.answering = answering;
    if (id === currentId) renderThreadHead();
  }

  function closeEvents() {
    if (reconnectTimer) { clearTimeout(reconnectTimer); reconnectTimer = null; }
    if (source) { source.close(); source = null; }
    els.live.dataset.state = "closed";
  }

  function setLive(state, text) { els.live.dataset.state = state; els.live.textContent = text; }

  // A ticket is single-use and short-lived: every (re)connection asks for a new one.
  function connectEvents() {
    closeEvents();
    if (!workspace) return;
    setLive("connecting", "connecting…");
    api("/workspaces/" + workspace.id + "/events/ticket", { method: "POST" }).then(function (r) {
      if (!r.ok) { scheduleReconnect(); return; }
      var url = API + "/workspaces/" + workspace.id + "/events?ticket=" + encodeURIComponent(r.body.ticket) +
        (lastEventId ? "&last_event_id=" + encodeURIComponent(lastEventId) : "");
      var es = new EventSource(url);
      source = es;
      EVENTS.forEach(function (name) {
        es.addEventListener(name, function (event) {
          var data;
          try { data = JSON.parse(event.data); } catch (e) { return; }
          if (event.lastEventId) lastEventId = event.lastEventId;
          HANDLERS[name](data);
        });
      });
      es.addEventListener("resync", function () {
        lastEventId = null;
        loadConversations().then(function () { if (currentId) openConversation(currentId); });
      });
      es.onopen = function () { backoffMs = 1000; setLive("open", "live"); };
      es.onerror = function () {
        if (source !== es) return;
        es.close(); source = null;
        scheduleReconnect();
      };
    }).catch(scheduleReconnect);
  }

  function scheduleReconnect() {
    if (!workspace) return;
    setLive("reconnecting", "reconnecting…");
    var delay = backoffMs;
    backoffMs = Math.min(backoffMs * 2, MAX_BACKOFF_MS);
    reconnectTimer = setTimeout(function () { reconnectTimer = null; connectEvents(); }, delay);
  }

  if (token) start(); else signOut("");
})();
