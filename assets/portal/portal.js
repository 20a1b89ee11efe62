// GenomeGate patient portal: passkey ceremonies, the browser's own check
// of every access entry against the log's signed checkpoints, and live
// updates of the history page. No library: WebAuthn and WebCrypto only.
"use strict";

(function () {
  const csrf = () => document.querySelector('meta[name="csrf-token"]').content;

  // --- base64url <-> bytes ------------------------------------------------
  function fromB64(text) {
    const s = text.replace(/-/g, "+").replace(/_/g, "/");
    const bin = atob(s + "===".slice((s.length + 3) % 4));
    return Uint8Array.from(bin, (c) => c.charCodeAt(0));
  }
  function toB64url(buffer) {
    const bytes = new Uint8Array(buffer);
    let bin = "";
    bytes.forEach((b) => { bin += String.fromCharCode(b); });
    return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  async function post(path, body) {
    const response = await fetch(path, {
      method: "POST",
      credentials: "same-origin",
      headers: { "content-type": "application/json", "x-csrf-token": csrf() },
      body: body === undefined ? "{}" : JSON.stringify(body),
    });
    const answer = await response.json().catch(() => ({}));
    if (!response.ok) {
      const error = new Error(answer.code || "failed");
      error.code = answer.code;
      throw error;
    }
    return answer;
  }

  // --- passkey ceremonies -----------------------------------------------
  function say(text) {
    const status = document.getElementById("ceremony-status");
    if (status) status.textContent = text;
  }
  function failure(error) {
    const m = document.getElementById("ceremony-messages").dataset;
    if (error.code === "rate_limited") return m.limited;
    if (error.code === "enrollment_code_invalid" || error.code === "invalid_credentials") return m.refused;
    return m.failed;
  }

  async function register(form) {
    const ceremony = form.dataset.ceremony;
    const code = form.querySelector("#code").value;
    say(form.dataset.working);
    const options = await post(`/portal/passkeys/${ceremony}/begin`, { code });
    const pk = options.publicKey;
    pk.challenge = fromB64(pk.challenge);
    pk.user.id = fromB64(pk.user.id);
    (pk.excludeCredentials || []).forEach((c) => { c.id = fromB64(c.id); });
    // A passkey the browser can offer without a name: signing in asks
    // for nothing but the passkey.
    pk.authenticatorSelection = Object.assign({}, pk.authenticatorSelection,
      { residentKey: "required", requireResidentKey: true });
    const credential = await navigator.credentials.create({ publicKey: pk });
    const done = await post(`/portal/passkeys/${ceremony}/finish`, {
      id: credential.id,
      rawId: toB64url(credential.rawId),
      type: credential.type,
      response: {
        attestationObject: toB64url(credential.response.attestationObject),
        clientDataJSON: toB64url(credential.response.clientDataJSON),
        transports: credential.response.getTransports ? credential.response.getTransports() : [],
      },
      extensions: {},
    });
    form.hidden = true;
    const section = document.getElementById("enrolled");
    document.getElementById("recovery-code").textContent = done.recovery_code;
    section.hidden = false;
    section.querySelector("h2").focus();
  }

  async function signIn(button) {
    say(button.dataset.working);
    const options = await post("/portal/passkeys/sign-in/begin");
    const pk = options.publicKey;
    pk.challenge = fromB64(pk.challenge);
    (pk.allowCredentials || []).forEach((c) => { c.id = fromB64(c.id); });
    const credential = await navigator.credentials.get({ publicKey: pk });
    const r = credential.response;
    const done = await post("/portal/passkeys/sign-in/finish", {
      id: credential.id,
      rawId: toB64url(credential.rawId),
      type: credential.type,
      response: {
        authenticatorData: toB64url(r.authenticatorData),
        clientDataJSON: toB64url(r.clientDataJSON),
        signature: toB64url(r.signature),
        userHandle: r.userHandle ? toB64url(r.userHandle) : null,
      },
      extensions: {},
    });
    window.location.assign(done.next);
  }

  function ceremonies() {
    const form = document.getElementById("register");
    if (form) {
      // The letter's QR code carries the code in the fragment, which no
      // server sees; take it and drop it from the address bar.
      const match = /(?:^#|&)code=([^&]+)/.exec(window.location.hash);
      if (match) {
        form.querySelector("#code").value = decodeURIComponent(match[1]);
        window.history.replaceState(null, "", window.location.pathname);
      }
      form.addEventListener("submit", (event) => {
        event.preventDefault();
        register(form).catch((error) => say(failure(error)));
      });
    }
    const button = document.getElementById("sign-in");
    if (button) {
      button.addEventListener("click", () => {
        signIn(button).catch((error) => say(failure(error)));
      });
    }
  }

  // --- the log check (RFC 9162 proofs, C2SP signed notes) ---------------
  const enc = new TextEncoder();
  async function sha256(...parts) {
    const length = parts.reduce((n, p) => n + p.length, 0);
    const all = new Uint8Array(length);
    let at = 0;
    parts.forEach((p) => { all.set(p, at); at += p.length; });
    return new Uint8Array(await crypto.subtle.digest("SHA-256", all));
  }
  const node = (left, right) => sha256(Uint8Array.of(1), left, right);
  const same = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);

  async function logKeys() {
    const response = await fetch("/v1/log/keys", { credentials: "omit" });
    const keys = await response.json();
    const verifiers = [];
    for (const vkey of keys.verifier_keys) {
      // name+hex(key ID)+base64(0x01 ‖ key); the base64 may hold '+' too.
      const first = vkey.indexOf("+"), second = vkey.indexOf("+", first + 1);
      const name = vkey.slice(0, first), hash = vkey.slice(first + 1, second);
      const raw = fromB64(vkey.slice(second + 1));
      if (raw[0] !== 1 || raw.length !== 33) continue;
      const publicKey = await crypto.subtle.importKey("raw", raw.slice(1), { name: "Ed25519" }, false, ["verify"]);
      verifiers.push({ name, hash, publicKey });
    }
    return { origin: keys.origin, verifiers };
  }

  // A checkpoint whose signature verifies under one of the log's keys:
  // its size and root hash.
  async function checkpoint(note, keys) {
    const split = note.indexOf("\n\n");
    if (split < 0) throw new Error("not a signed note");
    const text = note.slice(0, split + 1);
    const lines = text.split("\n");
    if (lines[0] !== keys.origin) throw new Error("another log");
    let signed = false;
    for (const line of note.slice(split + 2).split("\n")) {
      const m = /^\u2014 (\S+) (\S+)$/.exec(line);
      if (!m) continue;
      const blob = fromB64(m[2]);
      const hash = Array.from(blob.slice(0, 4), (b) => b.toString(16).padStart(2, "0")).join("");
      for (const v of keys.verifiers) {
        if (v.name === m[1] && v.hash === hash &&
            await crypto.subtle.verify({ name: "Ed25519" }, v.publicKey, blob.slice(4), enc.encode(text))) {
          signed = true;
        }
      }
    }
    if (!signed) throw new Error("signature");
    return { size: Number(lines[1]), root: fromB64(lines[2]) };
  }

  async function included(leaf, index, size, proof, root) {
    let fn = index, sn = size - 1, r = leaf;
    for (const p of proof) {
      if (sn === 0) return false;
      if (fn % 2 === 1 || fn === sn) {
        r = await node(p, r);
        if (fn % 2 === 0) {
          while (fn % 2 === 0 && fn !== 0) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); }
        }
      } else {
        r = await node(r, p);
      }
      fn = Math.floor(fn / 2); sn = Math.floor(sn / 2);
    }
    return sn === 0 && same(r, root);
  }

  async function consistent(first, second, proof) {
    if (first.size === second.size) return proof.length === 0 && same(first.root, second.root);
    if (first.size > second.size || first.size === 0) return false;
    let path = proof.slice();
    if ((first.size & (first.size - 1)) === 0) path = [first.root].concat(path);
    if (path.length === 0) return false;
    let fn = first.size - 1, sn = second.size - 1;
    while (fn % 2 === 1) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); }
    let fr = path[0], sr = path[0];
    for (const c of path.slice(1)) {
      if (sn === 0) return false;
      if (fn % 2 === 1 || fn === sn) {
        fr = await node(c, fr); sr = await node(c, sr);
        if (fn % 2 === 0) {
          while (fn % 2 === 0 && fn !== 0) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); }
        }
      } else {
        sr = await node(sr, c);
      }
      fn = Math.floor(fn / 2); sn = Math.floor(sn / 2);
    }
    return sn === 0 && same(fr, first.root) && same(sr, second.root);
  }

  const SEEN = "genomegate.checkpoint";

  // The newest checkpoint must extend the last one this browser verified;
  // a log that was rewritten or shows another fork cannot prove it.
  async function extendsSeen(latest, keys) {
    let seen = null;
    try { seen = JSON.parse(localStorage.getItem(SEEN)); } catch (e) { seen = null; }
    if (seen && seen.size > 0) {
      const older = { size: seen.size, root: fromB64(seen.root) };
      if (older.size > latest.size) return false;
      if (older.size < latest.size) {
        const response = await fetch(`/v1/log/proofs/consistency?from=${older.size}&to=${latest.size}`, { credentials: "omit" });
        if (!response.ok) return false;
        const answer = await response.json();
        const signed = await checkpoint(answer.checkpoint, keys);
        if (signed.size !== latest.size || !same(signed.root, latest.root)) return false;
        if (!await consistent(older, latest, answer.proof.map(fromB64))) return false;
      } else if (!same(older.root, latest.root)) {
        return false;
      }
    }
    localStorage.setItem(SEEN, JSON.stringify({ size: latest.size, root: toB64url(latest.root) }));
    return true;
  }

  async function checkEntries(list) {
    const status = document.getElementById("log-check");
    const words = status.dataset;
    const entries = Array.from(list.querySelectorAll("li.entry"));
    if (entries.length === 0) return;
    status.textContent = words.waiting;
    const keys = await logKeys();
    let latest = null, failed = 0;
    for (const li of entries) {
      const mark = li.querySelector(".mark");
      let ok = false;
      if (li.dataset.index !== undefined) {
        try {
          const response = await fetch(`/v1/log/proofs/inclusion?index=${li.dataset.index}`, { credentials: "omit" });
          const answer = await response.json();
          const signed = await checkpoint(answer.checkpoint, keys);
          const leaf = await sha256(Uint8Array.of(0), fromB64(li.dataset.entry));
          ok = await included(leaf, Number(li.dataset.index), signed.size, answer.proof.map(fromB64), signed.root);
          if (ok && (!latest || signed.size > latest.size)) latest = signed;
        } catch (e) { ok = false; }
        if (!ok) failed += 1;
        mark.dataset.state = ok ? "verified" : "failed";
        mark.textContent = ok ? words.verified : words.failed;
      }
    }
    let fork = false;
    if (latest) {
      try { fork = !await extendsSeen(latest, keys); } catch (e) { fork = true; }
    }
    status.dataset.state = fork || failed > 0 ? "failed" : "verified";
    status.textContent = fork ? words.fork : (failed > 0 ? words.failed : words.verified);
    if (entries.some((li) => li.dataset.index === undefined)) {
      // Entries are numbered within moments of being written.
      window.setTimeout(refresh, 1000);
    }
  }

  // --- live updates -----------------------------------------------------
  async function refresh() {
    const response = await fetch(window.location.href, { credentials: "same-origin" });
    if (!response.ok) return;
    const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
    const incoming = fresh.getElementById("entries");
    const list = document.getElementById("entries");
    if (!incoming || !list) return;
    const before = list.children.length;
    list.replaceChildren(...Array.from(incoming.children).map((c) => document.importNode(c, true)));
    if (list.children.length > before || (list.firstElementChild && list.firstElementChild.dataset.index !== (list.dataset.first || ""))) {
      const live = document.getElementById("live-status");
      live.textContent = "";
      window.setTimeout(() => { live.textContent = live.dataset.new; }, 50);
    }
    list.dataset.first = list.firstElementChild ? (list.firstElementChild.dataset.index || "") : "";
    await checkEntries(list);
  }

  function historyPage() {
    const list = document.getElementById("entries");
    if (!list) return;
    list.dataset.first = list.firstElementChild ? (list.firstElementChild.dataset.index || "") : "";
    checkEntries(list).catch(() => {
      const status = document.getElementById("log-check");
      status.dataset.state = "failed";
      status.textContent = status.dataset.failed;
    });
    if (list.dataset.live === "true" && window.EventSource) {
      const events = new EventSource("/portal/history/stream");
      events.onmessage = () => { refresh().catch(() => {}); };
      events.addEventListener("access", () => { refresh().catch(() => {}); });
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    ceremonies();
    historyPage();
  });
})();
