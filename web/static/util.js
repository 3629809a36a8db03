// Small DOM helpers shared by the page's scripts. Text only ever enters the DOM as text nodes
// here; the one place that turns Markdown into elements is markdown.js.
"use strict";

window.nanochat = window.nanochat || {};

(() => {
  const SVG = "http://www.w3.org/2000/svg";

  // Icon paths (24×24, stroked). Built with createElementNS: no markup strings.
  const ICONS = {
    copy: ["M9 9h10v11H9z", "M5 15V4h10"],
    check: ["M5 12l5 5 9-10"],
    edit: ["M4 20h4L19 9l-4-4L4 16z", "M13 7l4 4"],
    regenerate: ["M20 11a8 8 0 1 0-2.3 5.7", "M20 5v6h-6"],
    prev: ["M15 5l-7 7 7 7"],
    next: ["M9 5l7 7-7 7"],
    more: ["M5 12h.01M12 12h.01M19 12h.01"],
  };

  function icon(name, size = 16) {
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("width", String(size));
    svg.setAttribute("height", String(size));
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false");
    for (const d of ICONS[name]) {
      const path = document.createElementNS(SVG, "path");
      path.setAttribute("d", d);
      path.setAttribute("fill", "none");
      path.setAttribute("stroke", "currentColor");
      path.setAttribute("stroke-width", name === "more" ? "3" : "2");
      path.setAttribute("stroke-linecap", "round");
      path.setAttribute("stroke-linejoin", "round");
      svg.appendChild(path);
    }
    return svg;
  }

  // el("button", {className: "x", type: "button", "aria-label": "Copy"}, [child, "text"])
  function el(tag, attrs = {}, children = []) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "className") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key === "hidden") node.hidden = Boolean(value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  }

  function iconButton(name, label, onClick, className = "action-button") {
    const button = el("button", { type: "button", className, "aria-label": label, title: label }, [icon(name)]);
    button.addEventListener("click", onClick);
    return button;
  }

  // The clipboard API needs a secure context (https or localhost); a server opened by its LAN
  // address over http has none, so fall back to a hidden textarea and execCommand("copy").
  async function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      try {
        await navigator.clipboard.writeText(text);
        return true;
      } catch (_) {
        /* permission refused: try the old way */
      }
    }
    const area = el("textarea", { "aria-hidden": "true", tabindex: "-1", readonly: true, className: "offscreen" });
    area.value = text;
    document.body.appendChild(area);
    const focused = document.activeElement;
    area.select();
    let ok = false;
    try {
      ok = document.execCommand("copy");
    } catch (_) {
      ok = false;
    }
    area.remove();
    if (focused && focused.focus) focused.focus();
    return ok;
  }

  // Show a short "Copied" tick on a button after a copy.
  function flashCopied(button, ok) {
    const label = button.getAttribute("aria-label");
    button.classList.add(ok ? "copied" : "copy-failed");
    button.setAttribute("aria-label", ok ? "Copied" : "Copy failed");
    button.title = ok ? "Copied" : "Copy failed: select the text and copy it";
    window.setTimeout(() => {
      button.classList.remove("copied", "copy-failed");
      button.setAttribute("aria-label", label);
      button.title = label;
    }, 1500);
  }

  function download(filename, text, type) {
    const blob = new Blob([text], { type });
    const url = URL.createObjectURL(blob);
    const a = el("a", { href: url, download: filename, className: "offscreen" });
    document.body.appendChild(a);
    a.click();
    a.remove();
    window.setTimeout(() => URL.revokeObjectURL(url), 10_000);
  }

  function slug(title) {
    const base = (title || "conversation")
      .toLowerCase()
      .replace(/[^\p{L}\p{N}]+/gu, "-")
      .replace(/^-+|-+$/g, "")
      .slice(0, 60);
    return base || "conversation";
  }

  // Random ids that work without a secure context (crypto.randomUUID needs one).
  function randomId(prefix) {
    const bytes = new Uint8Array(12);
    window.crypto.getRandomValues(bytes);
    return prefix + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function prefersReducedMotion() {
    return window.matchMedia ? window.matchMedia("(prefers-reduced-motion: reduce)").matches : false;
  }

  // A touch screen without a hover-capable pointer: there Enter inserts a newline (the on-screen
  // keyboard's return key is how people break lines) and the send button sends.
  function isTouchFirst() {
    if (!window.matchMedia) return false;
    return window.matchMedia("(pointer: coarse)").matches && !window.matchMedia("(hover: hover)").matches;
  }

  window.nanochat.util = {
    el,
    icon,
    iconButton,
    copyText,
    flashCopied,
    download,
    slug,
    randomId,
    prefersReducedMotion,
    isTouchFirst,
  };
})();
