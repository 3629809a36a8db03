// Conversations are kept in this browser's IndexedDB (nothing is stored on the server): one
// record per conversation, in the shape docs/web-conversations.md describes. Other tabs of the
// same page hear about changes through a BroadcastChannel and refresh their lists.
"use strict";

(() => {
  const DB_NAME = "nanochat";
  const STORE = "conversations";
  const DB_VERSION = 1;

  let opening = null;
  const channel = "BroadcastChannel" in window ? new BroadcastChannel("nanochat-conversations") : null;
  const listeners = [];
  if (channel) channel.onmessage = () => listeners.forEach((fn) => fn());

  function open() {
    if (opening) return opening;
    opening = new Promise((resolve, reject) => {
      if (!window.indexedDB) {
        reject(new Error("this browser has no IndexedDB"));
        return;
      }
      let request;
      try {
        request = window.indexedDB.open(DB_NAME, DB_VERSION);
      } catch (err) {
        reject(err);
        return;
      }
      request.onupgradeneeded = () => {
        const db = request.result;
        if (!db.objectStoreNames.contains(STORE)) {
          const store = db.createObjectStore(STORE, { keyPath: "id" });
          store.createIndex("updated", "updated");
        }
      };
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error || new Error("IndexedDB refused to open"));
      request.onblocked = () => reject(new Error("another tab holds an older version of the database open"));
    });
    return opening;
  }

  async function run(mode, action) {
    const db = await open();
    return new Promise((resolve, reject) => {
      const tx = db.transaction(STORE, mode);
      const result = action(tx.objectStore(STORE));
      tx.oncomplete = () => resolve(result && "result" in result ? result.result : undefined);
      tx.onerror = () => reject(tx.error || new Error("IndexedDB transaction failed"));
      tx.onabort = () => reject(tx.error || new Error("IndexedDB transaction aborted"));
    });
  }

  function changed() {
    if (channel) channel.postMessage("changed");
  }

  const store = {
    available: () => open().then(() => true, () => false),
    async list() {
      const all = (await run("readonly", (s) => s.getAll())) || [];
      return all.sort((a, b) => (a.updated < b.updated ? 1 : a.updated > b.updated ? -1 : 0));
    },
    get: (id) => run("readonly", (s) => s.get(id)),
    async put(record) {
      await run("readwrite", (s) => s.put(record));
      changed();
    },
    async remove(id) {
      await run("readwrite", (s) => s.delete(id));
      changed();
    },
    onChange: (fn) => listeners.push(fn),
  };

  window.nanochat.store = store;
})();
