// A conversation as a tree of messages. Editing a message or regenerating a reply adds a sibling,
// so every earlier version stays as a branch; `current` names the last message of the branch on
// screen, and the request sent to the server is always that branch (current and its ancestors).
// The stored (IndexedDB) and exported JSON shape is documented in docs/web-conversations.md.
"use strict";

(() => {
  const { randomId } = window.nanochat.util;
  const FORMAT = "nanochat-conversation";
  const VERSION = 1;
  const PART_TYPES = new Set(["text", "python", "python_output"]);
  const FINISHES = new Set(["stop", "length", "cancelled", "error", "disconnected"]);
  const TITLE_CHARS = 60;

  const now = () => new Date().toISOString();

  function contentText(content) {
    if (typeof content === "string") return content;
    return content.filter((p) => p.type === "text").map((p) => p.text).join("");
  }

  function contentLength(content) {
    if (typeof content === "string") return content.length;
    return content.reduce((n, p) => n + p.text.length, 0);
  }

  function titleFrom(text) {
    const line = text.replace(/\s+/g, " ").trim();
    return line.length > TITLE_CHARS ? line.slice(0, TITLE_CHARS - 1).trimEnd() + "…" : line || "New conversation";
  }

  class Conversation {
    constructor(record) {
      this.id = record.id;
      this.title = record.title;
      this.titleEdited = Boolean(record.title_edited);
      this.created = record.created;
      this.updated = record.updated;
      this.model = record.model || null;
      this.settings = record.settings || null;
      this.messages = record.messages.map((m) => ({ ...m }));
      this.byId = new Map(this.messages.map((m) => [m.id, m]));
      this.current = record.current && this.byId.has(record.current) ? record.current : null;
      // Which child each message shows (keyed by parent id, "" for the first message). Not
      // stored: it starts as the path to `current`, and later children otherwise.
      this.shown = new Map();
      for (const m of this.path()) this.shown.set(m.parent || "", m.id);
    }

    static create({ model, settings }) {
      const time = now();
      return new Conversation({ id: randomId("c-"), title: "New conversation", created: time, updated: time,
        model, settings, messages: [], current: null });
    }

    get isEmpty() {
      return !this.messages.some((m) => !m.pending);
    }

    get(id) {
      return this.byId.get(id) || null;
    }

    children(parentId) {
      return this.messages.filter((m) => (m.parent || null) === (parentId || null));
    }

    siblings(id) {
      const m = this.get(id);
      return m ? this.children(m.parent) : [];
    }

    // The branch on screen: from the first message down to `current`.
    path(to = this.current) {
      const out = [];
      let m = to ? this.get(to) : null;
      while (m) {
        out.unshift(m);
        m = m.parent ? this.get(m.parent) : null;
      }
      return out;
    }

    add({ parent = null, role, content, ...extra }) {
      const message = { id: randomId("m-"), parent, role, content, created: now(), ...extra };
      this.messages.push(message);
      this.byId.set(message.id, message);
      this.shown.set(parent || "", message.id);
      this.current = message.id;
      if (role === "user" && !this.titleEdited && !parent) this.title = titleFrom(contentText(content));
      this.touch();
      return message;
    }

    // Remove a message and everything under it (a failed turn that is being undone).
    remove(id) {
      const doomed = new Set([id]);
      let grew = true;
      while (grew) {
        grew = false;
        for (const m of this.messages) {
          if (m.parent && doomed.has(m.parent) && !doomed.has(m.id)) {
            doomed.add(m.id);
            grew = true;
          }
        }
      }
      this.messages = this.messages.filter((m) => !doomed.has(m.id));
      for (const gone of doomed) this.byId.delete(gone);
      for (const [key, value] of Array.from(this.shown)) if (doomed.has(value) || doomed.has(key)) this.shown.delete(key);
      if (this.current && doomed.has(this.current)) this.current = null;
    }

    // Show `id` and, below it, the branch last shown there (or the newest one).
    select(id) {
      let m = this.get(id);
      if (!m) return;
      for (const step of this.path(id)) this.shown.set(step.parent || "", step.id);
      for (;;) {
        const kids = this.children(m.id);
        if (!kids.length) break;
        const remembered = this.get(this.shown.get(m.id));
        m = remembered && remembered.parent === m.id ? remembered : kids[kids.length - 1];
        this.shown.set(m.parent || "", m.id);
      }
      this.current = m.id;
    }

    snapshot() {
      return { current: this.current, shown: new Map(this.shown) };
    }

    restore(snap) {
      this.current = snap.current && this.byId.has(snap.current) ? snap.current : null;
      this.shown = new Map(Array.from(snap.shown).filter(([, v]) => this.byId.has(v)));
    }

    touch() {
      this.updated = now();
    }

    rename(title) {
      this.title = title.trim() || this.title;
      this.titleEdited = true;
      this.touch();
    }

    toJSON() {
      const keep = this.messages.filter((m) => !m.pending);
      const ids = new Set(keep.map((m) => m.id));
      let current = this.current;
      while (current && !ids.has(current)) current = this.get(current) ? this.get(current).parent : null;
      return {
        format: FORMAT,
        version: VERSION,
        id: this.id,
        title: this.title,
        title_edited: this.titleEdited,
        created: this.created,
        updated: this.updated,
        model: this.model,
        settings: this.settings,
        current: current || null,
        messages: keep.map((m) => {
          const out = { id: m.id, parent: m.parent || null, role: m.role, content: m.content, created: m.created };
          for (const key of ["finish", "stats", "context"]) if (m[key] !== undefined) out[key] = m[key];
          return out;
        }),
      };
    }

    // The branch on screen as Markdown, for people (the JSON export is for importing back).
    toMarkdown() {
      const lines = [`# ${this.title}`, ""];
      const model = this.model && this.model.name ? ` · ${this.model.name}` : "";
      lines.push(`_nanochat conversation${model} · ${this.updated}_`, "");
      const system = this.settings && this.settings.system;
      if (system) lines.push("## System", "", system, "");
      for (const m of this.path()) {
        lines.push(m.role === "user" ? "## You" : "## Assistant", "");
        if (typeof m.content === "string") lines.push(m.content);
        else {
          // Calculator calls and results in a fenced block between the reply's text.
          let fenced = false;
          for (const part of m.content) {
            if (part.type === "text") {
              if (fenced) lines.push("```", "");
              fenced = false;
              lines.push(part.text);
            } else {
              if (!fenced) lines.push("", "```");
              fenced = true;
              lines.push(part.type === "python" ? `calculator: ${part.text}` : `= ${part.text}`);
            }
          }
          if (fenced) lines.push("```");
        }
        const note = { length: "length limit reached", cancelled: "stopped", error: "cut short by an error",
          disconnected: "connection lost" }[m.finish];
        if (note) lines.push("", `_(${note})_`);
        lines.push("");
      }
      return lines.join("\n");
    }

    // A parsed JSON file (an export) back into a Conversation; throws Error with a short reason.
    static fromJSON(data) {
      const fail = (why) => {
        throw new Error(why);
      };
      if (!data || typeof data !== "object" || Array.isArray(data)) fail("the file is not a JSON object");
      if (data.format !== FORMAT) fail(`"format" must be "${FORMAT}"`);
      if (data.version !== VERSION) fail(`version ${JSON.stringify(data.version)} is not supported (this page reads version ${VERSION})`);
      if (!Array.isArray(data.messages)) fail('"messages" must be a list');
      const seen = new Set();
      const messages = data.messages.map((m, i) => {
        if (!m || typeof m !== "object") fail(`message ${i} is not an object`);
        if (typeof m.id !== "string" || !m.id || seen.has(m.id)) fail(`message ${i} needs a unique string "id"`);
        if (m.parent !== null && m.parent !== undefined && !seen.has(m.parent)) {
          fail(`message ${i}'s "parent" must be an earlier message's id, or null`);
        }
        if (m.role !== "user" && m.role !== "assistant") fail(`message ${i} has role ${JSON.stringify(m.role)} (user or assistant)`);
        const okContent =
          typeof m.content === "string" ||
          (m.role === "assistant" && Array.isArray(m.content) &&
            m.content.every((p) => p && PART_TYPES.has(p.type) && typeof p.text === "string"));
        if (!okContent) fail(`message ${i} has content that is neither a string nor a list of parts`);
        if (m.finish !== undefined && !FINISHES.has(m.finish)) fail(`message ${i} has an unknown "finish"`);
        seen.add(m.id);
        const out = {
          id: m.id,
          parent: m.parent || null,
          role: m.role,
          content: typeof m.content === "string" ? m.content : m.content.map((p) => ({ type: p.type, text: p.text })),
          created: typeof m.created === "string" ? m.created : now(),
        };
        if (m.finish !== undefined) out.finish = m.finish;
        if (m.stats && typeof m.stats === "object") out.stats = m.stats;
        if (typeof m.context === "boolean") out.context = m.context;
        return out;
      });
      if (data.current !== null && data.current !== undefined && !seen.has(data.current)) fail('"current" must be a message id');
      const time = now();
      return new Conversation({
        id: typeof data.id === "string" && data.id ? data.id : randomId("c-"),
        title: typeof data.title === "string" && data.title.trim() ? data.title : "Imported conversation",
        title_edited: Boolean(data.title_edited),
        created: typeof data.created === "string" ? data.created : time,
        updated: typeof data.updated === "string" ? data.updated : time,
        model: data.model && typeof data.model === "object" ? data.model : null,
        settings: data.settings && typeof data.settings === "object" ? data.settings : null,
        messages,
        current: data.current || (messages.length ? messages[messages.length - 1].id : null),
      });
    }
  }

  window.nanochat.Conversation = Conversation;
  window.nanochat.content = { contentText, contentLength };
})();
