// The account console's passkey ceremonies: the only script the console runs, and the
// pages work without it (it reveals the passkey controls). It asks the server for a
// ceremony, hands it to the browser's authenticator (navigator.credentials) and posts the
// answer back. Binary fields travel as base64url, as the API's options and credentials do.
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

  // Errors come in the API's shape; MFA_REQUIRED sends the user to the step-up page.
  const json = async (response) => {
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      const code = body.error && body.error.code;
      if (code === "MFA_REQUIRED") {
        window.location.assign("/account/step-up?next=" + encodeURIComponent(window.location.pathname));
      }
      throw new Error((body.error && body.error.message) || "The server refused.");
    }
    return body;
  };
  const explain = (status, error) => {
    status.textContent = error.name === "NotAllowedError" ? "The passkey prompt was closed or timed out." : error.message;
  };
  const assertion = (c) => JSON.stringify({
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
  const post = (url, body) => fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });

  // Passwordless sign-in, and a passkey as the second step of a login.
  for (const form of document.querySelectorAll("form[data-passkey=sign-in], form[data-passkey=mfa]")) {
    form.closest("section").hidden = false;
    const status = form.querySelector("[role=status]");
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      status.textContent = "Waiting for your passkey…";
      try {
        const mfa = form.dataset.passkey === "mfa";
        const response = mfa
          ? await post("/api/v1/auth/mfa/passkey/options", { challenge_id: form.dataset.challenge })
          : await fetch("/api/v1/auth/passkey/options", { method: "POST" });
        const ceremony = await json(response);
        const o = ceremony.options || ceremony;
        const publicKey = { ...o, challenge: bytes(o.challenge), allowCredentials: withIds(o.allowCredentials) };
        const c = await navigator.credentials.get({ publicKey });
        if (!mfa) form.elements.namedItem("ceremony_id").value = ceremony.ceremony_id;
        form.elements.namedItem("credential").value = assertion(c);
        form.submit();
      } catch (error) {
        explain(status, error);
      }
    });
  }

  // Adding a passkey on the security page.
  const add = document.querySelector("form[data-passkey=add]");
  if (add) {
    add.hidden = false;
    const status = add.querySelector("[role=status]");
    add.addEventListener("submit", async (event) => {
      event.preventDefault();
      const f = (name) => add.elements.namedItem(name).value;
      status.textContent = "Waiting for your authenticator…";
      try {
        const start = new URLSearchParams({ csrf_token: f("csrf_token"), password: f("password") });
        const ceremony = await json(await fetch("/account/passkeys/start", { method: "POST", body: start }));
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
          csrf_token: f("csrf_token"), ceremony_id: ceremony.ceremony_id, name: f("name"), credential,
        });
        await json(await fetch("/account/passkeys/finish", { method: "POST", body: finish }));
        window.location.assign("/account/security?done=passkey");
      } catch (error) {
        explain(status, error);
      }
    });
  }
})();
