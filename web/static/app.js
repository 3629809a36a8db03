// nanochat-tui's chat page: the conversation on screen, streaming replies, branches, commands.
// The server hands the page its limits, defaults, model and command list as one JSON object
// (#nanochat-config); nothing here retypes them. Message text reaches the DOM as text nodes, and
// replies through markdown.js (sanitized, behind the page's one Trusted Types policy).
"use strict";

(() => {
  const { el, iconButton, copyText, flashCopied, download, slug, randomId, prefersReducedMotion, isTouchFirst } =
    window.nanochat.util;
  const { Conversation, store, markdown, api } = window.nanochat;
  const { contentText, contentLength } = window.nanochat.content;
  const theme = window.nanochatTheme;

  const config = JSON.parse(document.getElementById("nanochat-config").textContent);
  const limits = config.limits;
  const defaults = config.defaults;

  const $ = (id) => document.getElementById(id);
  const chatContainer = $("chat-container");
  const chatWrapper = $("chat-wrapper");
  const emptyState = $("empty-state");
  const input = $("chat-input");
  const inputWrapper = $("input-wrapper");
  const sendButton = $("send-button");
  const stopButton = $("stop-button");
  const errorBanner = $("error-banner");
  const counter = $("char-counter");
  const scrollButton = $("scroll-bottom");
  const contextPrompt = $("context-prompt");
  const settingsButton = $("settings-button");
  const themeToggle = $("theme-toggle");
  const toast = $("toast");

  const MAX_INPUT_HEIGHT = 200;
  const NEAR_LIMIT = 0.8; // the character counter appears at 80 % of a limit
  const TOAST_MS = 8000;
  const touch = isTouchFirst();
  const numberFormat = new Intl.NumberFormat("en-US");

  // ------------------------------------------------------------------ settings

  // The words that turn the system message off, as the terminal app's /system takes them.
  const SYSTEM_OFF = ["off", "none", "clear", "-"];

  const prefs = window.nanochat.createSettings(config, {
    onSaved: () => updateCounter(),
    onKeySaved: (set) => note(set ? "API key set for this tab." : "API key cleared: requests go without one."),
    onClosed: () => input.focus(),
  });
  const settings = prefs.values;
  const { SAMPLING, LABELS } = prefs;

  // ------------------------------------------------------------------ state

  function makeConversation() {
    return Conversation.create({ model: { name: config.model.name, description: config.model.description },
      settings: { ...settings } });
  }

  let conv = makeConversation(); // a reload always opens a blank chat; earlier ones are in the sidebar
  const drafts = new Map(); // conversation id -> the unsent text typed there
  const nodes = new Map(); // message id -> its element on screen
  let busy = false;
  let controller = null; // aborts the streaming request
  let streamDone = Promise.resolve();
  let lastStats = null;
  let errorMarks = [];

  // ------------------------------------------------------------------ small helpers

  function autoGrow(area = input) {
    area.style.height = "auto";
    const wanted = area.scrollHeight;
    area.style.height = Math.min(wanted, MAX_INPUT_HEIGHT) + "px";
    area.style.overflowY = wanted > MAX_INPUT_HEIGHT ? "auto" : "hidden";
  }

  function updateButtons() {
    sendButton.disabled = busy || input.value.trim() === "";
    sendButton.hidden = busy;
    stopButton.hidden = !busy;
    document.body.classList.toggle("busy", busy);
  }

  function nearBottom() {
    return chatContainer.scrollHeight - chatContainer.scrollTop - chatContainer.clientHeight < 120;
  }

  function scrollToBottom(smooth = false) {
    chatContainer.scrollTo({ top: chatContainer.scrollHeight, behavior: smooth && !prefersReducedMotion() ? "smooth" : "auto" });
    updateScrollButton();
  }

  function updateScrollButton() {
    scrollButton.hidden = nearBottom();
  }

  function note(text) {
    const stick = nearBottom();
    const box = el("div", { className: "message note" }, [el("div", { className: "message-content", text })]);
    chatWrapper.appendChild(box);
    emptyState.hidden = true;
    if (stick) scrollToBottom();
  }

  function clearError() {
    errorBanner.textContent = "";
    errorBanner.hidden = true;
    for (const undo of errorMarks) undo();
    errorMarks = [];
  }

  // The banner keeps the server's exact words; the message they are about is marked as well.
  function showError(message, about = null) {
    clearError();
    errorBanner.textContent = message;
    errorBanner.hidden = false;
    if (!about) return;
    const target = about === "draft" ? inputWrapper : about === "system" ? settingsButton : nodes.get(about);
    if (!target) return;
    target.classList.add("has-error");
    target.setAttribute("aria-describedby", "error-banner");
    let label = null;
    if (target.classList.contains("message")) {
      label = el("p", { className: "error-mark", text: "The error below is about this message" });
      target.insertBefore(label, target.firstChild);
      target.scrollIntoView({ block: "nearest" });
    }
    errorMarks.push(() => {
      target.classList.remove("has-error");
      if (target === inputWrapper) target.removeAttribute("aria-describedby");
      else if (target.getAttribute("aria-describedby") === "error-banner") target.removeAttribute("aria-describedby");
      if (label) label.remove();
    });
  }

  // "Message 3 is too long…" names an index in the request; map it back to what was on screen.
  function errorSubject(message, refs, draftId) {
    const match = /^Message (\d+)\b/.exec(message);
    if (match) {
      const ref = refs[Number(match[1])];
      if (ref === undefined) return null;
      return ref === draftId ? "draft" : ref;
    }
    if (/^Total conversation is too long/.test(message) || /^Too many messages/.test(message)) return "draft";
    return null;
  }

  function storageProblem(err) {
    const sidebarNote = $("sidebar-note");
    sidebarNote.textContent = "Conversations cannot be saved in this browser (" + (err && err.message ? err.message : err) + ").";
    sidebarNote.classList.add("warning");
  }

  // Save a conversation (or forget it once it has no messages left, e.g. its first send failed).
  function persist(c = conv) {
    let job;
    if (c.isEmpty) {
      if (!c.stored) return Promise.resolve();
      c.stored = false;
      job = store.remove(c.id);
    } else {
      c.stored = true;
      job = store.put(c.toJSON());
    }
    return job.then(() => sidebar.refresh(), storageProblem);
  }

  // ------------------------------------------------------------------ toast (undo)

  let toastTimer = 0;
  let toastAction = null;

  function hideToast() {
    window.clearTimeout(toastTimer);
    toast.hidden = true;
    toastAction = null;
  }

  function armToastTimer() {
    window.clearTimeout(toastTimer);
    toastTimer = window.setTimeout(() => {
      if (!toast.matches(":hover, :focus-within")) hideToast();
      else armToastTimer();
    }, TOAST_MS);
  }

  function showToast(text, actionLabel, action) {
    $("toast-text").textContent = text;
    const button = $("toast-action");
    button.textContent = actionLabel || "";
    button.hidden = !action;
    toastAction = action;
    toast.hidden = false;
    armToastTimer();
  }

  $("toast-action").addEventListener("click", () => {
    const action = toastAction;
    hideToast();
    if (action) action();
  });
  $("toast-close").addEventListener("click", hideToast);

  // ------------------------------------------------------------------ rendering messages

  const FINISH_NOTES = { length: "length limit reached", cancelled: "stopped", error: "cut short by an error",
    disconnected: "connection lost" };

  function statsText(m) {
    const bits = [];
    if (m.stats && m.stats.summary) bits.push(m.stats.summary);
    if (FINISH_NOTES[m.finish]) bits.push(FINISH_NOTES[m.finish]);
    if (m.context === false) bits.push("left out of the context");
    return bits.join(" · ");
  }

  function asParts(content) {
    return typeof content === "string" ? [{ type: "text", text: content }] : content;
  }

  function toolLine(part) {
    return part.type === "python" ? "calculator: " + part.text : "= " + part.text;
  }

  // A reply: its text as Markdown, calculator calls as their own lines in between.
  function renderReply(target, content) {
    target.replaceChildren();
    let text = "";
    const flush = () => {
      if (!text) return;
      const part = el("div", { className: "md-part" });
      markdown.render(part, text);
      target.appendChild(part);
      text = "";
    };
    for (const part of asParts(content)) {
      if (part.type === "text") text += part.text;
      else {
        flush();
        target.appendChild(el("span", { className: "tool", text: toolLine(part) }));
      }
    }
    flush();
  }

  function copyTextOf(m) {
    if (typeof m.content === "string") return m.content;
    return m.content.map((p) => (p.type === "text" ? p.text : "\n" + toolLine(p) + "\n")).join("").trim();
  }

  function actionsFor(m) {
    const bar = el("div", { className: "message-actions", role: "group",
      "aria-label": m.role === "user" ? "Message actions" : "Reply actions" });
    const siblings = conv.siblings(m.id);
    if (siblings.length > 1) {
      const i = siblings.findIndex((s) => s.id === m.id);
      const prev = iconButton("prev", `Previous version (${i + 1} of ${siblings.length})`, () => switchVersion(m.id, -1),
        "action-button branch-prev");
      const next = iconButton("next", `Next version (${i + 1} of ${siblings.length})`, () => switchVersion(m.id, 1),
        "action-button branch-next");
      prev.disabled = i === 0;
      next.disabled = i === siblings.length - 1;
      bar.appendChild(el("span", { className: "branch-nav" },
        [prev, el("span", { className: "branch-count", text: `${i + 1}/${siblings.length}` }), next]));
    }
    const copy = iconButton("copy", m.role === "user" ? "Copy message" : "Copy reply",
      async () => flashCopied(copy, await copyText(copyTextOf(m))));
    bar.appendChild(copy);
    if (m.role === "user") {
      bar.appendChild(iconButton("edit", "Edit message", () => startEdit(m.id), "action-button edit-button"));
      // A message left without a reply (the page was closed mid-reply, or an imported file).
      if (!conv.children(m.id).length) {
        bar.appendChild(iconButton("regenerate", "Answer this message", () => regenerate(m.id),
          "action-button regenerate-button"));
      }
    } else {
      bar.appendChild(iconButton("regenerate", "Regenerate reply", () => regenerate(m.id), "action-button regenerate-button"));
    }
    return bar;
  }

  function messageElement(m) {
    const article = el("article", { className: `message ${m.role}`, tabindex: "0", "data-id": m.id,
      "aria-label": m.role === "user" ? "Your message" : "Reply" });
    const content = el("div", { className: "message-content" });
    article.appendChild(content);
    if (m.role === "user") content.textContent = contentText(m.content);
    else {
      content.classList.add("markdown");
      renderReply(content, m.content);
      if (m.context === false) article.classList.add("left-out");
      const stats = statsText(m);
      if (stats) article.appendChild(el("div", { className: "message-stats", text: stats }));
    }
    article.appendChild(actionsFor(m));
    nodes.set(m.id, article);
    return article;
  }

  function markLast() {
    for (const old of chatWrapper.querySelectorAll(".message.last")) old.classList.remove("last");
    const all = chatWrapper.querySelectorAll(".message.user, .message.assistant");
    if (all.length) all[all.length - 1].classList.add("last");
  }

  function renderConversation({ keepScroll = false } = {}) {
    const top = chatContainer.scrollTop;
    for (const old of Array.from(chatWrapper.children)) if (old !== emptyState) old.remove();
    nodes.clear();
    const path = conv.path();
    for (const m of path) chatWrapper.appendChild(messageElement(m));
    emptyState.hidden = path.length > 0;
    markLast();
    updateCounter();
    if (keepScroll) {
      chatContainer.scrollTop = top;
      updateScrollButton();
    } else scrollToBottom();
  }

  function replaceElement(m) {
    const old = nodes.get(m.id);
    const fresh = messageElement(m);
    if (old) old.replaceWith(fresh);
    markLast();
    return fresh;
  }

  function makeTyping() {
    const dots = el("span", { className: "typing-indicator", role: "status", "aria-label": "Assistant is typing" });
    for (let i = 0; i < 3; i++) dots.appendChild(el("span"));
    return dots;
  }

  // ------------------------------------------------------------------ the request

  // What the server gets: the settings' system message first, then the branch on screen. Replies
  // go back exactly as they arrived (nanochat's parts when the calculator was used), so the
  // server can map them to the tokens the model produced (docs/web-conversations.md).
  function requestMessages(path) {
    const messages = [];
    const refs = [];
    if (settings.system) {
      messages.push({ role: "system", content: settings.system });
      refs.push("system");
    }
    for (const m of path) {
      if (m.pending || m.context === false || contentLength(m.content) === 0) continue;
      messages.push({ role: m.role, content: m.content });
      refs.push(m.id);
    }
    return { messages, refs };
  }

  function updateCounter() {
    const draft = input.value.trim().length;
    const { messages } = requestMessages(conv.path());
    const total = messages.reduce((n, m) => n + contentLength(m.content), 0) + draft;
    const perMax = limits.max_message_chars;
    const totalMax = limits.max_total_chars;
    const nearMessage = draft >= perMax * NEAR_LIMIT;
    const nearTotal = total >= totalMax * NEAR_LIMIT;
    counter.hidden = !(nearMessage || nearTotal);
    if (counter.hidden) return;
    const bits = [];
    if (nearMessage) bits.push(`${numberFormat.format(draft)} / ${numberFormat.format(perMax)} characters in this message`);
    if (nearTotal) bits.push(`${numberFormat.format(total)} / ${numberFormat.format(totalMax)} in the whole conversation`);
    counter.textContent = bits.join(" · ");
    counter.classList.toggle("over", draft > perMax || total > totalMax);
  }

  // ------------------------------------------------------------------ streaming a reply

  // Stream a reply to `parentId` (a user message). `restore` says how to put things back exactly
  // as they were if nothing comes back: {kind: "send"|"regenerate"|"edit", snap, ...}.
  function streamReply(parentId, restore) {
    let finished;
    streamDone = new Promise((resolve) => {
      finished = resolve;
    });
    runStream(parentId, restore).finally(finished);
  }

  async function runStream(parentId, restore) {
    const mine = conv;
    busy = true;
    updateButtons();
    controller = new AbortController();
    const signal = controller.signal;
    const { messages, refs } = requestMessages(mine.path(parentId));
    mine.settings = { ...settings };
    mine.model = { name: config.model.name, description: config.model.description };
    const node = mine.add({ parent: parentId, role: "assistant", content: "", pending: true });
    if (restore.kind === "send") {
      // The branch only grows: append, so notes on screen (/help, /stats…) stay where they are.
      const asked = mine.get(parentId);
      if (!nodes.has(asked.id)) chatWrapper.appendChild(messageElement(asked));
      chatWrapper.appendChild(messageElement(node));
      emptyState.hidden = true;
      markLast();
      updateCounter();
    } else renderConversation();
    const article = nodes.get(node.id);
    article.classList.add("streaming");
    article.setAttribute("aria-busy", "true");
    article.querySelector(".message-actions").hidden = true;
    const contentEl = article.querySelector(".message-content");
    const typing = makeTyping(); // shown for the whole reply, after the text so far
    contentEl.appendChild(typing);
    scrollToBottom();

    const parts = [];
    let shown = false;
    let finish = null;
    let stats = null;
    let finalParts = null;
    let errorMessage = null;
    let status = 0;
    let stopped = false;
    let lost = false;
    let frame = 0;

    const paint = () => {
      frame = 0;
      if (!contentEl.isConnected) return;
      const stick = nearBottom();
      renderReply(contentEl, parts);
      contentEl.appendChild(typing);
      if (stick) scrollToBottom();
    };
    const schedule = () => {
      if (!frame) frame = window.requestAnimationFrame(paint);
    };
    const addText = (text) => {
      shown = true;
      const last = parts[parts.length - 1];
      if (last && last.type === "text") last.text += text;
      else parts.push({ type: "text", text });
      schedule();
    };
    const addPart = (type, text) => {
      shown = true;
      parts.push({ type, text });
      schedule();
    };

    const onEvent = (event) => {
      if (typeof event.token === "string") addText(event.token);
      else if (event.tool_call) addPart("python", String(event.tool_call.expression ?? ""));
      else if (event.tool_result) addPart("python_output", String(event.tool_result.result ?? "(no result)"));
      else if (typeof event.error === "string") errorMessage = event.error;
      else if (event.finish) {
        finish = event.finish;
        stats = event.stats || null;
        finalParts = Array.isArray(event.parts) ? event.parts : null;
      }
    };
    try {
      const body = { messages, temperature: settings.temperature, top_k: settings.top_k, max_tokens: settings.max_tokens };
      const result = await api.streamChat(body, signal, onEvent);
      if (!result.ok) {
        status = result.status;
        errorMessage = result.detail;
      } else if (!result.done) lost = true; // the server went away in the middle of the reply
    } catch (err) {
      if (err && err.name === "AbortError") stopped = true;
      else errorMessage = "Could not reach the server: " + (err && err.message ? err.message : err);
    }
    if (frame) window.cancelAnimationFrame(frame);

    busy = false;
    controller = null;
    const onScreen = conv === mine;
    let about = null;

    if (!shown && (stopped || lost || errorMessage || finish === "cancelled")) {
      // Nothing came back: put everything back exactly as it was.
      if (lost && !errorMessage) errorMessage = "The connection to the server was lost before the reply started.";
      if (errorMessage) about = errorSubject(errorMessage, refs, restore.userId);
      mine.remove(node.id);
      if (restore.userId) mine.remove(restore.userId);
      mine.restore(restore.snap);
      if (restore.kind === "send") {
        if (onScreen) {
          input.value = input.value.trim() === "" ? restore.raw : restore.raw + "\n" + input.value;
        } else {
          const other = drafts.get(mine.id) || "";
          drafts.set(mine.id, other.trim() === "" ? restore.raw : restore.raw + "\n" + other);
        }
      }
      persist(mine);
      if (onScreen) {
        renderConversation();
        if (restore.kind === "edit") {
          startEdit(restore.editOf, restore.text);
          if (about === "draft") about = restore.editOf;
        }
      }
    } else {
      delete node.pending;
      const streamed = parts.some((p) => p.type !== "text") ? parts : parts.map((p) => p.text).join("");
      node.content = finalParts || streamed;
      node.finish = lost ? "disconnected" : stopped ? "cancelled" : errorMessage ? "error" : finish || "stop";
      if (stats) {
        node.stats = stats;
        lastStats = stats;
      }
      if (lost && !errorMessage) errorMessage = "The connection to the server was lost in the middle of the reply.";
      mine.touch();
      persist(mine);
      if (onScreen) {
        const stick = nearBottom();
        const fresh = replaceElement(node);
        if (stick) scrollToBottom();
        fresh.setAttribute("aria-busy", "false");
      }
    }
    if (onScreen) {
      if (errorMessage) showError(errorMessage, about);
      if (status === 401) openKeyDialog();
      autoGrow();
      updateButtons();
      updateCounter();
      if (!errorMessage && !document.querySelector("dialog[open]") && !chatWrapper.querySelector(".editing")) input.focus();
    }
  }

  async function stopStream() {
    if (busy && controller) controller.abort();
    await streamDone;
  }

  // ------------------------------------------------------------------ sending, editing, branches

  const busyMessage = "A reply is being written: wait for it, or stop it (Esc) first.";

  function lostReplyToAsk(path) {
    return path.find((m) => m.role === "assistant" && m.finish === "disconnected" && m.context === undefined) || null;
  }

  let contextAsk = null;

  function askAboutLostReply(m) {
    contextAsk = m;
    contextPrompt.hidden = false;
    $("context-keep").focus();
  }

  function answerLostReply(keep) {
    const m = contextAsk;
    contextAsk = null;
    contextPrompt.hidden = true;
    if (!m) return;
    m.context = keep;
    persist();
    if (nodes.has(m.id)) replaceElement(m);
    send();
  }

  $("context-keep").addEventListener("click", () => answerLostReply(true));
  $("context-drop").addEventListener("click", () => answerLostReply(false));
  contextPrompt.addEventListener("keydown", (e) => {
    if (e.key === "Escape") {
      e.stopPropagation();
      contextAsk = null;
      contextPrompt.hidden = true;
      input.focus();
    }
  });

  // "/word rest" is a command, "//text" sends "/text", anything else is a message (as the
  // terminal app parses it: nanochat_tui/commands.py).
  const COMMAND_RE = /^\/([A-Za-z?][A-Za-z0-9_-]*)(?:\s+([\s\S]*))?$/;
  const SLASHES = new Map();
  for (const command of config.commands) for (const form of command.slash) SLASHES.set(form.slice(1).toLowerCase(), command);

  function parseInput(text) {
    if (text.startsWith("//")) return { text: text.slice(1) };
    const match = COMMAND_RE.exec(text);
    if (!match) return { text };
    const spec = SLASHES.get(match[1].toLowerCase());
    const arg = match[2] && match[2].trim() ? match[2].trim() : null;
    return { command: { name: spec ? spec.name : "unknown", arg, word: "/" + match[1] } };
  }

  async function send() {
    const raw = input.value;
    const text = raw.trim();
    if (text === "") return;
    const parsed = parseInput(text);
    clearError();
    if (parsed.command) {
      await runCommand(parsed.command);
      return;
    }
    if (busy) return;
    const lost = lostReplyToAsk(conv.path());
    if (lost) {
      askAboutLostReply(lost);
      return;
    }
    hideToast();
    const snap = conv.snapshot();
    const user = conv.add({ parent: conv.current, role: "user", content: parsed.text });
    input.value = "";
    autoGrow();
    updateButtons();
    persist();
    streamReply(user.id, { kind: "send", snap, raw, userId: user.id });
  }

  function regenerate(id) {
    if (busy) return showError(busyMessage);
    const m = conv.get(id);
    if (!m) return;
    clearError();
    const snap = conv.snapshot();
    streamReply(m.role === "assistant" ? m.parent : m.id, { kind: "regenerate", snap });
  }

  function startEdit(id, text = null) {
    if (busy) return showError(busyMessage);
    const m = conv.get(id);
    const article = nodes.get(id);
    if (!m || !article || article.classList.contains("editing")) return;
    article.classList.add("editing");
    const content = article.querySelector(".message-content");
    const actions = article.querySelector(".message-actions");
    const area = el("textarea", { className: "edit-input", "aria-label": "Edit your message", rows: "1" });
    area.value = text === null ? contentText(m.content) : text;
    const cancel = el("button", { type: "button", className: "text-button", text: "Cancel" });
    const save = el("button", { type: "button", className: "text-button primary", text: "Save",
      title: "Save and send: the earlier version stays as a branch" });
    const box = el("div", { className: "edit-box" }, [area, el("div", { className: "edit-buttons" }, [cancel, save])]);
    content.hidden = true;
    actions.hidden = true;
    article.insertBefore(box, content);
    const close = () => {
      box.remove();
      content.hidden = false;
      actions.hidden = false;
      article.classList.remove("editing");
    };
    const submit = () => {
      const edited = area.value.trim();
      if (!edited) return;
      if (busy) return showError(busyMessage);
      close();
      if (edited === contentText(m.content) && conv.children(m.id).length) return; // nothing changed
      clearError();
      const snap = conv.snapshot();
      const user = conv.add({ parent: m.parent, role: "user", content: edited });
      persist();
      streamReply(user.id, { kind: "edit", snap, userId: user.id, editOf: m.id, text: area.value });
    };
    cancel.addEventListener("click", () => {
      close();
      article.focus();
    });
    save.addEventListener("click", submit);
    area.addEventListener("input", () => {
      autoGrow(area);
      save.disabled = area.value.trim() === "";
    });
    area.addEventListener("keydown", (e) => {
      if (e.key === "Escape") {
        e.preventDefault();
        e.stopPropagation();
        close();
        article.focus();
      } else if (e.key === "Enter" && !e.isComposing && e.keyCode !== 229 &&
                 ((!e.shiftKey && !touch) || e.ctrlKey || e.metaKey)) {
        e.preventDefault();
        submit();
      }
    });
    autoGrow(area);
    area.focus();
    area.setSelectionRange(area.value.length, area.value.length);
  }

  function switchVersion(id, delta) {
    if (busy) return showError(busyMessage);
    const siblings = conv.siblings(id);
    const i = siblings.findIndex((s) => s.id === id);
    const target = siblings[i + delta];
    if (!target) return;
    clearError();
    conv.select(target.id);
    persist();
    renderConversation({ keepScroll: true });
    const article = nodes.get(target.id);
    if (article) {
      const button = article.querySelector(delta < 0 ? ".branch-prev" : ".branch-next");
      (button && !button.disabled ? button : article.querySelector(".branch-nav button:not(:disabled)") || article).focus();
    }
  }

  function lastOnPath(role) {
    const path = conv.path();
    for (let i = path.length - 1; i >= 0; i--) if (path[i].role === role) return path[i];
    return null;
  }

  // ------------------------------------------------------------------ conversations

  // Put `next` on screen. On a phone, focusing the input pops the keyboard over the chat, so only
  // New Conversation (where typing comes next) focuses it there.
  function show(next, focus = !touch) {
    if (conv !== next && (!conv.isEmpty || input.value.trim())) drafts.set(conv.id, input.value);
    conv = next;
    input.value = drafts.get(next.id) || "";
    drafts.delete(next.id);
    clearError();
    contextAsk = null;
    contextPrompt.hidden = true;
    renderConversation();
    sidebar.refresh();
    autoGrow();
    updateButtons();
    updateCounter();
    if (focus) input.focus();
  }

  async function newConversation() {
    await stopStream();
    const previous = conv;
    const draft = input.value;
    if (previous.isEmpty && draft.trim() === "") {
      show(previous, true);
      return;
    }
    show(makeConversation(), true);
    drafts.set(previous.id, draft);
    showToast("Started a new conversation.", "Undo", () => {
      if (conv.isEmpty && input.value.trim() === "") drafts.delete(conv.id);
      show(previous);
    });
  }

  async function openConversation(id) {
    if (id === conv.id) return;
    await stopStream();
    let record;
    try {
      record = await store.get(id);
    } catch (err) {
      storageProblem(err);
      return;
    }
    if (!record) {
      showError("That conversation is no longer saved in this browser.");
      sidebar.refresh();
      return;
    }
    const next = Conversation.fromJSON(record);
    next.stored = true;
    show(next);
  }

  async function conversationById(id) {
    if (id === conv.id) return conv;
    const record = await store.get(id);
    if (!record) return null;
    const found = Conversation.fromJSON(record);
    found.stored = true;
    return found;
  }

  async function exportAs(id, kind) {
    const c = await conversationById(id);
    if (!c || c.isEmpty) {
      note("Nothing to export yet: send a message first.");
      return;
    }
    if (kind === "json") {
      download(slug(c.title) + ".json", JSON.stringify(c.toJSON(), null, 2) + "\n", "application/json");
    } else {
      download(slug(c.title) + ".md", c.toMarkdown(), "text/markdown");
    }
  }

  async function renameConversation(id, title) {
    const c = await conversationById(id);
    if (!c) return;
    c.rename(title);
    await persist(c);
  }

  async function removeConversation(id) {
    const isCurrent = id === conv.id;
    if (isCurrent) await stopStream();
    const c = await conversationById(id);
    if (!c) return;
    const record = c.toJSON();
    try {
      await store.remove(id);
    } catch (err) {
      storageProblem(err);
      return;
    }
    c.stored = false;
    if (isCurrent) show(makeConversation());
    sidebar.refresh();
    showToast(`Deleted “${record.title}”.`, "Undo", async () => {
      await store.put(record);
      sidebar.refresh();
      if (isCurrent) {
        const back = Conversation.fromJSON(record);
        back.stored = true;
        show(back);
      }
    });
  }

  async function importFile(file) {
    clearError();
    let data;
    try {
      data = JSON.parse(await file.text());
    } catch (err) {
      showError(`Could not import ${file.name}: it is not a JSON file (${err.message}).`);
      return;
    }
    let c;
    try {
      c = Conversation.fromJSON(data);
    } catch (err) {
      showError(`Could not import ${file.name}: ${err.message}.`);
      return;
    }
    try {
      if (c.id === conv.id || (await store.get(c.id))) c.id = randomId("c-"); // an import never overwrites
      await store.put(c.toJSON());
    } catch (err) {
      storageProblem(err);
      return;
    }
    await stopStream();
    c.stored = true;
    show(c);
  }

  const sidebar = window.nanochat.createSidebar({
    open: openConversation,
    rename: renameConversation,
    remove: removeConversation,
    exportAs,
    importFile,
    currentId: () => conv.id,
  });

  // ------------------------------------------------------------------ commands

  function helpText() {
    const rows = config.commands.map((c) => [c.slash.join(", ") + (c.arg ? " " + c.arg : ""), c.help]);
    const keys = touch
      ? [["Send button", "send the message (Enter adds a line)"], ["Stop button", "stop the reply"]]
      : [["Enter", "send the message"], ["Shift+Enter", "add a line"], ["Esc", "stop the reply"],
        ["Ctrl+Shift+O", "new conversation (Ctrl+Shift+N too, where the browser lets the page have it)"],
        ["PageUp, PageDown", "scroll the chat from the message box (Home and End too when it is empty)"],
        ["Tab", "reach each message and its buttons (copy, edit, regenerate, versions)"]];
    const width = Math.max(...rows.concat(keys).map((r) => r[0].length));
    const line = ([a, b]) => "  " + a.padEnd(width) + "  " + b;
    return ["Commands", ...rows.map(line), "", "Keys", ...keys.map(line), "",
      "Start a message with // to send text that begins with /."].join("\n");
  }

  function statsReport() {
    const last = lastOnPath("assistant");
    const summary = (last && last.stats && last.stats.summary) || (lastStats && lastStats.summary) || "none yet";
    return [
      "Model: " + config.model.description,
      `Settings: temperature ${settings.temperature} · top-k ${settings.top_k || "0 (full vocabulary)"} · max tokens ${settings.max_tokens}`,
      "System message: " + (settings.system ? settings.system : "none"),
      "Last reply: " + summary,
    ].join("\n");
  }

  function finishCommand() {
    input.value = "";
    autoGrow();
    updateButtons();
    updateCounter();
  }

  const COMMANDS = {
    help() {
      note(helpText());
    },
    async new() {
      finishCommand();
      await newConversation();
      return false;
    },
    stop() {
      if (busy && controller) controller.abort();
      else note("No reply is being written.");
    },
    regenerate() {
      if (busy) return showError(busyMessage), false;
      const path = conv.path();
      const last = path[path.length - 1];
      if (!last) return note("Nothing to regenerate yet.");
      finishCommand();
      regenerate(last.id);
      return false;
    },
    edit() {
      if (busy) return showError(busyMessage), false;
      const last = lastOnPath("user");
      if (!last) return note("No message to edit yet.");
      finishCommand();
      startEdit(last.id);
      return false;
    },
    async copy() {
      const last = lastOnPath("assistant");
      if (!last) return note("No reply to copy yet.");
      note((await copyText(copyTextOf(last))) ? "Copied the last reply." : "Could not copy: select the reply and copy it.");
    },
    async temperature(arg) {
      return samplingCommand("temperature", arg);
    },
    async top_k(arg) {
      return samplingCommand("top_k", arg);
    },
    async max_tokens(arg) {
      return samplingCommand("max_tokens", arg);
    },
    system(arg) {
      if (arg === null) {
        note(settings.system ? "System message: " + settings.system : "No system message (set one with /system TEXT, or in the settings).");
      } else if (SYSTEM_OFF.includes(arg.toLowerCase())) {
        settings.system = null;
        prefs.save();
        note("System message removed." + (defaults.system ? " (This server adds its own default system message.)" : ""));
      } else {
        settings.system = arg;
        prefs.save();
        note("System message set; it is sent first with every request from now on.");
      }
      updateCounter();
    },
    stats() {
      note(statsReport());
    },
    async export(arg) {
      const kind = (arg || "md").toLowerCase();
      if (kind !== "md" && kind !== "json" && kind !== "markdown") {
        showError(`Export as md or json (for example /export json), not ${arg}.`);
        return false;
      }
      await exportAs(conv.id, kind === "json" ? "json" : "md");
    },
    theme(arg) {
      let choice;
      if (arg === null) choice = theme.effective() === "dark" ? "light" : "dark";
      else {
        choice = arg.toLowerCase();
        if (!["light", "dark", "system"].includes(choice)) {
          showError(`Unknown theme ${arg}: choose light, dark or system.`);
          return false;
        }
      }
      theme.set(choice);
      note(choice === "system" ? `Theme: following the system (${theme.effective()} now).` : `Theme: ${choice}.`);
    },
    settings() {
      finishCommand();
      openSettings();
      return false;
    },
    key(arg) {
      if (arg === null) {
        finishCommand();
        openKeyDialog();
        return false;
      }
      api.setKey(arg);
      note("API key set for this tab.");
    },
  };

  async function samplingCommand(key, arg) {
    if (arg === null) {
      note(`${LABELS[key]}: ${settings[key]}`);
      return;
    }
    // The server parses typed values with the rulebook the API and the terminal use (same words).
    const result = await api.postJSON("/settings", { [key]: arg });
    if (!result.ok) {
      showError(result.detail);
      return false; // keep the text in the input to fix it
    }
    settings[key] = result.data[key];
    prefs.save();
    note(`${LABELS[key]} set to ${settings[key]}`);
  }

  async function runCommand(command) {
    if (command.name === "unknown") {
      showError(`Unknown command ${command.word}: type /help for the list, or /${command.word} to send it as a message`);
      return;
    }
    const handler = COMMANDS[command.name];
    if (!handler) {
      showError(`${command.word} is not available on this page.`);
      return;
    }
    const keep = await handler(command.arg);
    if (keep !== false) finishCommand();
  }

  const openSettings = prefs.openSettings;
  const openKeyDialog = prefs.openKeyDialog;
  settingsButton.addEventListener("click", openSettings);

  // ------------------------------------------------------------------ theme toggle

  function showTheme(effective) {
    const dark = effective === "dark";
    themeToggle.setAttribute("aria-pressed", String(dark));
  }
  themeToggle.addEventListener("click", () => theme.set(theme.effective() === "dark" ? "light" : "dark"));
  theme.onChange(showTheme);
  showTheme(theme.effective());

  // ------------------------------------------------------------------ wiring

  input.addEventListener("input", () => {
    autoGrow();
    updateButtons();
    updateCounter();
  });

  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.isComposing && e.keyCode !== 229) {
      // On a touch screen Enter adds a line and the send button sends; Ctrl/Cmd+Enter always sends.
      if ((!e.shiftKey && !touch) || e.ctrlKey || e.metaKey) {
        e.preventDefault();
        send();
      }
      return;
    }
    const page = chatContainer.clientHeight * 0.9;
    const empty = input.value === "";
    const plain = !e.ctrlKey && !e.metaKey && !e.altKey && !e.shiftKey;
    if (e.key === "PageUp" && plain) {
      e.preventDefault();
      chatContainer.scrollBy({ top: -page });
    } else if (e.key === "PageDown" && plain) {
      e.preventDefault();
      chatContainer.scrollBy({ top: page });
    } else if (e.key === "Home" && plain && empty) {
      e.preventDefault();
      chatContainer.scrollTo({ top: 0 });
    } else if (e.key === "End" && plain && empty) {
      e.preventDefault();
      scrollToBottom();
    }
  });

  document.addEventListener("keydown", (e) => {
    if (document.querySelector("dialog[open]")) return; // a dialog handles its own keys (Esc closes it)
    const key = (e.key || "").toLowerCase();
    // Ctrl+Shift+O everywhere; Ctrl+Shift+N where the browser lets the page see it (Chromium keeps
    // it for a new incognito window, so the page never promises it alone).
    if ((e.ctrlKey || e.metaKey) && e.shiftKey && !e.altKey && (key === "o" || key === "n")) {
      e.preventDefault();
      newConversation();
    } else if (e.key === "Escape" && busy && controller) {
      e.preventDefault();
      controller.abort();
    }
  });

  sendButton.addEventListener("click", () => send());
  stopButton.addEventListener("click", () => {
    if (controller) controller.abort();
  });
  $("new-conversation").addEventListener("click", () => newConversation());
  chatContainer.addEventListener("scroll", updateScrollButton, { passive: true });
  scrollButton.addEventListener("click", () => {
    scrollToBottom(true);
    input.focus();
  });

  if (touch) {
    document.body.classList.add("touch");
    $("hint").textContent = "Enter adds a line; the send button sends · /help lists the commands";
    const hint = $("empty-hint");
    hint.replaceChildren("Ask anything. The send button sends, Enter adds a line; type ",
      el("code", { text: "/help" }), " for commands.");
    sendButton.title = "Send";
  }

  if (config.api_key_required && !api.key()) note("This server needs an API key: type /key to enter it.");
  sidebar.refresh();
  autoGrow();
  updateButtons();
  updateCounter();
  input.focus();

  // For the browser tests and anyone poking at the page from the console.
  window.nanochat.page = { commands: Object.keys(COMMANDS), settings: () => ({ ...settings }) };
})();
