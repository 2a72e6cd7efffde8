// A relying party built on openid-client (npm, 6.x), driven by the Go test
// TestOpenIDClient. Input: one JSON object as argv[2]. Protocol on stdio, one
// JSON object per line: it prints {"authorize_url"} and waits for the
// browser's callback URL on stdin, then prints {"result"} (or {"error"}).
// Discovery, authorization code with PKCE, PAR and DPoP when the server
// advertises them, refresh, userinfo, a gateway read with the bound token,
// introspection and revocation.
import * as client from "openid-client";
import { createInterface } from "node:readline";

const input = JSON.parse(process.argv[2]);
const emit = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const readLine = async () => {
  const { value, done } = await lines.next();
  if (done) throw new Error("stdin closed before the callback URL arrived");
  return value.trim();
};

async function main() {
  const steps = [];
  const config = await client.discovery(
    new URL(input.issuer),
    input.clientId,
    { redirect_uris: [input.redirectUri], response_types: ["code"] },
    client.ClientSecretBasic(input.clientSecret),
    { execute: [client.allowInsecureRequests] }, // http on loopback only
  );
  const meta = config.serverMetadata();
  steps.push("discovery");
  const usePAR = !!meta.pushed_authorization_request_endpoint && !input.noPAR;
  const useDPoP = Array.isArray(meta.dpop_signing_alg_values_supported) && !input.noDPoP;
  const opts = {};
  let dpopJkt = "";
  if (useDPoP) {
    const keyPair = await client.randomDPoPKeyPair("ES256");
    opts.DPoP = client.getDPoPHandle(config, keyPair);
    const jwk = await crypto.subtle.exportKey("jwk", keyPair.publicKey);
    dpopJkt = await thumbprint(jwk);
  }

  const verifier = client.randomPKCECodeVerifier();
  const state = client.randomState();
  const nonce = client.randomNonce();
  const params = {
    redirect_uri: input.redirectUri,
    scope: input.scope,
    code_challenge: await client.calculatePKCECodeChallenge(verifier),
    code_challenge_method: "S256",
    state,
    nonce,
    aud: input.fhirBase,
  };
  const authURL = usePAR
    ? await client.buildAuthorizationUrlWithPAR(config, params, opts)
    : client.buildAuthorizationUrl(config, params);
  steps.push(usePAR ? "par" : "authorize");
  emit({ authorize_url: authURL.href, par: usePAR, dpop: useDPoP });

  const callback = new URL(await readLine());
  const tokens = await client.authorizationCodeGrant(
    config, callback,
    { pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce, idTokenExpected: true },
    undefined, opts,
  );
  steps.push("code");
  const claims = tokens.claims();
  const out = {
    steps,
    par: usePAR,
    dpop: useDPoP,
    dpopJkt,
    tokenType: tokens.token_type,
    scope: tokens.scope,
    patient: tokens.patient,
    sub: claims.sub,
    idTokenIss: claims.iss,
    hasRefresh: !!tokens.refresh_token,
  };
  const userinfo = await client.fetchUserInfo(config, tokens.access_token, claims.sub, opts);
  steps.push("userinfo");
  out.userinfoSub = userinfo.sub;
  out.userinfoFHIRUser = userinfo.fhirUser;

  const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token, undefined, opts);
  steps.push("refresh");
  out.refreshedTokenType = refreshed.token_type;
  out.refreshRotated = !!refreshed.refresh_token && refreshed.refresh_token !== tokens.refresh_token;

  // A gateway read with the access token of the rotation (DPoP-bound when
  // the server supports DPoP).
  const res = await client.fetchProtectedResource(
    config, refreshed.access_token, new URL(input.fhirBase + "/Patient/" + input.patientId), "GET", undefined, undefined, opts,
  ).catch((e) => e.response || { status: String(e) });
  out.gatewayStatus = res.status;
  steps.push("gateway");

  if (meta.introspection_endpoint) {
    const intro = await client.tokenIntrospection(config, refreshed.access_token);
    out.introspection = { active: intro.active, cnf: intro.cnf || null, token_type: intro.token_type || null, scope: intro.scope || null };
    steps.push("introspect");
  }
  if (meta.revocation_endpoint && refreshed.refresh_token) {
    await client.tokenRevocation(config, refreshed.refresh_token, { token_type_hint: "refresh_token" });
    steps.push("revoke");
    out.afterRevoke = await refreshOutcome(config, refreshed.refresh_token, opts);
  }
  // The first refresh token was rotated away: a replay is refused.
  out.oldRefresh = await refreshOutcome(config, tokens.refresh_token, opts);
  emit({ result: out });
}

// refreshOutcome tries a refresh and reports "accepted" or the error code.
async function refreshOutcome(config, refreshToken, opts) {
  try {
    await client.refreshTokenGrant(config, refreshToken, undefined, opts);
    return "accepted";
  } catch (e) {
    return e.error || e.code || String(e);
  }
}

// RFC 7638 thumbprint of an EC public key.
async function thumbprint(jwk) {
  const canon = JSON.stringify({ crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y });
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(canon));
  return Buffer.from(digest).toString("base64url");
}

main().then(
  () => process.exit(0),
  (e) => {
    emit({ error: String(e && e.stack ? e.stack : e), code: e && e.code, oauth: e && e.error, description: e && e.error_description, cause: e && e.cause ? String(e.cause) : undefined });
    process.exit(1);
  },
);
