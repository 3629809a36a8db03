// Talking to the server: the API key (kept for this tab in sessionStorage, so it survives a
// reload but not closing the tab), JSON posts, and the streaming chat endpoint (server-sent
// events, see README "Web mode").
"use strict";

(() => {
  const KEY = "nanochat.apiKey";

  let apiKey = null;
  try {
    apiKey = window.sessionStorage.getItem(KEY);
  } catch (_) {
    apiKey = null; // storage off: the key lives in memory until the tab closes
  }

  function setKey(value) {
    apiKey = value || null;
    try {
      if (apiKey) window.sessionStorage.setItem(KEY, apiKey);
      else window.sessionStorage.removeItem(KEY);
    } catch (_) {
      /* kept in memory only */
    }
  }

  function headers() {
    const h = { "Content-Type": "application/json" };
    if (apiKey) h.Authorization = "Bearer " + apiKey;
    return h;
  }

  // The server's own words ({"detail": …}) when it gave them.
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
      if (!response.ok) return { ok: false, status: response.status, detail: await errorDetail(response) };
      return { ok: true, data: await response.json() };
    } catch (err) {
      return { ok: false, status: 0, detail: "Could not reach the server: " + err.message };
    }
  }

  // POST /chat/completions and hand each event to onEvent as it arrives. Resolves to
  // {ok: false, status, detail} when the server refused, or {ok: true, done, lost}: `done` once
  // {"done": true} arrived; `lost` when the connection broke mid-stream. Rejects when the
  // request never got an answer (AbortError after abort(), TypeError when unreachable); an
  // abort while reading rejects with the AbortError too.
  async function streamChat(body, signal, onEvent) {
    const response = await fetch("/chat/completions", { method: "POST", headers: headers(), body: JSON.stringify(body), signal });
    if (!response.ok) return { ok: false, status: response.status, detail: await errorDetail(response) };
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    try {
      for (;;) {
        const chunk = await reader.read();
        if (chunk.done) return { ok: true, done: false, lost: true }; // closed before {"done": true}
        buffer += decoder.decode(chunk.value, { stream: true });
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
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
            onEvent(event);
            if (event.done) return { ok: true, done: true, lost: false };
          }
        }
      }
    } catch (err) {
      if (err && err.name === "AbortError") throw err;
      return { ok: true, done: false, lost: true }; // the server went away in the middle
    }
  }

  window.nanochat.api = { key: () => apiKey, setKey, postJSON, streamChat };
})();
