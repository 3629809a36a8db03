// The settings (system message, temperature, top-k, max tokens), remembered per browser in
// localStorage, with their dialog, and the API key dialog. Ranges, defaults and hints come from
// the server's page config (#nanochat-config); a typed value is checked by the server's rulebook
// (POST /settings), so the dialog shows the same words as the terminal and the API.
"use strict";

(() => {
  const STORAGE_KEY = "nanochat.settings";
  const SAMPLING = ["temperature", "top_k", "max_tokens"];
  const LABELS = { temperature: "Temperature", top_k: "Top-k", max_tokens: "Max tokens" };

  function createSettings(config, { onSaved, onKeySaved, onClosed }) {
    const { api } = window.nanochat;
    const theme = window.nanochatTheme;
    const { limits, defaults } = config;
    const $ = (id) => document.getElementById(id);

    function valid(key, value) {
      const [lo, hi] = limits[key];
      if (typeof value !== "number" || !Number.isFinite(value) || value < lo || value > hi) return false;
      return key === "temperature" || Number.isInteger(value);
    }

    // The remembered values where still within the server's ranges, its defaults otherwise.
    const values = { temperature: defaults.temperature, top_k: defaults.top_k, max_tokens: defaults.max_tokens,
      system: defaults.system || null };
    try {
      const saved = JSON.parse(window.localStorage.getItem(STORAGE_KEY) || "null");
      if (saved && typeof saved === "object") {
        for (const key of SAMPLING) if (valid(key, saved[key])) values[key] = saved[key];
        if (typeof saved.system === "string" && saved.system.trim()) values.system = saved.system;
        else if (saved.system === null) values.system = null;
      }
    } catch (_) {
      /* nothing remembered, or storage off */
    }

    function save() {
      try {
        window.localStorage.setItem(STORAGE_KEY, JSON.stringify(values));
      } catch (_) {
        /* used for this page only */
      }
    }

    // ---- the settings dialog
    const dialog = $("settings-dialog");
    const error = $("settings-error");
    const fields = {
      system: $("setting-system"),
      temperature: $("setting-temperature"),
      top_k: $("setting-top_k"),
      max_tokens: $("setting-max_tokens"),
      theme: $("setting-theme"),
    };
    for (const key of SAMPLING) {
      const [lo, hi] = limits[key];
      fields[key].min = String(lo);
      fields[key].max = String(hi);
      // The hint is the command registry's own range text, e.g. "0-200; 0 = full vocabulary".
      const help = (config.commands.find((c) => c.name === key) || {}).help || "";
      const inParens = /\(([^)]*)\)\s*$/.exec(help);
      $(`setting-${key}-hint`).textContent = inParens ? inParens[1] : `${lo}–${hi}`;
    }
    fields.system.placeholder = defaults.system || "None";

    function fill(from) {
      fields.system.value = from.system || "";
      for (const key of SAMPLING) fields[key].value = String(from[key]);
    }

    function openSettings() {
      fill(values);
      fields.theme.value = theme.choice();
      error.hidden = true;
      error.textContent = "";
      dialog.showModal();
      fields.system.focus();
    }

    $("settings-reset").addEventListener("click", () => {
      fill({ ...defaults, system: defaults.system || "" });
      fields.theme.value = "system";
    });
    $("settings-cancel").addEventListener("click", () => dialog.close());
    $("settings-form").addEventListener("submit", async (e) => {
      e.preventDefault();
      const body = {};
      for (const key of SAMPLING) body[key] = fields[key].value;
      const result = await api.postJSON("/settings", body);
      if (!result.ok) {
        error.textContent = result.detail;
        error.hidden = false;
        const wrong = SAMPLING.find((key) => result.detail.toLowerCase().startsWith(key));
        if (wrong) fields[wrong].focus();
        return;
      }
      for (const key of SAMPLING) values[key] = result.data[key];
      values.system = fields.system.value.trim() ? fields.system.value : null;
      save();
      theme.set(fields.theme.value);
      dialog.close();
      onSaved();
    });
    dialog.addEventListener("close", onClosed);

    // ---- the API key dialog: a password field, never echoed on the page
    const keyDialog = $("key-dialog");
    const keyInput = $("key-input");

    function openKeyDialog() {
      if (keyDialog.open) return;
      keyInput.value = api.key() || "";
      keyDialog.showModal();
      keyInput.focus();
    }

    $("key-form").addEventListener("submit", (e) => {
      e.preventDefault();
      api.setKey(keyInput.value.trim());
      keyInput.value = "";
      keyDialog.close();
      onKeySaved(Boolean(api.key()));
    });
    $("key-cancel").addEventListener("click", () => keyDialog.close());
    keyDialog.addEventListener("close", onClosed);

    return { values, save, openSettings, openKeyDialog, SAMPLING, LABELS };
  }

  window.nanochat.createSettings = createSettings;
})();
