// The colour theme. Loaded in <head> without `defer` so the remembered theme is on <html>
// before the body is drawn (no white flash on a dark page). The choice is "light", "dark" or
// "system" (follow prefers-color-scheme); it is remembered per browser in localStorage.
"use strict";

(() => {
  const KEY = "nanochat.theme";
  const root = document.documentElement;
  const media = window.matchMedia ? window.matchMedia("(prefers-color-scheme: dark)") : null;
  const listeners = [];

  function choice() {
    try {
      const value = window.localStorage.getItem(KEY);
      return value === "light" || value === "dark" ? value : "system";
    } catch (_) {
      return "system"; // storage switched off: follow the system
    }
  }

  function effective(which) {
    if (which === "system") return media && media.matches ? "dark" : "light";
    return which;
  }

  function apply() {
    const which = choice();
    root.dataset.theme = effective(which);
    root.dataset.themeChoice = which;
    for (const listener of listeners) listener(root.dataset.theme, which);
  }

  function set(which) {
    try {
      if (which === "system") window.localStorage.removeItem(KEY);
      else window.localStorage.setItem(KEY, which);
    } catch (_) {
      /* not remembered, but still applied below for this page */
      root.dataset.themeChoice = which;
      root.dataset.theme = effective(which);
      for (const listener of listeners) listener(root.dataset.theme, which);
      return;
    }
    apply();
  }

  apply();
  if (media && media.addEventListener) media.addEventListener("change", apply);
  window.addEventListener("storage", (e) => {
    if (e.key === KEY) apply(); // another tab changed it
  });

  window.nanochatTheme = {
    choice: () => root.dataset.themeChoice || choice(),
    effective: () => root.dataset.theme,
    set,
    onChange: (listener) => listeners.push(listener),
  };
})();
