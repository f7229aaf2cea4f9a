// The scripted "user" of the device flow, for sluice's OIDC tests.
//
//   node user.js approve VERIFICATION_URI_COMPLETE LOGIN
//       Plays the person at the browser: opens the verification page (the
//       user code is in its query), confirms the code, signs in as LOGIN on
//       the provider's development login page and consents. Prints `approved`.
//
//   node user.js token ISSUER CLIENT_ID LOGIN
//       The whole device flow for CLIENT_ID: asks for a device code, approves
//       it as LOGIN (as above), then redeems it once at the token endpoint.
//       Prints the token endpoint's JSON answer (id_token among it).
//
//   node user.js http METHOD URL
//       One request without a body; prints {"status": N, "body": "..."}.
//       For the harness when the provider runs in another network namespace
//       (it cannot connect there itself).
//
// Only plain HTTP to the given loopback provider: redirects are followed by
// hand (at most MAX_STEPS pages) with a cookie jar, and each page's first
// POST form is submitted with its hidden fields, plus `login` and `password`
// where the page asks for them. Every request has a timeout.
const MAX_STEPS = 20;
const TIMEOUT_MS = 5000;

function fail(message) {
  console.error(`user.js: ${message}`);
  process.exit(1);
}

const jar = new Map();

async function request(url, init = {}) {
  const headers = { ...(init.headers ?? {}) };
  if (jar.size > 0) {
    headers.cookie = [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
  }
  const res = await fetch(url, {
    ...init,
    headers,
    redirect: 'manual',
    signal: AbortSignal.timeout(TIMEOUT_MS),
  });
  for (const line of res.headers.getSetCookie()) {
    const [pair] = line.split(';');
    const eq = pair.indexOf('=');
    const name = pair.slice(0, eq).trim();
    const value = pair.slice(eq + 1).trim();
    // An expired cookie is how the provider deletes one.
    if (/expires=Thu, 01 Jan 1970/i.test(line) || value === '') jar.delete(name);
    else jar.set(name, value);
  }
  return res;
}

const decode = (s) => s.replaceAll('&amp;', '&').replaceAll('&quot;', '"').replaceAll('&#39;', "'")
  .replaceAll('&lt;', '<').replaceAll('&gt;', '>');

// The first `<form ... method="post">` of a page: its action and fields.
function firstPostForm(html) {
  const forms = html.match(/<form\b[^>]*>[\s\S]*?<\/form>/gi) ?? [];
  for (const form of forms) {
    const open = form.match(/<form\b[^>]*>/i)[0];
    if (!/method="post"/i.test(open)) continue;
    const action = decode(open.match(/action="([^"]*)"/i)?.[1] ?? '');
    const fields = new URLSearchParams();
    for (const input of form.match(/<input\b[^>]*>/gi) ?? []) {
      const name = input.match(/name="([^"]*)"/i)?.[1];
      if (!name) continue;
      const value = decode(input.match(/value="([^"]*)"/i)?.[1] ?? '');
      fields.set(name, value);
    }
    return { action, fields };
  }
  return null;
}

async function approve(start, login) {
  let url = start;
  let init = {};
  for (let step = 0; step < MAX_STEPS; step += 1) {
    const res = await request(url, init);
    if (res.status >= 300 && res.status < 400) {
      url = new URL(res.headers.get('location'), url).toString();
      init = {};
      continue;
    }
    const html = await res.text();
    if (res.status !== 200) fail(`${res.status} from ${new URL(url).pathname}: ${html.slice(0, 300)}`);
    if (/Sign-in Success/.test(html)) return;
    const form = firstPostForm(html);
    if (!form) fail(`no form on ${new URL(url).pathname}: ${html.slice(0, 300)}`);
    if (form.fields.has('login')) {
      form.fields.set('login', login);
      form.fields.set('password', 'any');
    }
    url = new URL(form.action, url).toString();
    init = {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: form.fields.toString(),
    };
  }
  fail(`no success page after ${MAX_STEPS} steps`);
}

async function postForm(url, params) {
  const res = await request(url, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(params).toString(),
  });
  const body = await res.json();
  if (res.status !== 200) fail(`${res.status} from ${new URL(url).pathname}: ${JSON.stringify(body)}`);
  return body;
}

async function token(issuer, clientId, login) {
  const discovery = await (await request(`${issuer}/.well-known/openid-configuration`)).json();
  const device = await postForm(discovery.device_authorization_endpoint, {
    client_id: clientId,
    scope: 'openid email profile groups',
  });
  await approve(device.verification_uri_complete, login);
  jar.clear();
  return postForm(discovery.token_endpoint, {
    grant_type: 'urn:ietf:params:oauth:grant-type:device_code',
    device_code: device.device_code,
    client_id: clientId,
  });
}

const [mode, ...rest] = process.argv.slice(2);
try {
  if (mode === 'approve' && rest.length === 2) {
    await approve(rest[0], rest[1]);
    console.log('approved');
  } else if (mode === 'http' && rest.length === 2) {
    const res = await request(rest[1], { method: rest[0] });
    console.log(JSON.stringify({ status: res.status, body: await res.text() }));
  } else if (mode === 'token' && rest.length === 3) {
    console.log(JSON.stringify(await token(rest[0], rest[1], rest[2])));
  } else {
    fail('usage: user.js approve URI LOGIN | token ISSUER CLIENT_ID LOGIN | http METHOD URL');
  }
} catch (err) {
  fail(err?.stack ?? String(err));
}
