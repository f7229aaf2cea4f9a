// A real OpenID provider on loopback for sluice's OIDC tests.
//
//   node provider.js --port PORT [--id-token-ttl SECONDS]
//
// It runs `oidc-provider` (pinned in package.json) with issuer
// `http://127.0.0.1:PORT`, device flow and the library's development login
// and consent pages (any login name, any password). Signing keys are RSA
// 2048, generated at start: nothing is read from or written to disk.
//
// Clients (both public, device flow only):
//   sluice-cli  the client `sluice login` uses
//   other-app   a second client, for tokens with the wrong audience
//
// Accounts: any login name signs in; these carry a `groups` claim:
//   alice  sluice-approvers       bob   sluice-admins, sluice-approvers
//   carol  staff (no sluice group) dave  sluice-auditors
//   erin   a single string `sluice-approvers` (not an array)
//
// Harness-only routes, on the same port, outside the provider's paths:
//   POST /__lab/rotate  replace the signing key set with a new RSA key (the
//                       old key is no longer published); answers {"kid":..}
//   GET  /__lab/stats   {"jwks_requests": N, "kid": current kid}
//
// Prints `ready http://127.0.0.1:PORT` once it listens. Binds 127.0.0.1 only.
import http from 'node:http';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import Provider from 'oidc-provider';

function arg(name, fallback) {
  const at = process.argv.indexOf(`--${name}`);
  if (at !== -1 && process.argv[at + 1] !== undefined) return process.argv[at + 1];
  const env = process.env[`OIDC_LAB_${name.toUpperCase().replaceAll('-', '_')}`];
  return env ?? fallback;
}

const port = Number.parseInt(arg('port', ''), 10);
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  console.error('provider.js: --port PORT (1-65535) is required');
  process.exit(2);
}
const idTokenTtl = Number.parseInt(arg('id-token-ttl', '600'), 10);
const issuer = `http://127.0.0.1:${port}`;

const GROUPS = {
  alice: ['sluice-approvers'],
  bob: ['sluice-admins', 'sluice-approvers'],
  carol: ['staff'],
  dave: ['sluice-auditors'],
  erin: 'sluice-approvers',
};

function signingKey() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  return { ...jwk, kid: randomBytes(8).toString('hex'), alg: 'RS256', use: 'sig' };
}

const publicClient = (clientId) => ({
  client_id: clientId,
  token_endpoint_auth_method: 'none',
  grant_types: ['urn:ietf:params:oauth:grant-type:device_code', 'refresh_token'],
  response_types: [],
  redirect_uris: [],
});

function makeProvider(key) {
  const provider = new Provider(issuer, {
    clients: [publicClient('sluice-cli'), publicClient('other-app')],
    jwks: { keys: [key] },
    features: {
      deviceFlow: { enabled: true },
      devInteractions: { enabled: true },
    },
    scopes: ['openid', 'offline_access', 'email', 'profile', 'groups'],
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name', 'preferred_username'],
      groups: ['groups'],
    },
    // Put the scopes' claims (groups among them) in the ID token itself,
    // not only behind the userinfo endpoint: sluice reads the ID token.
    conformIdTokenClaims: false,
    ttl: {
      IdToken: idTokenTtl,
      AccessToken: 600,
      DeviceCode: 600,
      Grant: 600,
      Interaction: 600,
      Session: 600,
      RefreshToken: 600,
    },
    cookies: { keys: [randomBytes(16).toString('hex')] },
    async findAccount(ctx, id) {
      return {
        accountId: id,
        async claims() {
          const claims = {
            sub: id,
            email: `${id}@example.test`,
            email_verified: true,
            name: id.charAt(0).toUpperCase() + id.slice(1),
            preferred_username: id,
          };
          if (GROUPS[id] !== undefined) claims.groups = GROUPS[id];
          return claims;
        },
      };
    },
  });
  return { handler: provider.callback(), kid: key.kid };
}

let current = makeProvider(signingKey());
let jwksRequests = 0;

function json(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
}

const server = http.createServer((req, res) => {
  const path = (req.url ?? '/').split('?')[0];
  if (path === '/__lab/rotate' && req.method === 'POST') {
    current = makeProvider(signingKey());
    json(res, 200, { kid: current.kid });
    return;
  }
  if (path === '/__lab/stats') {
    json(res, 200, { jwks_requests: jwksRequests, kid: current.kid });
    return;
  }
  if (path === '/jwks') jwksRequests += 1;
  current.handler(req, res);
});

server.listen(port, '127.0.0.1', () => {
  console.log(`ready ${issuer}`);
});

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
