// Package e2e holds fhirgate's end-to-end tests: the authorization server,
// the FHIR gateway and the demo EHR run in-process on loopback, and clients
// nobody on the team wrote drive them: the official SMART JavaScript client
// (npm fhirclient) in a test page in headless Chromium (chromedp), and
// openid-client (npm) in a Node script. The tests skip with a message when
// /usr/bin/chromium, node or e2e/node_modules is missing, unless
// FHIRGATE_E2E_REQUIRED is set (as in CI), where a missing piece fails.
// Screenshots of the key pages go to test-artifacts/ at the repository root.
package e2e
