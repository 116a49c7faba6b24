// A real OpenID Connect provider for pilotwms's tests: the certified `oidc-provider` package,
// with static users (passwords, a `groups` claim), clients for pilotwms, the device flow
// (RFC 8628), authorization code + PKCE, refresh tokens, revocation and userinfo. It listens on
// 127.0.0.1 only and prints one JSON line `{"issuer": ..., "port": ...}` when it is ready.
//
//   node scripts/oidc-idp/server.js                # HTTP on a free port of 127.0.0.1
//   IDP_PORT=9000 IDP_CONFIG=idp.json node server.js
//   IDP_TLS_CERT=host.pem IDP_TLS_KEY=key.pem node server.js   # HTTPS instead
//
// Environment:
//   IDP_PORT            port to listen on (default 0: a free one, reported on stdout)
//   IDP_CONFIG          JSON file {"users": {...}, "clients": [...], "resourceServers": {...},
//                       "ttl": {...}}; its entries are added to (and replace same-named)
//                       defaults below
//   IDP_TLS_CERT/KEY    PEM files: serve HTTPS with them (the issuer becomes https://)
//   IDP_ACCESS_TOKEN_TTL, IDP_DEVICE_CODE_TTL, IDP_REFRESH_TOKEN_TTL  seconds
//
// The user's side happens on plain HTML pages with stable form ids: the device flow's own
// pages (`op.deviceInputForm`, `op.deviceConfirmForm`), then `/interaction/<uid>` with the
// login form (`login-form`: username, password) and the consent form (`consent-form`, with a
// `deny-form` next to it). tests/support/oidc_idp.py plays the user through them.
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import querystring from 'node:querystring';

import Provider, { errors } from 'oidc-provider';

const DEFAULT_USERS = {
  alice: {
    sub: '2d1c6b1e-0a11-4c3e-9a0f-a11ce0000001',
    password: 'alice-password',
    name: 'Alice Liddell',
    email: 'alice@example.org',
    groups: ['/demo', '/demo/users', '/demo/admins'],
  },
  bob: {
    sub: '5e0b9f42-7c2d-4b8e-8d1a-b0b000000002',
    password: 'bob-password',
    name: 'Bob Builder',
    email: 'bob@example.org',
    groups: ['/demo', '/demo/users'],
  },
  carol: {
    sub: '9a4e2c71-3f5b-4d6a-b2c8-ca7010000003',
    password: 'carol-password',
    name: 'Carol Outsider',
    email: 'carol@example.org',
    groups: [],
  },
};

const DEVICE_CODE = 'urn:ietf:params:oauth:grant-type:device_code';
const DEFAULT_CLIENTS = [
  {
    // pilotwms's own authorization server: confidential, every grant it may use.
    client_id: 'pilotwms',
    client_secret: 'pilotwms-secret',
    client_name: 'pilotwms',
    grant_types: ['authorization_code', 'refresh_token', DEVICE_CODE],
    response_types: ['code'],
    redirect_uris: ['http://127.0.0.1/callback'],
    token_endpoint_auth_method: 'client_secret_basic',
  },
  {
    // A command-line tool (dlogin --issuer): public, device flow and PKCE only.
    client_id: 'pilotwms-cli',
    client_name: 'pilotwms command line',
    application_type: 'native',
    grant_types: ['authorization_code', 'refresh_token', DEVICE_CODE],
    response_types: ['code'],
    redirect_uris: ['http://127.0.0.1/callback'],
    token_endpoint_auth_method: 'none',
  },
];

// Resource servers (RFC 8707 resource indicator -> JWT access tokens for that audience).
const DEFAULT_RESOURCE_SERVERS = {
  'https://pilotwms.test': { audience: 'pilotwms', scope: 'compute.read compute.create' },
};

function loadConfig() {
  const users = { ...DEFAULT_USERS };
  const clients = new Map(DEFAULT_CLIENTS.map((c) => [c.client_id, c]));
  let ttl = {};
  let extra = {};
  if (process.env.IDP_CONFIG) {
    extra = JSON.parse(fs.readFileSync(process.env.IDP_CONFIG, 'utf8'));
    Object.assign(users, extra.users || {});
    for (const c of extra.clients || []) clients.set(c.client_id, c);
    ttl = extra.ttl || {};
  }
  const seconds = (name, fallback) => Number(process.env[name] || fallback);
  return {
    users,
    clients: [...clients.values()],
    resourceServers: { ...DEFAULT_RESOURCE_SERVERS, ...(extra.resourceServers || {}) },
    ttl: {
      AccessToken: seconds('IDP_ACCESS_TOKEN_TTL', ttl.AccessToken || 600),
      DeviceCode: seconds('IDP_DEVICE_CODE_TTL', ttl.DeviceCode || 300),
      RefreshToken: seconds('IDP_REFRESH_TOKEN_TTL', ttl.RefreshToken || 86400),
      IdToken: 600,
      Interaction: 600,
      Session: 3600,
      Grant: 86400,
    },
  };
}

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
}

