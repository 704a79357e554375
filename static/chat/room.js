/*
 * The room page's websocket client. No framework, no build step.
 *
 * One socket per tab to /ws/chat/. The page arrives with the newest messages
 * (the "chat-boot" JSON); the client joins with `after` = the last seq it holds,
 * so anything posted in between is replayed, and does the same after every
 * reconnect. Sends carry a fresh client_id; an unacknowledged send is retried
 * with the same client_id after a reconnect, so it is stored at most once.
 *
 * People: an author's name opens a small card with "Message", and so does each
 * person in the online list; "Message" opens (or reopens) the direct message
 * with that person over POST /api/dms/ and goes to it.
 *
 * User data is only ever put in the page with textContent, never innerHTML,
 * with one exception: a message's `html`, which the server rendered from
 * Markdown and sanitized to a short allow-list (docs/protocol.md, "Markdown");
 * it is parsed in an inert <template> and checked against that list again
 * before it is shown (renderBody). The raw `body` never goes in as HTML.
 */
(() => {
  "use strict";

  const boot = JSON.parse(document.getElementById("chat-boot").textContent);
  const ROOM = boot.room.slug;
  const IS_DM = boot.room.kind === "dm";
  // How the composer names the room: a DM by its people (boot.room.name, as this viewer sees it).
  const ROOM_LABEL = IS_DM ? boot.room.name : `#${ROOM}`;
  const ME = boot.me;
  const MAX_BODY = 4000;
  const TYPING_SEND_EVERY_MS = 3000;
  const TYPING_SHOW_MS = 6000;

  const $ = (id) => document.getElementById(id);
  const els = {
    scroller: $("messages"),
    list: $("message-list"),
    loadOlder: $("load-older"),
    roomStart: $("room-start"),
    composer: $("composer"),
    input: $("composer-input"),
    sendButton: $("composer-send"),
    typing: $("typing"),
    onlineList: $("online-list"),
    onlineCount: $("online-count"),
    status: $("conn-status"),
    banner: $("banner"),
    lockedBadge: $("locked-badge"),
    replyBar: $("reply-bar"),
    replyBarText: $("reply-bar-text"),
    replyCancel: $("reply-cancel"),
    attachButton: $("attach-button"),
    attachInput: $("attach-input"),
    attachList: $("attach-list"),
  };
  // The reaction picker's choices; any single emoji works over the APIs.
  const COMMON_EMOJI = ["👍", "❤️", "😂", "🎉", "👀", "🙏", "✅", "🔥"];
  const QUOTE_CHARS = 200;

  const state = {
    // Highest seq such that every message up to it has been received: what
    // `join` asks to resume from. Older history than the first page is not a gap.
    contiguous: boot.room.last_seq,
    bySeq: new Map(), // seq -> {data, el}
    oldestSeq: null,
    hasOlder: boot.has_older,
    pending: new Map(), // client_id -> {clientId, body, el, timer}
    online: new Map(), // user id -> user
    typing: new Map(), // user id -> {user, timer}
    locked: boot.room.is_locked,
    blocked: false, // banned / room gone: composer stays off
    joined: false,
    readSent: 0,
    readTimer: null,
    lastTypingSent: 0,
    byId: new Map(), // message id -> seq
    replyTo: null, // the message the composer replies to
    uploads: [], // files picked for the next message: {file, xhr, attachment, error, el, bar}
  };

  // --- helpers ---------------------------------------------------------------

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function newClientId() {
    if (window.crypto && typeof window.crypto.randomUUID === "function") return window.crypto.randomUUID();
    // randomUUID needs a secure context; plain http on a LAN address is not one.
    const bytes = window.crypto.getRandomValues(new Uint8Array(16));
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  }

  function csrfToken() {
    const input = document.querySelector("input[name=csrfmiddlewaretoken]");
    if (input) return input.value;
    const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  async function api(method, url, body) {
    const response = await fetch(url, {
      method,
      credentials: "same-origin",
      headers: {
        Accept: "application/json",
        "Content-Type": "application/json",
        "X-CSRFToken": csrfToken(),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    let data = null;
    if (response.status !== 204) {
      try {
        data = await response.json();
      } catch (_) {
        data = null;
      }
    }
    if (!response.ok) {
      const detail = (data && data.detail) || `The server answered ${response.status}.`;
      const error = new Error(detail);
      error.code = data && data.code;
      throw error;
    }
    return data;
  }

  function formatTime(iso) {
    const d = new Date(iso);
    return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  function nearBottom() {
    const s = els.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < 80;
  }

  function scrollToBottom() {
    els.scroller.scrollTop = els.scroller.scrollHeight;
  }

  function setStatus(kind, text) {
    els.status.dataset.state = kind;
    els.status.textContent = text;
  }

  function showBanner(text, kind) {
    els.banner.textContent = text;
    els.banner.dataset.kind = kind || "error";
    els.banner.hidden = false;
  }

  function hideBanner() {
    els.banner.hidden = true;
    els.banner.textContent = "";
  }

  function updateComposer() {
    const off = state.locked || state.blocked;
    els.input.disabled = off;
    els.sendButton.disabled = off;
    els.attachButton.disabled = off;
    if (state.blocked) {
      els.input.placeholder = "You cannot post in this room.";
    } else if (state.locked) {
      els.input.placeholder = "This room is locked: new messages are refused.";
    } else {
      els.input.placeholder = `Message ${ROOM_LABEL}`;
    }
    els.lockedBadge.hidden = !state.locked;
  }

  // --- messages ----------------------------------------------------------------

  function canDelete(m) {
    return m.author.id === ME.id || boot.can_moderate;
  }

  function buildMessage(m) {
    const li = el("li", "msg");
    li.dataset.id = String(m.id);
    li.dataset.seq = String(m.seq);
    if (m.author.id === ME.id) li.classList.add("msg-mine");

    const head = el("div", "msg-head");
    let author;
    if (m.author.id === ME.id) {
      author = el("span", "msg-author", m.author.display_name || m.author.username);
    } else {
      // Someone else's name opens their card, with "Message".
      author = el("button", "msg-author person-link", m.author.display_name || m.author.username);
      author.type = "button";
      author.setAttribute("aria-haspopup", "dialog");
      author.addEventListener("click", (e) => {
        e.stopPropagation();
        togglePersonCard(m.author, author);
      });
    }
    author.title = `@${m.author.username}`;
    head.appendChild(author);
    const time = el("time", "msg-time", formatTime(m.created_at));
    time.dateTime = m.created_at;
    time.title = new Date(m.created_at).toLocaleString();
    head.appendChild(time);
    if (m.edited_at && !m.deleted) {
      const edited = el("span", "msg-edited", "(edited)");
      edited.title = `Edited ${new Date(m.edited_at).toLocaleString()}`;
      head.appendChild(edited);
    }
    li.appendChild(head);

    if (m.reply_to) li.appendChild(buildQuote(m.reply_to));
    if (m.deleted) {
      li.classList.add("msg-deleted");
      li.appendChild(el("div", "msg-body", "This message was deleted."));
      return li;
    }
    const files = Array.isArray(m.attachments) ? m.attachments : [];
    // A message of files alone has no text to show.
    if (m.body || !files.length) li.appendChild(renderBody(m));
    if (files.length) li.appendChild(buildAttachments(files));
    if (m.reactions && m.reactions.length) li.appendChild(buildReactions(m));

    const actions = el("div", "msg-actions");
    const reply = el("button", "msg-action", "Reply");
    reply.type = "button";
    reply.addEventListener("click", () => startReply(m));
    actions.appendChild(reply);
    const react = el("button", "msg-action msg-action-react", "React");
    react.type = "button";
    react.setAttribute("aria-haspopup", "true");
    react.setAttribute("aria-label", "Add reaction");
    react.addEventListener("click", (e) => {
      e.stopPropagation();
      togglePicker(m, react);
    });
    actions.appendChild(react);
    if (m.author.id === ME.id) {
      const edit = el("button", "msg-action", "Edit");
      edit.type = "button";
      edit.addEventListener("click", () => startEdit(m.seq));
      actions.appendChild(edit);
    }
    if (canDelete(m)) {
      const del = el("button", "msg-action msg-action-danger", "Delete");
      del.type = "button";
      del.addEventListener("click", () => deleteMessage(m.seq));
      actions.appendChild(del);
    }
    if (m.author.id !== ME.id) actions.appendChild(reportButton(m));
    if (actions.childElementCount) li.appendChild(actions);
    return li;
  }

  // --- rich text -----------------------------------------------------------------------

  // What the server's sanitizer lets through (messaging/markdown.py); checked again
  // here so that nothing else could ever reach the page, whatever sent the frame.
  const RICH_TAGS = new Set(["P", "BR", "EM", "STRONG", "CODE", "PRE", "BLOCKQUOTE", "UL", "OL", "LI", "A"]);
  const RICH_ATTRS = { A: new Set(["href", "rel"]) };
  const SAFE_HREF = /^(https?:\/\/|mailto:|\/u\/[^/?#]+\/$)/i;
  // The server marks a mention by its link alone: to the person's page.
  const MENTION_HREF = /^\/u\/[^/?#]+\/$/;

  /** A message's body from its server-rendered `html`: links open in a new tab, mentions open the person's card. */
  function renderBody(m) {
    const div = el("div", "msg-body");
    if (typeof m.html !== "string" || !m.html) {
      // Only a message the server has not rendered (none should reach here): show the text as is.
      div.textContent = m.body;
      return div;
    }
    div.classList.add("msg-rich");
    const template = document.createElement("template");
    template.innerHTML = m.html; // inert: nothing in a template runs or loads
    for (const node of [...template.content.querySelectorAll("*")]) {
      const allowed = RICH_ATTRS[node.tagName] || new Set();
      if (!RICH_TAGS.has(node.tagName)) {
        node.replaceWith(document.createTextNode(node.textContent));
        continue;
      }
      for (const attr of [...node.attributes]) {
        if (!allowed.has(attr.name)) node.removeAttribute(attr.name);
      }
      if (node.tagName === "A") decorateLink(node, m);
    }
    div.appendChild(template.content);
    return div;
  }

  function decorateLink(a, m) {
    const href = a.getAttribute("href") || "";
    if (!SAFE_HREF.test(href)) {
      a.removeAttribute("href");
      return;
    }
    if (MENTION_HREF.test(href)) {
      a.classList.add("mention");
      let username;
      try {
        username = decodeURIComponent(href.slice(3, -1));
      } catch {
        return; // not what the server writes: leave it a plain link
      }
      const user = (m.mentions || []).find((u) => u.username === username);
      if (!user || user.id === ME.id) return; // your own name: nothing to open
      a.setAttribute("aria-haspopup", "dialog");
      a.title = `@${user.username}`;
      a.addEventListener("click", (e) => {
        if (e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return; // a new tab gets the person's page
        e.preventDefault();
        e.stopPropagation();
        togglePersonCard(user, a);
      });
      return;
    }
    a.target = "_blank";
    a.rel = "nofollow noopener noreferrer";
  }

  // --- replies and reactions ---------------------------------------------------------

  function buildQuote(q) {
    // A button: clicking it scrolls to the original when it is loaded.
    const quote = el("button", "msg-quote");
    quote.type = "button";
    quote.dataset.replyTo = String(q.id);
    quote.appendChild(el("span", "msg-quote-author", q.author.display_name || q.author.username));
    quote.appendChild(el("span", "msg-quote-body", q.deleted ? "Original message was deleted" : q.body));
    if (q.deleted) quote.classList.add("msg-quote-deleted");
    quote.title = state.byId.has(q.id) ? "Show the original message" : "The original is further up in the history";
    quote.addEventListener("click", () => scrollToMessage(q.id));
    return quote;
  }

  function scrollToMessage(id) {
    const seq = state.byId.get(id);
    const entry = seq === undefined ? null : state.bySeq.get(seq);
    if (!entry) {
      showBanner("The original message is not loaded; use “Load older messages” to find it.", "info");
      return;
    }
    entry.el.scrollIntoView({ block: "center", behavior: "smooth" });
    entry.el.classList.remove("msg-flash");
    void entry.el.offsetWidth; // restart the animation
    entry.el.classList.add("msg-flash");
  }

  function buildReactions(m) {
    const row = el("div", "msg-reactions");
    for (const r of m.reactions) {
      const chip = el("button", "reaction-chip");
      chip.type = "button";
      chip.dataset.emoji = r.emoji;
      chip.setAttribute("aria-pressed", r.me ? "true" : "false");
      chip.setAttribute("aria-label", `${r.emoji} ${r.count}${r.me ? ", including you" : ""}`);
      chip.title = r.me ? "Remove your reaction" : "React with this too";
      chip.append(el("span", "reaction-emoji", r.emoji), el("span", "reaction-count", String(r.count)));
      chip.addEventListener("click", () => react(m.id, r.emoji, !r.me));
      row.appendChild(chip);
    }
    return row;
  }

  function react(messageId, emoji, on) {
    if (state.locked || state.blocked) return;
    send({ type: "react", room: ROOM, message_id: messageId, emoji, on, ref: `react-${messageId}` });
  }

  let picker = null;
  function closePicker() {
    if (picker) picker.remove();
    picker = null;
  }

  function togglePicker(m, anchor) {
    const same = picker && picker.dataset.for === String(m.id);
    closePicker();
    if (same) return;
    picker = el("div", "reaction-picker");
    picker.dataset.for = String(m.id);
    picker.setAttribute("role", "menu");
    const mine = new Set((m.reactions || []).filter((r) => r.me).map((r) => r.emoji));
    for (const emoji of COMMON_EMOJI) {
      const choice = el("button", "reaction-choice", emoji);
      choice.type = "button";
      choice.setAttribute("role", "menuitem");
      choice.setAttribute("aria-label", `React with ${emoji}`);
      choice.addEventListener("click", (e) => {
        e.stopPropagation();
        closePicker();
        react(m.id, emoji, !mine.has(emoji));
      });
      picker.appendChild(choice);
    }
    anchor.closest(".msg").appendChild(picker);
  }
  document.addEventListener("click", (e) => {
    if (picker && !picker.contains(e.target)) closePicker();
  });

  function onReaction(frame) {
    if (frame.room !== ROOM) return;
    const seq = state.byId.get(frame.message_id);
    const entry = seq === undefined ? null : state.bySeq.get(seq);
    if (!entry) return;
    const data = { ...entry.data, reactions: (entry.data.reactions || []).map((r) => ({ ...r })) };
    let r = data.reactions.find((x) => x.emoji === frame.emoji);
    if (!r) {
      r = { emoji: frame.emoji, count: 0, me: false };
      data.reactions.push(r);
    }
    r.count = frame.count;
    if (frame.user.id === ME.id) r.me = frame.on;
    data.reactions = data.reactions.filter((x) => x.count > 0);
    refresh(entry, data);
  }

  /** Replace a message's data, rebuilding it unless it is being edited. */
  function refresh(entry, data) {
    if (entry.editing) {
      entry.data = data;
      return;
    }
    upsert(data);
  }

  function codePoints(text, n) {
    return Array.from(text).slice(0, n).join("");
  }

  /** An edit or deletion: keep our own `me` (events carry me=false) and update replies' quotes. */
  function mergeUpdate(m) {
    const entry = state.bySeq.get(m.seq);
    if (entry && entry.data.reactions && m.reactions) {
      const mine = new Set(entry.data.reactions.filter((r) => r.me).map((r) => r.emoji));
      m = { ...m, reactions: m.reactions.map((r) => ({ ...r, me: r.me || mine.has(r.emoji) })) };
    }
    for (const other of state.bySeq.values()) {
      const q = other.data.reply_to;
      if (!q || q.id !== m.id) continue;
      const body = m.deleted ? "" : codePoints(m.body, QUOTE_CHARS);
      refresh(other, { ...other.data, reply_to: { ...q, body, deleted: m.deleted } });
    }
    return m;
  }

  function startReply(m) {
    state.replyTo = m;
    els.replyBarText.textContent = "";
    els.replyBarText.append(
      el("span", "reply-bar-label", "Replying to "),
      el("strong", null, m.author.display_name || m.author.username),
      el("span", "reply-bar-body", codePoints(m.body, 80)),
    );
    els.replyBar.hidden = false;
    els.input.focus();
  }

  function cancelReply() {
    state.replyTo = null;
    els.replyBar.hidden = true;
  }
  els.replyCancel.addEventListener("click", () => {
    cancelReply();
    els.input.focus();
  });

  /** Insert or replace a message, keeping the list in seq order. */
  function upsert(m) {
    const stick = nearBottom();
    const existing = state.bySeq.get(m.seq);
    const node = buildMessage(m);
    if (existing) {
      existing.el.replaceWith(node);
    } else {
      let before = null;
      const last = els.list.lastElementChild;
      if (last && Number(last.dataset.seq) > m.seq) {
        for (const child of els.list.children) {
          if (Number(child.dataset.seq) > m.seq) {
            before = child;
            break;
          }
        }
      }
      els.list.insertBefore(node, before);
      if (state.oldestSeq === null || m.seq < state.oldestSeq) state.oldestSeq = m.seq;
    }
    state.bySeq.set(m.seq, { data: m, el: node });
    state.byId.set(m.id, m.seq);
    if (m.client_id && state.pending.has(m.client_id)) settlePending(m.client_id);
    if (stick) scrollToBottom();
  }

  function receive(m) {
    if (m.room !== ROOM) return;
    upsert(m);
    while (state.bySeq.has(state.contiguous + 1)) state.contiguous += 1;
    clearTyping(m.author.id);
    scheduleRead();
  }

  function updateInPlace(m) {
    if (m.room !== ROOM || !state.bySeq.has(m.seq)) return;
    const entry = state.bySeq.get(m.seq);
    if (entry.editing) entry.editing = false;
    upsert(mergeUpdate(m));
  }

  function startEdit(seq) {
    const entry = state.bySeq.get(seq);
    if (!entry || entry.data.deleted) return;
    const body = entry.el.querySelector(".msg-body");
    const form = el("form", "msg-edit");
    const label = el("label", "sr-only", "Edit message");
    const area = el("textarea");
    area.id = `edit-${entry.data.id}`;
    label.htmlFor = area.id;
    area.value = entry.data.body;
    area.rows = Math.min(8, entry.data.body.split("\n").length + 1);
    const save = el("button", "btn btn-primary btn-small", "Save");
    save.type = "submit";
    const cancel = el("button", "btn btn-ghost btn-small", "Cancel");
    cancel.type = "button";
    const error = el("div", "field-error");
    form.append(label, area, save, cancel, error);
    body.replaceWith(form);
    entry.editing = true;
    area.focus();

    const restore = () => upsert(state.bySeq.get(seq).data);
    cancel.addEventListener("click", restore);
    area.addEventListener("keydown", (e) => {
      if (e.key === "Escape") restore();
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        form.requestSubmit();
      }
    });
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const text = area.value.trim();
      if (!text) {
        error.textContent = "A message cannot be empty; delete it instead.";
        return;
      }
      // Counted in code points, as the server counts (an emoji is one).
      if ([...text].length > MAX_BODY) {
        error.textContent = `Messages are limited to ${MAX_BODY} characters.`;
        return;
      }
      save.disabled = true;
      try {
        const updated = await api("PATCH", `/api/messages/${entry.data.id}/`, { body: text });
        // Without the server's answer the old html would be stale: show the new text as is.
        upsert(updated && updated.id ? updated : { ...entry.data, body: text, html: "" });
      } catch (err) {
        error.textContent = err.message;
        save.disabled = false;
      }
    });
  }

  async function deleteMessage(seq) {
    const entry = state.bySeq.get(seq);
    if (!entry || entry.data.deleted) return;
    const whose = entry.data.author.id === ME.id ? "your message" : `this message by ${entry.data.author.display_name}`;
    if (!window.confirm(`Delete ${whose}? Everyone in the room will see it was deleted.`)) return;
    try {
      const result = await api("DELETE", `/api/messages/${entry.data.id}/`);
      upsert(result && result.id ? result : { ...entry.data, body: "", deleted: true });
    } catch (err) {
      showBanner(`Could not delete the message: ${err.message}`);
    }
  }

  // --- reports -----------------------------------------------------------------

  // Messages this page reported: the button stays "Reported" when a message is drawn again.
  const reported = new Set();
  const reportDialog = { el: null, form: null, reason: null, error: null, submit: null, message: null, opener: null };

  function reportButton(m) {
    const done = reported.has(m.id);
    const button = el("button", "msg-action msg-action-report", done ? "Reported" : "Report");
    button.type = "button";
    button.disabled = done;
    button.setAttribute("aria-haspopup", "dialog");
    button.setAttribute("aria-label", done ? "Reported to the moderators" : "Report this message to the moderators");
    button.addEventListener("click", () => openReportDialog(m, button));
    return button;
  }

  /** The one report form of the page: a modal <dialog> asking why, built on first use. */
  function buildReportDialog() {
    const dialog = el("dialog", "report-dialog");
    dialog.setAttribute("aria-labelledby", "report-title");
    const form = el("form", "report-form");
    form.method = "dialog";
    form.noValidate = true;
    form.appendChild(el("h2", "report-title", "Report message"));
    form.querySelector("h2").id = "report-title";
    const quote = el("p", "report-quote muted");
    form.appendChild(quote);
    const label = el("label", "report-label", "Why should the moderators look at it?");
    label.htmlFor = "report-reason";
    form.appendChild(label);
    const reason = el("textarea", "report-reason");
    reason.id = "report-reason";
    reason.name = "reason";
    reason.rows = 3;
    reason.maxLength = 500;
    reason.required = true;
    reason.placeholder = "Spam, harassment, something else…";
    form.appendChild(reason);
    const error = el("p", "field-error report-error");
    error.hidden = true;
    error.setAttribute("role", "alert");
    form.appendChild(error);
    reason.addEventListener("input", () => {
      error.hidden = true;
    });
    const buttons = el("div", "report-buttons");
    const cancel = el("button", "btn btn-ghost btn-small", "Cancel");
    cancel.type = "button";
    cancel.addEventListener("click", () => dialog.close());
    const submit = el("button", "btn btn-primary btn-small", "Report");
    submit.type = "submit";
    buttons.append(cancel, submit);
    form.appendChild(buttons);
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      submitReport();
    });
    dialog.appendChild(form);
    dialog.addEventListener("close", () => {
      if (reportDialog.opener && reportDialog.opener.isConnected) reportDialog.opener.focus();
      reportDialog.message = null;
      reportDialog.opener = null;
    });
    document.body.appendChild(dialog);
    Object.assign(reportDialog, { el: dialog, form, reason, error, submit, quote });
  }

  function openReportDialog(m, opener) {
    if (!reportDialog.el) buildReportDialog();
    reportDialog.message = m;
    reportDialog.opener = opener;
    reportDialog.quote.textContent = `${m.author.display_name || m.author.username}: ${codePoints(m.body, 120)}`;
    reportDialog.reason.value = "";
    reportDialog.error.hidden = true;
    reportDialog.submit.disabled = false;
    reportDialog.el.showModal();
    reportDialog.reason.focus();
  }

  async function submitReport() {
    const m = reportDialog.message;
    if (!m) return;
    const reason = reportDialog.reason.value.trim();
    if (!reason) {
      reportDialog.error.textContent = "Say briefly what is wrong with it.";
      reportDialog.error.hidden = false;
      reportDialog.reason.focus();
      return;
    }
    reportDialog.submit.disabled = true;
    try {
      await api("POST", `/api/messages/${m.id}/report/`, { reason });
    } catch (err) {
      reportDialog.error.textContent = `Could not report it: ${err.message}`;
      reportDialog.error.hidden = false;
      reportDialog.submit.disabled = false;
      return;
    }
    reported.add(m.id);
    const opener = reportDialog.opener;
    reportDialog.el.close();
    if (opener && opener.isConnected) {
      opener.textContent = "Reported";
      opener.disabled = true;
      opener.setAttribute("aria-label", "Reported to the moderators");
    }
    const thanks = "Reported. The room's moderators will take a look.";
    showBanner(thanks, "info");
    setTimeout(() => {
      if (els.banner.textContent === thanks) hideBanner();
    }, 5000);
  }

  async function loadOlder() {
    if (state.oldestSeq === null) return;
    els.loadOlder.disabled = true;
    try {
      const page = await api("GET", `/api/rooms/${ROOM}/messages/?before=${state.oldestSeq}&limit=${boot.history_size}`);
      const scroller = els.scroller;
      const fromBottom = scroller.scrollHeight - scroller.scrollTop;
      for (const m of page.results) upsert(m);
      scroller.scrollTop = scroller.scrollHeight - fromBottom;
      state.hasOlder = Boolean(page.previous);
      renderHistoryStart();
    } catch (err) {
      showBanner(`Could not load older messages: ${err.message}`);
    } finally {
      els.loadOlder.disabled = false;
    }
  }

  /** After a partial replay (`recovered: false`), page the missing middle over REST. */
  async function fillGap(upTo) {
    try {
      while (state.contiguous < upTo) {
        const page = await api("GET", `/api/rooms/${ROOM}/messages/?after=${state.contiguous}&limit=200`);
        if (!page.results.length) break;
        for (const m of page.results) receive(m);
      }
    } catch (err) {
      showBanner(`Some messages could not be loaded (${err.message}). Reload the page to see them.`);
    }
  }

  function renderHistoryStart() {
    els.loadOlder.hidden = !state.hasOlder;
    els.roomStart.hidden = state.hasOlder;
  }

  // --- attachments -----------------------------------------------------------------------

  const MAX_ATTACHMENTS = 10;
  const MAX_UPLOAD_BYTES = Number(boot.max_upload_bytes) || 10 * 1024 * 1024;
  // Shown as pictures: the server gives these types only to files it verified as such images.
  const IMAGE_TYPES = new Set(["image/png", "image/jpeg", "image/gif", "image/webp"]);
  const ATTACHMENT_URL = /^\/api\/attachments\/\d+\/[^/?#]*$/;

  function formatSize(bytes) {
    if (bytes < 1024) return `${bytes} B`;
    const units = ["KB", "MB", "GB"];
    let value = bytes / 1024;
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) {
      value /= 1024;
      unit += 1;
    }
    return `${value < 10 ? value.toFixed(1) : Math.round(value)} ${units[unit]}`;
  }

  /** A document outline, cloned from the page's <template> (an SVG: no emoji font needed). */
  function fileIcon() {
    const span = el("span", "msg-file-icon");
    const template = $("file-icon");
    if (template) span.appendChild(template.content.firstElementChild.cloneNode(true));
    return span;
  }

  /** A message's files: pictures as lazy thumbnails that open full size in a new tab, the rest as chips. */
  function buildAttachments(files) {
    const wrap = el("div", "msg-files");
    for (const a of files) {
      if (typeof a.url !== "string" || !ATTACHMENT_URL.test(a.url)) continue;
      const label = `${a.name} (${formatSize(a.size)})`;
      if (IMAGE_TYPES.has(a.content_type)) {
        const link = el("a", "msg-image");
        link.href = a.url;
        link.target = "_blank";
        link.rel = "noopener";
        link.title = label;
        const img = el("img");
        img.alt = a.name;
        img.loading = "lazy";
        img.decoding = "async";
        img.addEventListener("load", () => {
          // A picture that arrives while the reader is at the bottom keeps them there.
          if (els.scroller.scrollHeight - els.scroller.scrollTop - els.scroller.clientHeight < 400) scrollToBottom();
        });
        img.src = a.url;
        link.appendChild(img);
        wrap.appendChild(link);
      } else {
        const link = el("a", "msg-file");
        link.href = a.url;
        link.download = a.name;
        link.title = `Download ${label}`;
        link.appendChild(fileIcon());
        link.appendChild(el("span", "msg-file-name", a.name));
        link.appendChild(el("span", "msg-file-size", formatSize(a.size)));
        wrap.appendChild(link);
      }
    }
    return wrap;
  }

  function renderUploads() {
    els.attachList.hidden = state.uploads.length === 0;
  }

  function removeUpload(u) {
    if (u.xhr && !u.attachment) u.xhr.abort();
    u.el.remove();
    state.uploads = state.uploads.filter((x) => x !== u);
    renderUploads();
    els.input.focus();
  }

  function uploadFailed(u, text) {
    u.error = text;
    u.el.classList.add("attach-failed");
    u.bar.remove();
    u.status.textContent = text;
  }

  /** Upload one picked file at once (XHR, for its progress), as a chip above the composer. */
  function addUpload(file) {
    if (state.uploads.length >= MAX_ATTACHMENTS) {
      showBanner(`A message takes at most ${MAX_ATTACHMENTS} files.`);
      return;
    }
    const u = { file, xhr: null, attachment: null, error: null };
    u.el = el("li", "attach-chip");
    u.el.appendChild(el("span", "attach-name", file.name || "file"));
    u.status = el("span", "attach-size", formatSize(file.size));
    u.el.appendChild(u.status);
    u.bar = el("progress", "attach-progress");
    u.bar.max = 100;
    u.bar.value = 0;
    u.bar.setAttribute("aria-label", `Uploading ${file.name}`);
    u.el.appendChild(u.bar);
    const remove = el("button", "attach-remove", "×");
    remove.type = "button";
    remove.setAttribute("aria-label", `Remove ${file.name}`);
    remove.title = "Remove";
    remove.addEventListener("click", () => removeUpload(u));
    u.el.appendChild(remove);
    els.attachList.appendChild(u.el);
    state.uploads.push(u);
    renderUploads();
    if (file.size > MAX_UPLOAD_BYTES) {
      uploadFailed(u, `too large (the limit is ${formatSize(MAX_UPLOAD_BYTES)})`);
      return;
    }
    const form = new FormData();
    form.append("file", file);
    const xhr = new XMLHttpRequest();
    u.xhr = xhr;
    xhr.open("POST", `/api/rooms/${encodeURIComponent(ROOM)}/attachments/`);
    xhr.setRequestHeader("X-CSRFToken", csrfToken());
    xhr.setRequestHeader("Accept", "application/json");
    xhr.responseType = "json";
    xhr.upload.addEventListener("progress", (e) => {
      if (e.lengthComputable) u.bar.value = Math.round((e.loaded / e.total) * 100);
    });
    xhr.addEventListener("load", () => {
      if (xhr.status === 201 && xhr.response && xhr.response.id) {
        u.attachment = xhr.response;
        u.bar.value = 100;
        u.bar.remove();
        u.el.classList.add("attach-ready");
        u.status.textContent = formatSize(xhr.response.size);
      } else {
        uploadFailed(u, (xhr.response && xhr.response.detail) || `upload failed (${xhr.status})`);
      }
    });
    xhr.addEventListener("error", () => uploadFailed(u, "upload failed: no connection"));
    xhr.send(form);
  }

  function addFiles(files) {
    if (state.locked || state.blocked) return;
    hideBanner();
    for (const file of files) addUpload(file);
    els.input.focus();
  }

  // --- sending -------------------------------------------------------------------

  function renderPending(p) {
    const li = el("li", "msg msg-mine msg-pending");
    const head = el("div", "msg-head");
    head.appendChild(el("span", "msg-author", ME.display_name));
    const status = el("span", "msg-status", "sending…");
    head.appendChild(status);
    li.appendChild(head);
    if (p.body) li.appendChild(el("div", "msg-body", p.body));
    if (p.files && p.files.length) li.appendChild(buildAttachments(p.files));
    p.el = li;
    p.status = status;
    $("pending-list").appendChild(li);
    scrollToBottom();
  }

  function setPendingStatus(p, text, failed) {
    p.status.textContent = text;
    p.el.classList.toggle("msg-failed", Boolean(failed));
    p.failed = Boolean(failed);
    const old = p.el.querySelector(".msg-actions");
    if (old) old.remove();
    if (failed) {
      const actions = el("div", "msg-actions msg-actions-visible");
      const retry = el("button", "msg-action", "Retry");
      retry.type = "button";
      retry.addEventListener("click", () => {
        setPendingStatus(p, "sending…", false);
        transmit(p);
      });
      const discard = el("button", "msg-action msg-action-danger", "Discard");
      discard.type = "button";
      discard.addEventListener("click", () => settlePending(p.clientId));
      actions.append(retry, discard);
      p.el.appendChild(actions);
    }
  }

  function settlePending(clientId) {
    const p = state.pending.get(clientId);
    if (!p) return;
    clearTimeout(p.timer);
    p.el.remove();
    state.pending.delete(clientId);
  }

  function transmit(p) {
    if (!state.joined) return; // resent once the socket has rejoined
    const frame = { type: "send", room: ROOM, body: p.body, client_id: p.clientId, ref: p.clientId };
    if (p.replyTo) frame.reply_to = p.replyTo;
    if (p.files && p.files.length) frame.attachments = p.files.map((a) => a.id);
    send(frame);
  }

  function submitComposer() {
    const body = els.input.value.trim();
    const files = state.uploads.filter((u) => u.attachment).map((u) => u.attachment);
    if ((!body && !files.length) || state.locked || state.blocked) return;
    if ([...body].length > MAX_BODY) {
      showBanner(`Messages are limited to ${MAX_BODY} characters.`);
      return;
    }
    if (state.uploads.some((u) => !u.attachment && !u.error)) {
      showBanner("Wait for the files to finish uploading.", "info");
      return;
    }
    hideBanner();
    const p = { clientId: newClientId(), body, files, replyTo: state.replyTo ? state.replyTo.id : null };
    cancelReply();
    for (const u of state.uploads) u.el.remove();
    state.uploads = [];
    renderUploads();
    state.pending.set(p.clientId, p);
    renderPending(p);
    transmit(p);
    els.input.value = "";
    autosize();
  }

  function onSendError(p, frame) {
    switch (frame.code) {
      case "rate_limited": {
        const wait = Math.max(1, Number(frame.retry_after) || 1);
        setPendingStatus(p, `sending too fast, retrying in ${wait}s…`, false);
        p.timer = setTimeout(() => transmit(p), wait * 1000);
        break;
      }
      case "unavailable":
        setPendingStatus(p, "server busy, retrying…", false);
        p.timer = setTimeout(() => transmit(p), 2000);
        break;
      case "room_locked":
        setPendingStatus(p, "not sent: the room is locked", true);
        break;
      case "too_long":
        setPendingStatus(p, "not sent: the message is too long", true);
        break;
      default:
        setPendingStatus(p, `not sent: ${frame.detail || frame.code}`, true);
    }
  }

  // --- people: direct messages ------------------------------------------------------

  function nameOf(user) {
    return user.display_name || user.username;
  }

  /** In a DM with just this person, "Message" would only lead back here. */
  function isThisDm(user) {
    return IS_DM && boot.dm_with.length === 1 && boot.dm_with[0] === user.username;
  }

  /** A "Message" button that opens the direct message with `user`. */
  function messageButton(user, className) {
    const button = el("button", className, "Message");
    button.type = "button";
    button.setAttribute("aria-label", `Message ${nameOf(user)}`);
    button.addEventListener("click", () => openDm(user, button));
    return button;
  }

  async function openDm(user, button) {
    button.disabled = true;
    try {
      // 201 for a new DM, 200 for the one these two people already have: either way, go there.
      const room = await api("POST", "/api/dms/", { usernames: [user.username] });
      window.location.assign(`/rooms/${encodeURIComponent(room.slug)}/`);
    } catch (err) {
      button.disabled = false;
      showBanner(`Could not open a direct message with ${nameOf(user)}: ${err.message}`);
    }
  }

  const personCard = { el: null, anchor: null };

  function closePersonCard() {
    if (!personCard.el) return;
    personCard.el.remove();
    if (personCard.anchor) personCard.anchor.setAttribute("aria-expanded", "false");
    personCard.el = null;
    personCard.anchor = null;
  }

  function togglePersonCard(user, anchor) {
    const same = personCard.anchor === anchor;
    closePersonCard();
    if (same) return;
    const card = el("div", "person-card");
    card.setAttribute("role", "dialog");
    card.setAttribute("aria-label", nameOf(user));
    card.appendChild(el("strong", "person-card-name", nameOf(user)));
    card.appendChild(el("span", "person-card-username muted", `@${user.username}`));
    if (!isThisDm(user)) card.appendChild(messageButton(user, "btn btn-primary btn-small"));
    card.addEventListener("click", (e) => e.stopPropagation());
    card.addEventListener("keydown", (e) => {
      if (e.key === "Escape") {
        closePersonCard();
        anchor.focus();
      }
    });
    document.body.appendChild(card);
    const box = anchor.getBoundingClientRect();
    const top = Math.min(box.bottom + 4, window.innerHeight - card.offsetHeight - 8);
    card.style.top = `${Math.max(8, top)}px`;
    card.style.left = `${Math.max(8, Math.min(box.left, window.innerWidth - card.offsetWidth - 8))}px`;
    anchor.setAttribute("aria-expanded", "true");
    personCard.el = card;
    personCard.anchor = anchor;
    // Focus moves into the card, so Escape closes it and keyboard users reach "Message".
    const action = card.querySelector("button");
    if (!action) card.tabIndex = -1;
    (action || card).focus();
  }

  document.addEventListener("click", closePersonCard);
  els.scroller.addEventListener("scroll", closePersonCard, { passive: true });

  // --- presence, typing, read marker ---------------------------------------------

  function renderOnline() {
    const users = [...state.online.values()].sort((a, b) =>
      (a.display_name || a.username).localeCompare(b.display_name || b.username),
    );
    els.onlineList.replaceChildren(
      ...users.map((u) => {
        const li = el("li", u.id === ME.id ? "me" : "");
        li.appendChild(el("span", "dot"));
        li.appendChild(el("span", "online-name", u.display_name || u.username));
        if (u.id === ME.id) li.appendChild(el("span", "muted", " (you)"));
        else if (!isThisDm(u)) li.appendChild(messageButton(u, "person-message"));
        return li;
      }),
    );
    els.onlineCount.textContent = users.length ? String(users.length) : "";
  }

  function renderTyping() {
    const names = [...state.typing.values()].map((t) => t.user.display_name || t.user.username);
    let text = "";
    if (names.length === 1) text = `${names[0]} is typing…`;
    else if (names.length === 2) text = `${names[0]} and ${names[1]} are typing…`;
    else if (names.length > 2) text = "Several people are typing…";
    els.typing.textContent = text;
  }

  function clearTyping(userId) {
    const t = state.typing.get(userId);
    if (!t) return;
    clearTimeout(t.timer);
    state.typing.delete(userId);
    renderTyping();
  }

  function onTyping(user) {
    const existing = state.typing.get(user.id);
    if (existing) clearTimeout(existing.timer);
    state.typing.set(user.id, { user, timer: setTimeout(() => clearTyping(user.id), TYPING_SHOW_MS) });
    renderTyping();
  }

  function scheduleRead() {
    if (state.readTimer) return;
    state.readTimer = setTimeout(() => {
      state.readTimer = null;
      if (document.visibilityState !== "visible" || !state.joined) return;
      if (state.contiguous > state.readSent) {
        state.readSent = state.contiguous;
        send({ type: "read", room: ROOM, seq: state.contiguous });
      }
    }, 500);
  }

  // --- the socket ------------------------------------------------------------------

  let socket = null;
  let attempt = 0;
  let reconnectTimer = null;
  let stopped = false;

  function send(frame) {
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(frame));
  }

  function connect() {
    clearTimeout(reconnectTimer);
    reconnectTimer = null;
    if (stopped) return;
    setStatus("connecting", attempt ? "Reconnecting…" : "Connecting…");
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${scheme}://${location.host}/ws/chat/`);
    socket = ws;
    ws.addEventListener("open", () => {
      send({ type: "join", room: ROOM, after: state.contiguous, ref: "join" });
      // badges.js shares this socket (one per tab) for the sidebar's live counts.
      window.dispatchEvent(new CustomEvent("chat:open", { detail: { send } }));
    });
    ws.addEventListener("message", (event) => {
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch (_) {
        return;
      }
      handle(frame);
    });
    ws.addEventListener("close", (event) => {
      if (socket !== ws) return;
      socket = null;
      state.joined = false;
      state.online.clear();
      renderOnline();
      if (event.code === 4401) {
        stopped = true;
        setStatus("offline", "Signed out");
        window.location.assign(`/accounts/login/?next=${encodeURIComponent(location.pathname)}`);
        return;
      }
      if (event.code === 4403) {
        stopped = true;
        setStatus("offline", "Disconnected");
        showBanner("Your account has been deactivated. Contact an administrator.");
        state.blocked = true;
        updateComposer();
        return;
      }
      if (state.blocked) {
        setStatus("offline", "Disconnected");
        return;
      }
      scheduleReconnect();
    });
  }

  function scheduleReconnect() {
    // Exponential backoff with jitter, so a restarted server is not stampeded.
    const base = Math.min(15000, 500 * 2 ** attempt);
    const delay = Math.round(base / 2 + Math.random() * (base / 2));
    attempt += 1;
    setStatus("offline", `Offline · retrying in ${Math.ceil(delay / 1000)}s`);
    reconnectTimer = setTimeout(connect, delay);
  }

  function handle(frame) {
    window.dispatchEvent(new CustomEvent("chat:frame", { detail: frame }));
    switch (frame.type) {
      case "joined":
        onJoined(frame);
        break;
      case "message":
        receive(frame.message);
        break;
      case "ack":
        receive(frame.message);
        settlePending(frame.message.client_id);
        break;
      case "message_updated":
      case "message_deleted":
        updateInPlace(frame.message);
        break;
      case "typing":
        if (frame.room === ROOM) onTyping(frame.user);
        break;
      case "presence":
        if (frame.room !== ROOM) break;
        if (frame.online) state.online.set(frame.user.id, frame.user);
        else state.online.delete(frame.user.id);
        if (!frame.online) clearTyping(frame.user.id);
        renderOnline();
        break;
      case "reaction":
        onReaction(frame);
        break;
      case "room_updated":
        if (frame.room.slug !== ROOM) break;
        state.locked = frame.room.is_locked;
        updateComposer();
        break;
      case "error":
        onError(frame);
        break;
      default:
        break;
    }
  }

  function onJoined(frame) {
    if (frame.room !== ROOM) return;
    attempt = 0;
    state.joined = true;
    setStatus("online", "Connected");
    if (!state.blocked) hideBanner();
    state.online = new Map((frame.online || []).map((u) => [u.id, u]));
    renderOnline();
    if (frame.recovered === false) fillGap(frame.last_seq);
    // Unacknowledged sends go again with the same client_id: the server
    // stores each at most once and acks the original.
    for (const p of state.pending.values()) {
      if (!p.failed) {
        clearTimeout(p.timer);
        transmit(p);
      }
    }
    state.readSent = 0;
    scheduleRead();
  }

  function onError(frame) {
    if (frame.ref && frame.ref.startsWith("react-") && frame.code !== "forbidden") {
      // A refused reaction concerns that message only; the room stays usable.
      if (frame.code === "room_locked") {
        state.locked = true;
        updateComposer();
      }
      showBanner(frame.detail || "That reaction was refused.");
      return;
    }
    if (frame.ref && state.pending.has(frame.ref)) {
      onSendError(state.pending.get(frame.ref), frame);
      return;
    }
    if (frame.ref === "join" && frame.code === "unavailable") {
      // A passing database hiccup: ask again shortly on the same socket.
      setTimeout(() => send({ type: "join", room: ROOM, after: state.contiguous, ref: "join" }), 2000);
      return;
    }
    if (frame.ref === "join" || (frame.room === ROOM && (frame.code === "forbidden" || frame.code === "not_found"))) {
      state.blocked = true;
      state.joined = false;
      updateComposer();
      showBanner(frame.detail || "You cannot use this room.");
      return;
    }
    if (frame.code === "room_locked" && frame.room === ROOM) {
      state.locked = true;
      updateComposer();
    }
  }

  // --- composer ----------------------------------------------------------------------

  function autosize() {
    els.input.style.height = "auto";
    els.input.style.height = `${Math.min(els.input.scrollHeight, 200)}px`;
  }

  els.input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      submitComposer();
    } else if (e.key === "Escape" && state.replyTo) {
      cancelReply();
    }
  });
  els.input.addEventListener("input", () => {
    autosize();
    const now = Date.now();
    if (els.input.value.trim() && state.joined && now - state.lastTypingSent > TYPING_SEND_EVERY_MS) {
      state.lastTypingSent = now;
      send({ type: "typing", room: ROOM });
    }
  });
  els.composer.addEventListener("submit", (e) => {
    e.preventDefault();
    submitComposer();
    els.input.focus();
  });
  els.loadOlder.addEventListener("click", loadOlder);
  // Files: the paperclip, a drop anywhere on the composer, or a paste into the message box.
  els.attachButton.addEventListener("click", () => els.attachInput.click());
  els.attachInput.addEventListener("change", () => {
    addFiles([...els.attachInput.files]);
    els.attachInput.value = "";
  });
  let dragDepth = 0;
  const hasFiles = (e) => e.dataTransfer && [...e.dataTransfer.types].includes("Files");
  els.composer.addEventListener("dragenter", (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    dragDepth += 1;
    els.composer.classList.add("drag-over");
  });
  els.composer.addEventListener("dragover", (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    e.dataTransfer.dropEffect = "copy";
  });
  els.composer.addEventListener("dragleave", () => {
    dragDepth = Math.max(0, dragDepth - 1);
    if (!dragDepth) els.composer.classList.remove("drag-over");
  });
  els.composer.addEventListener("drop", (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    dragDepth = 0;
    els.composer.classList.remove("drag-over");
    addFiles([...e.dataTransfer.files]);
  });
  els.input.addEventListener("paste", (e) => {
    const files = e.clipboardData ? [...e.clipboardData.files] : [];
    if (!files.length) return;
    e.preventDefault();
    addFiles(files);
  });
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") scheduleRead();
  });
  window.addEventListener("online", () => {
    if (!socket && !stopped) {
      attempt = 0;
      connect();
    }
  });

  // --- start -----------------------------------------------------------------------------

  const pendingList = el("ol", "message-list pending-list");
  pendingList.id = "pending-list";
  els.list.after(pendingList);
  for (const m of boot.messages) upsert(m);
  for (const m of boot.messages) state.contiguous = Math.max(state.contiguous, m.seq);
  renderHistoryStart();
  updateComposer();
  scrollToBottom();
  connect();
  els.input.focus();
})();
