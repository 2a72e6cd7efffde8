// Starts a SMART launch with the official client (npm fhirclient). For a
// standalone launch the test passes ?iss=<FHIR base>; for an EHR launch the
// EHR opens this page with ?iss=...&launch=..., which fhirclient reads itself.
"use strict";
const params = new URLSearchParams(location.search);
FHIR.oauth2.authorize({
  clientId: E2E.clientId,
  scope: E2E.scope,
  redirectUri: E2E.redirectUri,
  iss: params.get("iss") || E2E.iss,
  pkceMode: "required",
}).catch((e) => {
  window.e2eError = "authorize: " + (e && e.stack ? e.stack : String(e));
  document.getElementById("status").textContent = window.e2eError;
});
