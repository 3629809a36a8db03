// nanochat-tui chat page. Plain JS, no dependencies. Every piece of message text reaches the DOM
// through textContent / text nodes only (the CSP's Trusted Types would refuse any HTML sink).
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const chatContainer = $("chat-container");
  const chatWrapper = $("chat-wrapper");
  const emptyState = $("empty-state");
  const input = $("chat-input");
  const sendButton = $("send-button");
  const stopButton = $("stop-button");
  const newButton = $("new-conversation");
  const errorBanner = $("error-banner");

  const MAX_INPUT_HEIGHT = 200;
  const data = document.body.dataset;
  const settings = {
    temperature: Number(data.temperature),
    top_k: Number(data.topK),
    max_tokens: Number(data.maxTokens),
  };
  let apiKey = null;

  // The conversation: what is sent to the server, each with its element on the page.
  let entries = []; // {role: "user"|"assistant", content: string | parts[], el}
  let busy = false; // a reply is streaming
  let controller = null; // aborts the streaming request
  let generation = 0; // bumps on New Conversation, so a stream that ends late changes nothing

  // ------------------------------------------------------------------ small helpers

  function autoGrow() {
    input.style.height = "auto";
    const wanted = input.scrollHeight;
    input.style.height = Math.min(wanted, MAX_INPUT_HEIGHT) + "px";
    input.style.overflowY = wanted > MAX_INPUT_HEIGHT ? "auto" : "hidden";
  }

  function updateButtons() {
    sendButton.disabled = busy || input.value.trim() === "";
    sendButton.hidden = busy;
    stopButton.hidden = !busy;
  }

  function showError(message) {
    errorBanner.textContent = message;
    errorBanner.hidden = false;
  }

  function clearError() {
    errorBanner.textContent = "";
    errorBanner.hidden = true;
  }

  function nearBottom() {
    return chatContainer.scrollHeight - chatContainer.scrollTop - chatContainer.clientHeight < 120;
  }

  function scrollToBottom() {
    chatContainer.scrollTop = chatContainer.scrollHeight;
  }

  function contentText(content) {
    if (typeof content === "string") return content;
    return content.filter((p) => p.type === "text").map((p) => p.text).join("");
  }

  function contentLength(content) {
    if (typeof content === "string") return content.length;
    return content.reduce((n, p) => n + p.text.length, 0);
  }

  function makeMessage(role, text) {
    const el = document.createElement("div");
    el.className = "message " + role;
    const content = document.createElement("div");
    content.className = "message-content";
    content.textContent = text;
    el.appendChild(content);
    emptyState.hidden = true;
    chatWrapper.appendChild(el);
    return el;
  }

  function addNote(text) {
    const stick = nearBottom();
    makeMessage("note", text);
    if (stick) scrollToBottom();
  }

  function addEntry(role, content) {
    const el = makeMessage(role, contentText(content));
    const entry = { role, content, el };
    entries.push(entry);
    el.querySelector(".message-content").addEventListener("click", () => {
      if (role === "user") editMessage(entry);
      else regenerate(entry);
    });
    el.querySelector(".message-content").title =
      role === "user" ? "Click to edit and resend" : "Click to regenerate";
    return entry;
  }

  // Remove entry i and everything after it (notes included) from the page and the history.
  function truncateAt(index) {
    let node = entries[index].el;
    while (node) {
      const next = node.nextSibling;
      node.remove();
      node = next;
    }
    entries = entries.slice(0, index);
    emptyState.hidden = chatWrapper.querySelector(".message") !== null;
  }

  // ------------------------------------------------------------------ conversation actions

  function newConversation() {
    generation += 1;
    if (controller) controller.abort();
    controller = null;
    busy = false;
    entries = [];
    for (const el of Array.from(chatWrapper.querySelectorAll(".message"))) el.remove();
    emptyState.hidden = false;
    clearError();
    input.value = "";
    autoGrow();
    updateButtons();
    input.focus();
  }

  function editMessage(entry) {
    if (busy) return;
    const index = entries.indexOf(entry);
    if (index < 0) return;
    clearError();
    input.value = contentText(entry.content);
    truncateAt(index);
    autoGrow();
    updateButtons();
    input.focus();
    input.setSelectionRange(input.value.length, input.value.length);
  }

  function regenerate(entry) {
    if (busy) return;
    const index = entries.indexOf(entry);
    if (index < 0) return;
    clearError();
    truncateAt(index);
    streamReply(null);
  }

  async function send() {
    const raw = input.value;
    const text = raw.trim();
    if (busy || text === "") return;
    clearError();
    if (text.startsWith("/") && !text.startsWith("//")) {
      await runCommand(text);
      return;
    }
    const message = text.startsWith("//") ? text.slice(1) : text;
    addEntry("user", message);
    input.value = "";
    autoGrow();
    scrollToBottom();
    streamReply(raw);
  }

  // ------------------------------------------------------------------ slash commands

  const HELP = [
    "Commands:",
    "  /temperature [T]   show or set the temperature (0.0-2.0; 0 = always the likeliest token)",
    "  /topk [K]          show or set top-k (0-200; 0 = the full vocabulary)",
    "  /maxtokens [N]     show or set the reply length limit (1-4096 tokens)",
    "  /clear             start a new conversation (also the + button, Ctrl+Shift+N or Ctrl+Shift+O)",
    "  /key [KEY]         use an API key for this server (kept in this tab only)",
    "  /help              this help",
    "Keys: Enter sends, Shift+Enter adds a line, Esc stops a reply.",
    "Click your message to edit and resend it; click a reply to regenerate it.",
    "Start a message with // to send text that begins with /.",
  ].join("\n");

  const SETTINGS = {
    "/temperature": ["temperature", "Temperature"],
    "/topk": ["top_k", "Top-k"],
    "/maxtokens": ["max_tokens", "Max tokens"],
  };

  async function runCommand(text) {
    const [command, ...rest] = text.split(/\s+/);
    const arg = rest.join(" ");
    const name = command.toLowerCase();
    if (name === "/help") {
      addNote(HELP);
    } else if (name === "/clear") {
      newConversation();
      return;
    } else if (name === "/key") {
      apiKey = arg || null;
      addNote(apiKey ? "API key set for this tab." : "API key cleared.");
    } else if (SETTINGS[name]) {
      const [key, label] = SETTINGS[name];
      if (arg === "") {
        addNote(`${label}: ${settings[key]}`);
      } else {
        // The server parses typed values with the same rulebook (and words) as the API and CLI.
        const result = await postJSON("/settings", { [key]: arg });
        if (!result.ok) {
          showError(result.detail);
          return; // keep the text in the input to fix it
        }
        settings[key] = result.data[key];
        addNote(`${label} set to ${settings[key]}`);
      }
    } else {
      showError(`Unknown command ${command}. Type /help for the commands (// sends a message starting with /).`);
      return;
    }
    input.value = "";
    autoGrow();
    updateButtons();
  }

  function headers() {
    const h = { "Content-Type": "application/json" };
    if (apiKey) h.Authorization = "Bearer " + apiKey;
    return h;
  }

  async function errorDetail(response) {
    let detail = "";
    try {
      const body = await response.json();
      if (body && typeof body.detail === "string") detail = body.detail;
    } catch (_) {
      /* not JSON */
    }
    if (!detail) detail = `The server answered ${response.status} ${response.statusText}`.trim();
    const retry = response.headers.get("Retry-After");
    if (response.status === 503 && retry) detail += ` (retry in ${retry} s)`;
    return detail;
  }

  async function postJSON(url, body) {
    try {
      const response = await fetch(url, { method: "POST", headers: headers(), body: JSON.stringify(body) });
      if (!response.ok) return { ok: false, detail: await errorDetail(response) };
      return { ok: true, data: await response.json() };
    } catch (err) {
      return { ok: false, detail: "Could not reach the server: " + err.message };
    }
  }

  // ------------------------------------------------------------------ streaming a reply

  function makeTyping() {
    const dots = document.createElement("span");
    dots.className = "typing-indicator";
    dots.setAttribute("role", "status");
    dots.setAttribute("aria-label", "Assistant is typing");
    for (let i = 0; i < 3; i++) dots.appendChild(document.createElement("span"));
    return dots;
  }

  // restoreText: what goes back into the input if the reply fails before any text (null for a
  // regeneration, which has nothing typed to restore).
  async function streamReply(restoreText) {
    const mine = generation;
    busy = true;
    updateButtons();
    controller = new AbortController();
    const signal = controller.signal;

    const el = makeMessage("assistant", "");
    el.classList.add("streaming");
    const contentEl = el.querySelector(".message-content");
    const typing = makeTyping();
    contentEl.appendChild(typing);
    let textNode = null;
    let text = "";
    let shown = false; // anything (text or a tool line) is in the reply
    let parts = null;
    let stats = null;
    let finish = null;
    let errorMessage = null;
    let stopped = false;
    scrollToBottom();

    const reveal = () => {
      if (!shown) {
        typing.remove();
        shown = true;
      }
    };
    const addText = (piece) => {
      reveal();
      if (!textNode) {
        textNode = document.createTextNode("");
        contentEl.appendChild(textNode);
      }
      textNode.appendData(piece);
      text += piece;
    };
    const addTool = (line) => {
      reveal();
      const tool = document.createElement("span");
      tool.className = "tool";
      tool.textContent = line;
      contentEl.appendChild(tool);
      textNode = null; // text after the tool line goes after it
    };

    const payload = {
      messages: entries
        .filter((e) => contentLength(e.content) > 0)
        .map((e) => ({ role: e.role, content: e.content })),
      temperature: settings.temperature,
      top_k: settings.top_k,
      max_tokens: settings.max_tokens,
    };

    try {
      const response = await fetch("/chat/completions", {
        method: "POST",
        headers: headers(),
        body: JSON.stringify(payload),
        signal,
      });
      if (!response.ok) {
        errorMessage = await errorDetail(response);
      } else {
        const reader = response.body.getReader();
        const decoder = new TextDecoder();
        let buffer = "";
        let done = false;
        while (!done) {
          const chunk = await reader.read();
          if (chunk.done) break;
          buffer += decoder.decode(chunk.value, { stream: true });
          let cut;
          while (!done && (cut = buffer.indexOf("\n\n")) >= 0) {
            const block = buffer.slice(0, cut);
            buffer = buffer.slice(cut + 2);
            for (const line of block.split("\n")) {
              if (!line.startsWith("data:")) continue;
              let event;
              try {
                event = JSON.parse(line.slice(5).trim());
              } catch (_) {
                continue;
              }
              if (mine !== generation) return;
              const stick = nearBottom();
              if (typeof event.token === "string") addText(event.token);
              else if (event.tool_call) addTool("calculator: " + event.tool_call.expression);
              else if (event.tool_result) addTool("= " + (event.tool_result.result ?? "(no result)"));
              else if (typeof event.error === "string") errorMessage = event.error;
              else if (event.finish) {
                finish = event.finish;
                stats = event.stats || null;
                parts = Array.isArray(event.parts) ? event.parts : null;
              }
              if (stick) scrollToBottom();
              if (event.done) {
                done = true;
                break;
              }
            }
          }
        }
        if (!done && !errorMessage) errorMessage = "The connection closed before the reply finished.";
      }
    } catch (err) {
      if (err && err.name === "AbortError") stopped = true;
      else errorMessage = "Could not reach the server: " + (err && err.message ? err.message : err);
    }

    if (mine !== generation) return; // New Conversation happened meanwhile
    busy = false;
    controller = null;
    typing.remove();
    el.classList.remove("streaming");

    if (!shown && (stopped || errorMessage || finish === "cancelled")) {
      // Nothing came back: undo the turn, and put the typed text back to fix or resend.
      el.remove();
      if (restoreText !== null && entries.length && entries[entries.length - 1].role === "user") {
        const last = entries[entries.length - 1];
        truncateAt(entries.length - 1);
        if (input.value.trim() === "") input.value = restoreText || contentText(last.content);
      }
      emptyState.hidden = chatWrapper.querySelector(".message") !== null;
    } else {
      const entry = { role: "assistant", content: parts || text, el };
      entries.push(entry);
      contentEl.addEventListener("click", () => regenerate(entry));
      contentEl.title = "Click to regenerate";
      const note = stopped || finish === "cancelled" ? "stopped" : finish === "length" ? "length limit reached" : "";
      if (stats || note) {
        const line = document.createElement("div");
        line.className = "message-stats";
        line.textContent = [stats ? stats.summary : "", note].filter(Boolean).join(" · ");
        entry.el.appendChild(line);
      }
    }
    if (errorMessage) showError(errorMessage);
    autoGrow();
    updateButtons();
    if (!errorMessage) input.focus();
  }

  // ------------------------------------------------------------------ wiring

  input.addEventListener("input", () => {
    autoGrow();
    updateButtons();
  });

  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
      e.preventDefault();
      send();
    }
  });

  document.addEventListener("keydown", (e) => {
    const key = (e.key || "").toLowerCase();
    // Ctrl+Shift+N where the browser lets the page see it (Chromium keeps it for a new
    // incognito window), Ctrl+Shift+O everywhere.
    if ((e.ctrlKey || e.metaKey) && e.shiftKey && !e.altKey && (key === "n" || key === "o")) {
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
  newButton.addEventListener("click", () => newConversation());

  if (data.apiKeyRequired === "true") {
    addNote("This server needs an API key: type /key followed by the key.");
  }
  autoGrow();
  updateButtons();
  input.focus();
})();
