/*
 * Live unread and mention badges on the room list and the room page's sidebar,
 * and a browser notification for a mention while the tab is hidden.
 *
 * Each badged room is a `[data-badges=<slug>]` element rendered by the server
 * (templates/rooms/_badges.html) with the room's last seq, the viewer's read
 * marker and mention count. The page's one socket joins those rooms (without
 * `after`: only what comes next matters here), so every `message` moves the
 * room's last seq (unread = last seq - read marker; the viewer's own message
 * marks the room read), and every `mention` (which reaches every socket of the
 * user, joined or not) adds one to the room's mention count, once per message.
 *
 * On the room list this script opens the socket itself; on a room page it
 * shares room.js's (one socket per tab), which announces itself with the
 * `chat:open` event and hands every frame over as `chat:frame`. After a
 * reconnect the counts are read again from GET /api/rooms/, then the rooms
 * joined again.
 *
 * Notifications are asked for on a click ("Turn on notifications"), never on
 * load, as browsers require.
 */
(() => {
  "use strict";

  const bootEl = document.getElementById("badges-boot");
  if (!bootEl) return;
  const boot = JSON.parse(bootEl.textContent);
  const ME = boot.me;
  const CURRENT = boot.current; // the open room (room page), never badged
  const SHARED = Boolean(document.getElementById("chat-boot")); // room.js owns the socket
  // A page with many rooms joins the first ones only; the rest keep the counts they loaded with.
  const MAX_JOINED = 100;

  const rooms = new Map(); // slug -> {els, lastSeq, readSeq, mentions, mentionIds}
  for (const el of document.querySelectorAll("[data-badges]")) {
    const slug = el.dataset.badges;
    const existing = rooms.get(slug);
    if (existing) {
      existing.els.push(el);
      continue;
    }
    rooms.set(slug, {
      els: [el],
      lastSeq: Number(el.dataset.lastSeq) || 0,
      readSeq: Number(el.dataset.readSeq) || 0,
      mentions: Number(el.dataset.mentions) || 0,
      mentionIds: new Set(),
      current: el.dataset.current === "1",
    });
  }

  function render(slug) {
    const room = rooms.get(slug);
    if (!room) return;
    const unread = Math.max(room.lastSeq - room.readSeq, 0);
    for (const el of room.els) {
      el.dataset.lastSeq = String(room.lastSeq);
      el.dataset.readSeq = String(room.readSeq);
      el.dataset.mentions = String(room.mentions);
      const mention = el.querySelector(".mention-badge");
      const count = el.querySelector(".unread");
      if (mention) {
        mention.hidden = room.current || room.mentions === 0;
        mention.title = `${room.mentions} mention${room.mentions === 1 ? "" : "s"}`;
        mention.firstChild.textContent = `@${room.mentions}`;
        mention.lastChild.textContent = ` mention${room.mentions === 1 ? "" : "s"}`;
      }
      if (count) {
        count.hidden = room.current || unread === 0;
        count.title = `${unread} unread`;
        count.firstChild.textContent = String(unread);
      }
    }
  }

  // --- events --------------------------------------------------------------------

  function onMessage(m) {
    const room = rooms.get(m.room);
    if (!room || m.seq <= room.lastSeq) return;
    room.lastSeq = m.seq;
    // Sending marks the room read up to the message, for its author.
    if (m.author.id === ME.id) room.readSeq = m.seq;
    render(m.room);
  }

  function onMention(frame) {
    const m = frame.message;
    const room = rooms.get(frame.room);
    const watching = frame.room === CURRENT && document.visibilityState === "visible";
    if (room && !room.current && m.seq > room.readSeq && !room.mentionIds.has(m.id)) {
      room.mentionIds.add(m.id);
      room.mentions += 1;
      if (m.seq > room.lastSeq) room.lastSeq = m.seq;
      render(frame.room);
    }
    if (!watching) notify(frame);
  }

  function notify(frame) {
    if (document.visibilityState !== "hidden") return;
    if (!("Notification" in window) || Notification.permission !== "granted") return;
    const m = frame.message;
    const who = m.author.display_name || m.author.username;
    const where = frame.room === CURRENT ? "" : ` in ${roomLabel(frame.room)}`;
    const note = new Notification(`${who} mentioned you${where}`, {
      body: m.body.length > 200 ? `${m.body.slice(0, 200)}…` : m.body,
      tag: `mention-${m.id}`,
    });
    note.addEventListener("click", () => {
      window.focus();
      if (frame.room !== CURRENT) window.location.assign(`/rooms/${encodeURIComponent(frame.room)}/`);
      note.close();
    });
  }

  function roomLabel(slug) {
    const room = rooms.get(slug);
    return room && room.els[0].dataset.name ? room.els[0].dataset.name : `#${slug}`;
  }

  function handle(frame) {
    if (frame.type === "message") onMessage(frame.message);
    else if (frame.type === "ack") onMessage(frame.message);
    else if (frame.type === "mention") onMention(frame);
    else if (frame.type === "joined" && rooms.has(frame.room)) {
      const room = rooms.get(frame.room);
      if (frame.last_seq > room.lastSeq) {
        room.lastSeq = frame.last_seq;
        render(frame.room);
      }
    }
  }

  // --- the socket: room.js's on a room page, our own on the room list --------------------

  let opened = 0;

  async function resync() {
    // After a reconnect the counts may have moved while we were away.
    try {
      const response = await fetch("/api/rooms/", { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (!response.ok) return;
      for (const r of await response.json()) {
        const room = rooms.get(r.slug);
        if (!room) continue;
        room.lastSeq = Math.max(room.lastSeq, r.last_seq);
        room.readSeq = r.last_seq - r.unread_count;
        room.mentions = r.mention_count;
        room.mentionIds.clear();
        render(r.slug);
      }
    } catch (_) {
      // The next reconnect tries again.
    }
  }

  function joinAll(send) {
    let joined = 0;
    for (const [slug, room] of rooms) {
      if (room.current || joined >= MAX_JOINED) continue;
      joined += 1;
      send({ type: "join", room: slug, ref: `badges:${slug}` });
    }
  }

  function onOpen(send) {
    opened += 1;
    if (opened > 1) resync();
    joinAll(send);
  }

  if (SHARED) {
    window.addEventListener("chat:open", (e) => onOpen(e.detail.send));
    window.addEventListener("chat:frame", (e) => handle(e.detail));
  } else {
    let attempt = 0;
    const connect = () => {
      const scheme = location.protocol === "https:" ? "wss" : "ws";
      const ws = new WebSocket(`${scheme}://${location.host}/ws/chat/`);
      const send = (frame) => {
        if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(frame));
      };
      ws.addEventListener("open", () => {
        attempt = 0;
        onOpen(send);
      });
      ws.addEventListener("message", (event) => {
        try {
          handle(JSON.parse(event.data));
        } catch (_) {
          // not JSON: ignore
        }
      });
      ws.addEventListener("close", (event) => {
        if (event.code === 4401 || event.code === 4403) return;
        const base = Math.min(15000, 500 * 2 ** attempt);
        attempt += 1;
        setTimeout(connect, Math.round(base / 2 + Math.random() * (base / 2)));
      });
      // Stay under the server's idle timeout.
      const ping = setInterval(() => {
        if (ws.readyState === WebSocket.OPEN) send({ type: "ping" });
        else if (ws.readyState === WebSocket.CLOSED) clearInterval(ping);
      }, 60000);
    };
    connect();
  }

  // --- notifications: asked for on a click ------------------------------------------------

  const button = document.getElementById("notify-enable");
  const panel = document.getElementById("notify-panel");
  if (button && "Notification" in window && Notification.permission === "default") {
    if (panel) panel.hidden = false;
    button.hidden = false;
    button.addEventListener("click", async () => {
      try {
        await Notification.requestPermission();
      } finally {
        button.hidden = true;
        if (panel) panel.hidden = true;
      }
    });
  }
})();
