// The redirect page: fhirclient exchanges the code (with the PKCE verifier),
// then the app reads through the gateway what the test asks for and
// publishes the outcome as window.e2eResult for the Go test.
"use strict";

function show(out) {
  const dl = document.getElementById("summary");
  const add = (k, v, cls) => {
    const dt = document.createElement("dt");
    dt.textContent = k;
    const dd = document.createElement("dd");
    dd.textContent = v;
    if (cls) dd.className = cls;
    dl.append(dt, dd);
  };
  add("Patient", `${out.patientName} (Patient/${out.patientId})`);
  add("Granted scope", out.scope);
  add("Observations read through the gateway", String(out.observations));
  for (const [type, status] of Object.entries(out.refused)) {
    add(`${type} (scope left unchecked)`, `gateway answered ${status}`, "refused");
  }
  document.getElementById("status").textContent = "Connected to " + out.serverUrl;
  document.getElementById("result").textContent = JSON.stringify(out, null, 2);
}

async function main() {
  const client = await FHIR.oauth2.ready();
  const tr = client.state.tokenResponse || {};
  const out = {
    serverUrl: client.state.serverUrl,
    patientId: client.patient.id,
    userId: client.user.fhirUser || null,
    scope: tr.scope || "",
    tokenType: tr.token_type || "",
    hasRefreshToken: !!tr.refresh_token,
    hasIdToken: !!tr.id_token,
    needPatientBanner: tr.need_patient_banner,
    urlAfterReady: location.href,
    refused: {},
  };
  const patient = await client.patient.read();
  out.patientResourceId = patient.id;
  const n = (patient.name || [])[0] || {};
  out.patientName = [(n.given || []).join(" "), n.family].filter(Boolean).join(" ");
  const bundle = await client.request("Observation?patient=" + encodeURIComponent(client.patient.id));
  const entries = bundle.entry || [];
  out.observations = entries.length;
  out.observationSubjects = [...new Set(entries.map((e) => e.resource.subject && e.resource.subject.reference))];
  for (const type of E2E.refusedTypes || []) {
    try {
      await client.request(type + "?patient=" + encodeURIComponent(client.patient.id));
      out.refused[type] = 200;
    } catch (e) {
      out.refused[type] = e.status || String(e);
    }
  }
  show(out);
  window.e2eResult = out;
}

main().catch((e) => {
  window.e2eError = "app: " + (e && e.stack ? e.stack : String(e));
  document.getElementById("status").textContent = window.e2eError;
});
