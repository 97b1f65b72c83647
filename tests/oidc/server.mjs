// oidc-provider (npm, 9.x) as a real OAuth 2.0 / OpenID Connect authorization server for the
// alloy-oauth test-suite. Started by tests/support/oidc.py; not for any other use.
//
// Usage: node server.mjs CONFIG.json   (or OIDC_CONFIG=CONFIG.json node server.mjs)
// CONFIG: {
//   "port": 0,                       // 0 or missing: any free port
//   "clients": [{"client_id", "client_secret", "redirect_uris", "token_endpoint_auth_method"}],
//   "accessTokenTtl": 3600,          // seconds
//   "refreshTokenTtl": 1209600       // seconds
// }
// Prints exactly one line "READY <issuer>" on stdout once it listens on 127.0.0.1.
//
// Test-only endpoints (not part of oidc-provider):
//   GET  /__test/stats  -> JSON counters of token, revocation and userinfo requests
//   POST /__test/reset  -> zeroes the counters
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import process from 'node:process';

import Provider from 'oidc-provider';

const configPath = process.argv[2] || process.env.OIDC_CONFIG;
if (!configPath) {
  process.stderr.write('usage: node server.mjs CONFIG.json (or set OIDC_CONFIG)\n');
  process.exit(2);
}
const config = JSON.parse(readFileSync(configPath, 'utf8'));

const positiveInt = (value, fallback) => {
  const n = Number(value ?? fallback);
  if (!Number.isSafeInteger(n) || n < 1) {
    throw new TypeError(`expected a positive integer number of seconds, got ${value}`);
  }
  return n;
};
const accessTokenTtl = positiveInt(config.accessTokenTtl, 3600);
const refreshTokenTtl = positiveInt(config.refreshTokenTtl, 14 * 24 * 3600);

function emptyStats() {
  return {
    // every POST to the token endpoint, by grant_type ("(none)" when it was missing)
    token_requests: {},
    // of those, the ones answered 200 / with an error, by grant_type
    token_success: {},
    token_errors: {},
    // error codes returned by the token endpoint, e.g. {"invalid_grant": 1}
    token_error_codes: {},
    // how the client authenticated at the token endpoint: "basic", "body" or "none"
    token_client_auth: {},
    // every POST to the revocation endpoint, and the ones that succeeded (HTTP 200)
    revocation_requests: 0,
    revocations: 0,
    userinfo_requests: 0,
  };
}
let stats = emptyStats();

const bump = (obj, key) => {
  obj[key] = (obj[key] || 0) + 1;
};

function clientAuthKind(ctx) {
  const authz = ctx.get('authorization');
  if (authz && /^basic /i.test(authz)) return 'basic';
  if (ctx.oidc?.params?.client_secret !== undefined) return 'body';
  return 'none';
}

const clients = (config.clients || []).map((c) => ({
  client_id: c.client_id,
  client_secret: c.client_secret,
  redirect_uris: c.redirect_uris,
  token_endpoint_auth_method: c.token_endpoint_auth_method || 'client_secret_basic',
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
}));

// The issuer contains the port, so listen first (port 0 = any free port) and build the provider
// once the port is known; requests before that cannot arrive since READY is not printed yet.
let handler = (req, res) => {
  res.statusCode = 503;
  res.end();
};
const server = http.createServer((req, res) => handler(req, res));

server.listen(Number(config.port || 0), '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;

  const provider = new Provider(issuer, {
    clients,
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
    },
    scopes: ['openid', 'offline_access', 'email'],
    features: {
      devInteractions: { enabled: true },
      revocation: { enabled: true },
      introspection: { enabled: true },
    },
    pkce: { required: () => true },
    rotateRefreshToken: true,
    responseTypes: ['code'],
    ttl: {
      AccessToken: accessTokenTtl,
      RefreshToken: refreshTokenTtl,
      AuthorizationCode: 60,
      Interaction: 600,
      Session: 3600,
      Grant: refreshTokenTtl,
      IdToken: 3600,
    },
    async findAccount(ctx, id) {
      return {
        accountId: id,
        async claims() {
          return { sub: id, email: `${id}@example.test`, email_verified: true };
        },
      };
    },
  });

  provider.use(async (ctx, next) => {
    if (ctx.path === '/__test/stats' && ctx.method === 'GET') {
      ctx.type = 'json';
      ctx.body = JSON.stringify(stats);
      return;
    }
    if (ctx.path === '/__test/reset' && ctx.method === 'POST') {
      stats = emptyStats();
      ctx.status = 204;
      return;
    }
    await next();
    const route = ctx.oidc?.route;
    if (route === 'token' && ctx.method === 'POST') {
      const grantType = ctx.oidc?.params?.grant_type || '(none)';
      bump(stats.token_requests, grantType);
      bump(stats.token_client_auth, clientAuthKind(ctx));
      if (ctx.status === 200) {
        bump(stats.token_success, grantType);
      } else {
        bump(stats.token_errors, grantType);
        let code = 'unknown';
        if (ctx.body && typeof ctx.body === 'object' && ctx.body.error) code = ctx.body.error;
        bump(stats.token_error_codes, code);
      }
    } else if (route === 'revocation' && ctx.method === 'POST') {
      stats.revocation_requests += 1;
      if (ctx.status === 200) stats.revocations += 1;
    } else if (route === 'userinfo') {
      stats.userinfo_requests += 1;
    }
  });

  handler = provider.callback();
  process.stdout.write(`READY ${issuer}\n`);
});

const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
