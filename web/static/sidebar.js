// The conversation list: open, rename, delete, export (JSON or Markdown), import. A view only:
// each action is handed to the page (app.js), which owns the conversation on screen and the store.
"use strict";

(() => {
  const { el, icon } = window.nanochat.util;

  const WIDE = "(min-width: 900px)"; // beside the chat; narrower screens get a drawer over it
  const OPEN_KEY = "nanochat.sidebar";

  function remembered() {
    try {
      return window.localStorage.getItem(OPEN_KEY);
    } catch (_) {
      return null;
    }
  }

  function remember(value) {
    try {
      window.localStorage.setItem(OPEN_KEY, value);
    } catch (_) {
      /* not remembered */
    }
  }

  function shortDate(iso) {
    const date = new Date(iso);
    if (Number.isNaN(date.getTime())) return "";
    const today = new Date();
    if (date.toDateString() === today.toDateString()) {
      return date.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
    }
    return date.toLocaleDateString(undefined, { year: "numeric", month: "short", day: "numeric" });
  }

  function createSidebar(actions) {
    const $ = (id) => document.getElementById(id);
    const aside = $("sidebar");
    const list = $("conversation-list");
    const empty = $("sidebar-empty");
    const note = $("sidebar-note");
    const toggle = $("sidebar-toggle");
    const backdrop = $("sidebar-backdrop");
    const importButton = $("import-button");
    const importFile = $("import-file");
    const wide = window.matchMedia(WIDE);
    let renaming = null; // id being renamed: a refresh keeps its input

    function isOpen() {
      return !aside.hidden;
    }

    function setOpen(open, { focus = false, save = true } = {}) {
      aside.hidden = !open;
      backdrop.hidden = !open || wide.matches;
      toggle.setAttribute("aria-expanded", String(open));
      document.body.classList.toggle("sidebar-open", open);
      if (save && wide.matches) remember(open ? "open" : "closed");
      if (open && focus) {
        const current = list.querySelector(".conversation-item.current .conversation-open") || importButton;
        current.focus();
      }
    }

    function closeIfDrawer() {
      if (!wide.matches && isOpen()) setOpen(false);
    }

    toggle.addEventListener("click", () => setOpen(!isOpen(), { focus: !isOpen() }));
    $("sidebar-close").addEventListener("click", () => {
      setOpen(false);
      toggle.focus();
    });
    backdrop.addEventListener("click", () => setOpen(false));
    aside.addEventListener("keydown", (e) => {
      if (e.key === "Escape" && !wide.matches) {
        e.stopPropagation();
        setOpen(false);
        toggle.focus();
      }
    });
    wide.addEventListener("change", () => setOpen(wide.matches && remembered() !== "closed", { save: false }));
    setOpen(wide.matches && remembered() !== "closed", { save: false });

    importButton.addEventListener("click", () => importFile.click());
    importFile.addEventListener("change", () => {
      const file = importFile.files && importFile.files[0];
      importFile.value = "";
      if (file) actions.importFile(file);
    });

    // Close any open action menu when clicking elsewhere or pressing Escape.
    function closeMenus(except) {
      for (const details of list.querySelectorAll("details[open]")) if (details !== except) details.open = false;
    }
    document.addEventListener("click", (e) => {
      const inside = e.target.closest ? e.target.closest("details.conversation-menu") : null;
      closeMenus(inside);
    });
    list.addEventListener("keydown", (e) => {
      if (e.key === "Escape") {
        const details = e.target.closest("details[open]");
        if (details) {
          e.stopPropagation();
          details.open = false;
          details.querySelector("summary").focus();
        }
      }
    });

    function startRename(item, record) {
      renaming = record.id;
      const input = el("input", { type: "text", className: "rename-input", "aria-label": "New name" });
      input.value = record.title;
      const open = item.querySelector(".conversation-open");
      open.hidden = true;
      item.querySelector(".conversation-menu").hidden = true;
      item.insertBefore(input, open);
      input.focus();
      input.select();
      let done = false;
      const finish = (save) => {
        if (done) return;
        done = true;
        renaming = null;
        const title = input.value.trim();
        if (save && title && title !== record.title) actions.rename(record.id, title);
        else refreshNow();
      };
      input.addEventListener("keydown", (e) => {
        if (e.key === "Enter") {
          e.preventDefault();
          finish(true);
        } else if (e.key === "Escape") {
          e.preventDefault();
          e.stopPropagation();
          finish(false);
        }
      });
      input.addEventListener("blur", () => finish(true));
    }

    function menuItem(label, onClick) {
      const button = el("button", { type: "button", className: "menu-item", text: label });
      button.addEventListener("click", (e) => {
        e.stopPropagation();
        button.closest("details").open = false;
        onClick();
      });
      return button;
    }

    function item(record, currentId) {
      const current = record.id === currentId;
      const open = el("button", {
        type: "button", className: "conversation-open", title: record.title,
        "aria-current": current ? "page" : undefined,
      }, [el("span", { className: "conversation-title", text: record.title }),
        el("span", { className: "conversation-date", text: shortDate(record.updated) })]);
      open.addEventListener("click", () => {
        actions.open(record.id);
        closeIfDrawer();
      });
      const summary = el("summary", { className: "action-button", "aria-label": `Actions for ${record.title}`,
        title: "Rename, export or delete" }, [icon("more")]);
      const menu = el("details", { className: "conversation-menu" }, [summary, el("div", { className: "menu", role: "group",
        "aria-label": `Actions for ${record.title}` }, [
        menuItem("Rename", () => startRename(li, record)),
        menuItem("Export JSON", () => actions.exportAs(record.id, "json")),
        menuItem("Export Markdown", () => actions.exportAs(record.id, "md")),
        menuItem("Delete", () => actions.remove(record.id)),
      ])]);
      menu.addEventListener("toggle", () => {
        if (menu.open) closeMenus(menu);
      });
      const li = el("li", { className: "conversation-item" + (current ? " current" : ""), "data-id": record.id },
        [open, menu]);
      return li;
    }

    let pending = null;
    async function refreshNow() {
      let records;
      try {
        records = await window.nanochat.store.list();
      } catch (err) {
        list.replaceChildren();
        empty.hidden = true;
        note.textContent = "Conversations cannot be saved in this browser (" + (err && err.message ? err.message : err) + ").";
        note.classList.add("warning");
        return;
      }
      if (renaming) return; // do not pull the input away from someone typing a name
      const currentId = actions.currentId();
      list.replaceChildren(...records.map((r) => item(r, currentId)));
      empty.hidden = records.length > 0;
    }

    // Coalesce bursts of refreshes (a save per finished reply, other tabs) into one.
    function refresh() {
      if (!pending) {
        pending = Promise.resolve().then(() => {
          pending = null;
          return refreshNow();
        });
      }
      return pending;
    }

    window.nanochat.store.onChange(refresh);
    return { refresh, setOpen, isOpen, closeIfDrawer };
  }

  window.nanochat.createSidebar = createSidebar;
})();