function page(title, body) {
  return `<!DOCTYPE html><html><head><meta charset="utf-8"><title>${escapeHtml(title)}</title>`
    + `</head><body><h1>${escapeHtml(title)}</h1>${body}</body></html>`;
}

function isLoopback(uri) {
  try {
    const url = new URL(uri);
    return ['http:', 'https:'].includes(url.protocol)
      && ['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname);
  } catch {
    return false;
  }
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    let data = '';
    req.setEncoding('utf8');
    req.on('data', (chunk) => {
      data += chunk;
      if (data.length > 65536) reject(new Error('body too large'));
    });
    req.on('end', () => resolve(querystring.parse(data)));
    req.on('error', reject);
  });
}

function send(res, status, html) {
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
  res.end(html);
}

function loginPage(uid, client, error) {
  const msg = error ? `<p class="error">${escapeHtml(error)}</p>` : '';
  return page('Sign in', `<p>to ${escapeHtml(client)}</p>${msg}`
    + `<form id="login-form" method="post" action="/interaction/${uid}/login">`
    + '<input type="text" name="username" autocomplete="username">'
    + '<input type="password" name="password" autocomplete="current-password">'
    + '<button type="submit">Sign in</button></form>'
    + `<form id="deny-form" method="post" action="/interaction/${uid}/abort">`
    + '<button type="submit">Cancel</button></form>');
}

function consentPage(uid, client, details) {
  const scopes = (details.missingOIDCScope || []).map(escapeHtml).join(', ');
  return page('Authorize', `<p>${escapeHtml(client)} asks for: <span id="scopes">${scopes}</span></p>`
    + `<form id="consent-form" method="post" action="/interaction/${uid}/confirm">`
    + '<button type="submit">Allow</button></form>'
    + `<form id="deny-form" method="post" action="/interaction/${uid}/abort">`
    + '<button type="submit">Deny</button></form>');
}

async function interactions(provider, users, req, res) {
  const parts = new URL(req.url, 'http://x').pathname.split('/').filter(Boolean);
  const [, uid, action] = parts;
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) {
    send(res, 400, page('Error', '<p>interaction mismatch</p>'));
    return;
  }
  const client = await provider.Client.find(details.params.client_id);
  const clientName = (client && (client.clientName || client.clientId)) || 'unknown client';
  const { prompt } = details;
  if (req.method === 'GET' && !action) {
    if (prompt.name === 'login') send(res, 200, loginPage(uid, clientName));
    else send(res, 200, consentPage(uid, clientName, prompt.details));
    return;
  }
  if (req.method !== 'POST') {
    send(res, 405, page('Error', '<p>method not allowed</p>'));
    return;
  }
  const form = await readBody(req);
  if (action === 'abort') {
    await provider.interactionFinished(req, res, {
      error: 'access_denied', error_description: 'End-User denied the request',
    }, { mergeWithLastSubmission: false });
    return;
  }
  if (action === 'login' && prompt.name === 'login') {
    const user = users[form.username];
    const given = Buffer.from(String(form.password || ''));
    const wanted = Buffer.from(user ? user.password : '\0');
    if (!user || given.length !== wanted.length || !crypto.timingSafeEqual(given, wanted)) {
      send(res, 401, loginPage(uid, clientName, 'Invalid username or password'));
      return;
    }
    await provider.interactionFinished(req, res, {
      login: { accountId: user.sub || form.username },
    }, { mergeWithLastSubmission: false });
    return;
  }
  if (action === 'confirm' && prompt.name === 'consent') {
    const { accountId } = details.session;
    let grant;
    if (details.grantId) grant = await provider.Grant.find(details.grantId);
    else grant = new provider.Grant({ accountId, clientId: details.params.client_id });
    const missing = prompt.details;
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes || {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    const grantId = await grant.save();
    const consent = details.grantId ? {} : { grantId };
    await provider.interactionFinished(req, res, { consent }, { mergeWithLastSubmission: true });
    return;
  }
  send(res, 400, page('Error', `<p>unexpected ${escapeHtml(action)} at ${escapeHtml(prompt.name)}</p>`));
}

