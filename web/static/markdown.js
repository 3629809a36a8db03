// Replies as Markdown: markdown-it turns the text into HTML (raw HTML in the text stays text),
// highlight.js colours fenced code, DOMPurify sanitizes the result, and the page's ONE Trusted
// Types policy, "nanochat-html", lets only that sanitized HTML reach the DOM.
//
// Why the policy is shaped this way: under `require-trusted-types-for 'script'` DOMPurify itself
// needs a policy to parse its input (DOMParser is a sink too), and the server's CSP allows exactly
// one policy name. So the policy signs strings only while sanitize() below is running DOMPurify
// (DOMPurify hands it the input to parse into an inert document, which never runs anything, and
// then its sanitized output); at any other moment createHTML throws. The policy object never
// leaves this closure, and the only TrustedHTML the page assigns is DOMPurify's output.
"use strict";

(() => {
  const { el, icon, copyText, flashCopied } = window.nanochat.util;
  const SAFE_URL = /^(?:https?:|mailto:)/i; // links anywhere else (javascript:, data:, file:) stay text

  let signing = 0;
  const policy =
    window.trustedTypes && window.trustedTypes.createPolicy
      ? window.trustedTypes.createPolicy("nanochat-html", {
          createHTML(html) {
            if (signing === 0) throw new TypeError("nanochat-html only signs HTML that DOMPurify is sanitizing");
            return html;
          },
          createScriptURL() {
            throw new TypeError("nanochat-html never signs script URLs");
          },
        })
      : null; // a browser without Trusted Types: DOMPurify's string output is assigned directly

  const PURIFY = {
    ALLOWED_TAGS: ["p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "s", "del", "code",
      "pre", "blockquote", "ul", "ol", "li", "table", "thead", "tbody", "tr", "th", "td", "a", "span", "div"],
    ALLOWED_ATTR: ["href", "title", "class", "start"],
    ALLOW_DATA_ATTR: false,
    ALLOWED_URI_REGEXP: SAFE_URL,
  };

  // Every link opens in a new tab without giving that tab a handle on this page.
  let hooked = false;
  function hookLinks() {
    if (hooked) return;
    hooked = true;
    window.DOMPurify.addHook("afterSanitizeAttributes", (node) => {
      if (node.tagName === "A") {
        if (node.hasAttribute("href")) {
          node.setAttribute("target", "_blank");
          node.setAttribute("rel", "noopener noreferrer");
        }
      }
    });
  }

  function sanitize(html) {
    hookLinks();
    signing += 1;
    try {
      const config = policy
        ? { ...PURIFY, TRUSTED_TYPES_POLICY: policy, RETURN_TRUSTED_TYPE: true }
        : { ...PURIFY, TRUSTED_TYPES_POLICY: null };
      return window.DOMPurify.sanitize(html, config);
    } finally {
      signing -= 1;
    }
  }

  let md = null;
  function parser() {
    if (md) return md;
    md = window.markdownit({
      html: false, // HTML typed by a user or written by the model is shown, never parsed
      linkify: true,
      breaks: true, // a single newline is a line break, as the model (and the old plain page) meant it
      typographer: false,
      highlight(code, lang) {
        const hljs = window.hljs;
        if (!lang || !hljs || !hljs.getLanguage(lang)) return ""; // markdown-it escapes it as plain code
        try {
          return hljs.highlight(code, { language: lang, ignoreIllegals: true }).value;
        } catch (_) {
          return "";
        }
      },
    });
    md.validateLink = (url) => SAFE_URL.test(url.trim());

    // Fenced code gets a wrapper; the language label and copy button are added as elements later.
    const fence = md.renderer.rules.fence;
    md.renderer.rules.fence = (tokens, idx, options, env, self) =>
      `<div class="code-block">${fence(tokens, idx, options, env, self)}</div>\n`;
    md.renderer.rules.code_block = (tokens, idx) =>
      `<div class="code-block"><pre><code>${md.utils.escapeHtml(tokens[idx].content)}</code></pre></div>\n`;
    // No remote images (the CSP would refuse them, and they would tell a server someone read the
    // reply): an image becomes a link to it.
    md.renderer.rules.image = (tokens, idx, options, env, self) => {
      const token = tokens[idx];
      const src = token.attrGet("src") || "";
      const alt = self.renderInlineAsText(token.children || [], options, env) || src;
      const label = md.utils.escapeHtml(alt);
      return SAFE_URL.test(src) ? `<a href="${md.utils.escapeHtml(src)}">${label}</a>` : label;
    };
    // Table alignment as a class: a style attribute would break the CSP's `style-src 'self'`.
    md.core.ruler.push("align_classes", (state) => {
      for (const token of state.tokens) {
        if (token.type !== "th_open" && token.type !== "td_open") continue;
        const style = token.attrGet("style");
        if (!style) continue;
        token.attrs = token.attrs.filter(([name]) => name !== "style");
        const match = /text-align:\s*(left|right|center)/.exec(style);
        if (match) token.attrJoin("class", "align-" + match[1]);
      }
    });
    return md;
  }

  function decorateCodeBlocks(root) {
    // Wide code and tables scroll sideways; keyboard users need to reach them to scroll them.
    for (const scroller of root.querySelectorAll(".code-block pre, table")) scroller.tabIndex = 0;
    for (const block of root.querySelectorAll(".code-block")) {
      const code = block.querySelector("code");
      const match = code ? /(?:^|\s)language-(\S+)/.exec(code.className) : null;
      const lang = match ? match[1] : "";
      const copy = el("button", { type: "button", className: "code-copy", "aria-label": "Copy code", title: "Copy code" },
        [icon("copy", 14)]);
      copy.addEventListener("click", async () => flashCopied(copy, await copyText(code ? code.textContent : "")));
      block.insertBefore(el("div", { className: "code-head" }, [el("span", { className: "code-lang", text: lang || "code" }), copy]),
        block.firstChild);
    }
  }

  // Replace `target`'s children with `text` rendered as Markdown.
  function render(target, text) {
    const html = parser().render(text).replace(/\s+$/, "");
    target.innerHTML = sanitize(html);
    decorateCodeBlocks(target);
  }

  window.nanochat.markdown = { render };
})();
