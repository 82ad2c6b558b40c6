// The staff console's passkey ceremonies. The pages work without this file: it reveals the
// passkey controls, asks the server for a ceremony, hands it to the browser's
// authenticator (navigator.credentials) and sends the answer back. Binary fields travel
// as base64url, as the API's options and credentials carry them.
"use strict";
(() => {
  if (!window.PublicKeyCredential || !navigator.credentials) return;

  const bytes = (text) => {
    const b64 = text.replace(/-/g, "+").replace(/_/g, "/");
    const raw = atob(b64 + "===".slice((b64.length + 3) % 4));
    return Uint8Array.from(raw, (c) => c.charCodeAt(0)).buffer;
  };
  const text = (buffer) => {
    let raw = "";
    for (const b of new Uint8Array(buffer)) raw += String.fromCharCode(b);
    return btoa(raw).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  };
  const withIds = (list) => (list || []).map((c) => ({ ...c, id: bytes(c.id) }));

  // The API's error body says what went wrong in `error.message`.
  const json = async (response) => {
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error((body.error && body.error.message) || "The server refused.");
    return body;
  };
  const explain = (status, error) => {
    status.textContent = error.name === "NotAllowedError"
      ? "The passkey prompt was closed or timed out."
      : error.message;
  };

  const signIn = document.getElementById("passkey-sign-in");
  if (signIn) {
    signIn.hidden = false;
    const form = signIn.querySelector("form");
    const status = signIn.querySelector("[role=status]");
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      status.textContent = "Waiting for your passkey…";
      try {
        const ceremony = await json(await fetch("/api/v1/auth/passkey/options", { method: "POST" }));
        const o = ceremony.options;
        const publicKey = { ...o, challenge: bytes(o.challenge), allowCredentials: withIds(o.allowCredentials) };
        const c = await navigator.credentials.get({ publicKey });
        form.elements.namedItem("ceremony_id").value = ceremony.ceremony_id;
        form.elements.namedItem("credential").value = JSON.stringify({
          id: c.id,
          rawId: text(c.rawId),
          type: c.type,
          response: {
            authenticatorData: text(c.response.authenticatorData),
            clientDataJSON: text(c.response.clientDataJSON),
            signature: text(c.response.signature),
            userHandle: c.response.userHandle ? text(c.response.userHandle) : null,
          },
          extensions: c.getClientExtensionResults(),
        });
        form.submit();
      } catch (error) {
        explain(status, error);
      }
    });
  }

  const add = document.getElementById("passkey-add");
  if (add) {
    add.hidden = false;
    const status = add.querySelector("[role=status]");
    add.addEventListener("submit", async (event) => {
      event.preventDefault();
      const f = (name) => add.elements.namedItem(name).value;
      status.textContent = "Waiting for your authenticator…";
      try {
        const start = new URLSearchParams({ csrf: f("csrf"), password: f("password") });
        const ceremony = await json(await fetch("/admin/passkeys/start", { method: "POST", body: start }));
        const o = ceremony.options;
        const publicKey = {
          ...o,
          challenge: bytes(o.challenge),
          user: { ...o.user, id: bytes(o.user.id) },
          excludeCredentials: withIds(o.excludeCredentials),
        };
        const c = await navigator.credentials.create({ publicKey });
        const credential = JSON.stringify({
          id: c.id,
          rawId: text(c.rawId),
          type: c.type,
          response: {
            attestationObject: text(c.response.attestationObject),
            clientDataJSON: text(c.response.clientDataJSON),
            transports: c.response.getTransports ? c.response.getTransports() : [],
          },
          extensions: c.getClientExtensionResults(),
        });
        const finish = new URLSearchParams({
          csrf: f("csrf"),
          ceremony_id: ceremony.ceremony_id,
          name: f("name"),
          credential,
        });
        await json(await fetch("/admin/passkeys/finish", { method: "POST", body: finish }));
        window.location.assign("/admin");
      } catch (error) {
        explain(status, error);
      }
    });
  }
})();