async function main() {
  const config = loadConfig();
  const tlsCert = process.env.IDP_TLS_CERT;
  const tlsKey = process.env.IDP_TLS_KEY;
  let handler = (_req, res) => send(res, 503, page('Starting', ''));
  const dispatch = (req, res) => handler(req, res);
  const server = tlsCert
    ? https.createServer({ cert: fs.readFileSync(tlsCert), key: fs.readFileSync(tlsKey) }, dispatch)
    : http.createServer(dispatch);
  await new Promise((resolve) => server.listen(Number(process.env.IDP_PORT || 0), '127.0.0.1', resolve));
  const { port } = server.address();
  const issuer = `${tlsCert ? 'https' : 'http'}://127.0.0.1:${port}`;

  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = { ...privateKey.export({ format: 'jwk' }), kid: 'test-idp-rs256', use: 'sig', alg: 'RS256' };
  const { users, resourceServers } = config;
  const provider = new Provider(issuer, {
    clients: config.clients,
    jwks: { keys: [jwk] },
    cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
    claims: {
      openid: ['sub'],
      profile: ['name', 'preferred_username'],
      email: ['email', 'email_verified'],
      groups: ['groups'],
    },
    scopes: ['openid', 'offline_access', 'profile', 'email', 'groups'],
    conformIdTokenClaims: false,
    async findAccount(_ctx, sub) {
      const name = Object.keys(users).find((n) => (users[n].sub || n) === sub);
      if (!name) return undefined;
      const user = users[name];
      return {
        accountId: sub,
        async claims() {
          return {
            sub,
            preferred_username: name,
            name: user.name || name,
            email: user.email || `${name}@example.org`,
            email_verified: true,
            groups: user.groups || [],
          };
        },
      };
    },
    features: {
      devInteractions: { enabled: false },
      deviceFlow: {
        enabled: true,
        async userCodeInputSource(ctx, form, _out, err) {
          const msg = err
            ? `<p id="error">${escapeHtml(err.error || err.name)}</p>`
              + `<p id="error_description">${escapeHtml(err.error_description || err.message || '')}</p>`
            : '<p>Enter the code displayed on your device</p>';
          ctx.body = page('Device sign-in', `${msg}${form}<button type="submit" form="op.deviceInputForm">Continue</button>`);
        },
        async successSource(ctx) {
          ctx.body = page('Device approved', '<p id="device-approved">You can close this page.</p>');
        },
      },
      // RFC 8707: asking for `resource=<URI>` of a resource server below gets a JWT access
      // token for it (aud = its audience, with the groups claim), as WLCG/IAM tokens are;
      // without `resource` the access token is opaque and for userinfo only.
      resourceIndicators: {
        enabled: true,
        defaultResource: async (_ctx, _client, oneOf) => oneOf,
        useGrantedResource: async () => true,
        async getResourceServerInfo(_ctx, indicator) {
          const server = resourceServers[indicator];
          if (!server) throw new errors.InvalidTarget(`unknown resource ${indicator}`);
          return {
            scope: server.scope || 'compute',
            audience: server.audience || indicator,
            accessTokenTTL: config.ttl.AccessToken,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'RS256' } },
          };
        },
      },
      revocation: { enabled: true },
      introspection: { enabled: true },
      userinfo: { enabled: true },
    },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    async extraTokenClaims(_ctx, token) {
      if (token.kind !== 'AccessToken' || !token.resourceServer) return undefined;
      const name = Object.keys(users).find((n) => (users[n].sub || n) === token.accountId);
      if (!name) return undefined;
      return { groups: users[name].groups || [], preferred_username: name };
    },
    issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
    rotateRefreshToken: true,
    ttl: config.ttl,
    renderError(ctx, out) {
      ctx.type = 'html';
      ctx.body = page('Error', `<p id="error">${escapeHtml(out.error)}</p>`
        + `<p id="error_description">${escapeHtml(out.error_description || '')}</p>`);
    },
  });
  // Loopback redirect URIs (any port, any path) are accepted for every client: the tests run
  // their servers on free ports. Everything else must be registered exactly.
  const exact = provider.Client.prototype.redirectUriAllowed;
  provider.Client.prototype.redirectUriAllowed = function redirectUriAllowed(uri) {
    return isLoopback(uri) || exact.call(this, uri);
  };
  provider.on('server_error', (_ctx, err) => console.error('server_error', err));

  const callback = provider.callback();
  handler = (req, res) => {
    if (req.url.startsWith('/interaction/')) {
      interactions(provider, users, req, res).catch((err) => {
        send(res, 400, page('Error', `<p id="error">${escapeHtml(err.message)}</p>`));
      });
    } else {
      callback(req, res);
    }
  };
  process.stdout.write(`${JSON.stringify({ issuer, port })}\n`);
  const stop = () => server.close(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
