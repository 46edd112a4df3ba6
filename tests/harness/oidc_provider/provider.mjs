// An OpenID Connect provider for the tests of Hub the Hard Way (stage 09).
//
// panva's oidc-provider (OpenID Certified), configured for one confidential client
// (client_secret_basic) and a few test accounts, with:
// - a plain HTML sign-in form at /interaction/UID; consent is granted automatically
//   (no consent page: the accounts belong to the tests);
// - a `groups` scope whose `groups` claim is in the userinfo answer and the ID token;
// - a refresh token for the client at every code exchange (oidc-provider drops the
//   offline_access scope unless the request also says prompt=consent);
// - access tokens that live `access_token_ttl` seconds (a test can make them short);
// - revocation (RFC 7009) and introspection (RFC 7662) for the client;
// - RP-initiated logout (end_session_endpoint) back to the client's post-logout URIs;
// - an RFC 8693 token exchange: an access token of this provider (the subject token)
//   for a JWT access token whose audience is one of `exchange.audiences`.
//
// Run: node provider.mjs CONFIG.json. It keeps everything in memory: a restart
// forgets every session and token (the signing key is a file named in the config). It logs requests by
// method and path only, and errors by their code: never a token, code or password.

import { createHash, createPrivateKey, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:https';

import Provider, { errors } from 'oidc-provider';

const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
const JWT_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:jwt';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const accounts = config.accounts;
const exchange = { audiences: [], token_ttl: 300, ...config.exchange };
const exchangeClaims = new WeakMap();

function log(line) {
  process.stdout.write(`${line}\n`);
}

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function sameSecret(given, expected) {
  const a = Buffer.from(String(given));
  const b = Buffer.from(String(expected));
  return a.length === b.length && timingSafeEqual(a, b);
}

/** The claims of an account, as userinfo and the ID token give them (filtered by scope). */
function accountClaims(login) {
  const account = accounts[login];
  return {
    sub: login,
    preferred_username: login,
    name: account.name ?? login,
    email: account.email ?? `${login}@example.org`,
    email_verified: true,
    groups: account.groups ?? [],
  };
}

// The signing key is made outside (openssl, by the harness): generating it here with
// generateKeyPairSync now and then hung Node 20 at start in a test VM (a futex wait).
function signingKey() {
  const jwk = createPrivateKey(readFileSync(config.signing_key)).export({ format: 'jwk' });
  const kid = createHash('sha256').update(jwk.n).digest('base64url').slice(0, 16);
  return { ...jwk, kid, use: 'sig', alg: 'RS256' };
}

const provider = new Provider(config.issuer, {
  clients: [{
    client_id: config.client.client_id,
    client_secret: config.client.client_secret,
    client_name: config.client.name ?? 'JupyterHub (test)',
    redirect_uris: config.client.redirect_uris,
    post_logout_redirect_uris: config.client.post_logout_redirect_uris ?? [],
    response_types: ['code'],
    grant_types: ['authorization_code', 'refresh_token', TOKEN_EXCHANGE],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  jwks: { keys: [signingKey()] },
  cookies: { keys: config.cookie_keys },
  claims: {
    openid: ['sub'],
    profile: ['name', 'preferred_username'],
    email: ['email', 'email_verified'],
    groups: ['groups'],
  },
  scopes: ['openid', 'offline_access', 'profile', 'email', 'groups'],
  responseTypes: ['code'],
  // The ID token carries the claims of the granted scopes too (not only userinfo).
  conformIdTokenClaims: false,
  clockTolerance: config.clock_tolerance ?? 0,
  ttl: {
    // An exchanged token lives as its "resource server" (the audience) says.
    AccessToken: (ctx, token) => token.resourceServer?.accessTokenTTL ?? config.access_token_ttl ?? 600,
    AuthorizationCode: 60,
    IdToken: config.id_token_ttl ?? 3600,
    RefreshToken: config.refresh_token_ttl ?? 86400,
    Grant: config.refresh_token_ttl ?? 86400,
    Interaction: 600,
    Session: 86400,
  },
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  rotateRefreshToken: config.rotate_refresh_token ?? false,
  expiresWithSession: async () => false,
  // Claims an exchanged token carries besides the standard ones (set by tokenExchange).
  extraTokenClaims: async (ctx, token) => exchangeClaims.get(token),
  findAccount: async (ctx, id) => (accounts[id] ? { accountId: id, claims: async () => accountClaims(id) } : undefined),
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  features: {
    devInteractions: { enabled: false },
    // The client may revoke its own tokens (the harness does, as an admin would in a real provider).
    revocation: { enabled: true, allowedPolicy: async (ctx, client, token) => token.clientId === client.clientId },
    introspection: { enabled: true },
    userinfo: { enabled: true },
  },
  pkce: { required: () => false },
});

// -- the sign-in form ------------------------------------------------------------------

function page(uid, clientName, flash = '') {
  const box = flash ? `<p class="flash" role="alert">${escapeHtml(flash)}</p>` : '';
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>Sign in (test identity provider)</title>
<style>body{font-family:sans-serif;background:#f4f4f6;margin:0}
main{width:300px;margin:60px auto;background:#fff;border:1px solid #ccc;border-radius:6px;padding:20px}
h1{font-size:22px;font-weight:400;text-align:center} label{display:block;margin:12px 0 4px}
input{width:100%;box-sizing:border-box;padding:6px}
button{margin-top:16px;width:100%;padding:8px;background:#2f5fa7;color:#fff;border:0;border-radius:6px}
.flash{background:#fde8e8;border:1px solid #e99;padding:10px;border-radius:6px}
.note{font-size:12px;color:#666;text-align:center}</style></head>
<body><main><h1>Sign in</h1>
<p class="note">Test identity provider: not a real one.<br>Signing in to <b>${escapeHtml(clientName)}</b></p>
${box}
<form method="post" action="/interaction/${escapeHtml(uid)}/login" autocomplete="off">
<label for="login">Username</label>
<input type="text" id="login" name="login" autofocus>
<label for="password">Password</label>
<input type="password" id="password" name="password">
<button type="submit">Sign in</button>
</form></main></body></html>
`;
}

async function readForm(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return Object.fromEntries(new URLSearchParams(Buffer.concat(chunks).toString()));
}

/** Grant what the authorization request asks for (consent given automatically). */
async function autoConsent(details, accountId) {
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId, clientId: details.params.client_id });
  const missing = details.prompt.details ?? {};
  grant.addOIDCScope(missing.missingOIDCScope?.join(' ') ?? details.params.scope ?? 'openid');
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  return grant.save();
}

provider.use(async (ctx, next) => {
  const started = Date.now();
  const match = ctx.path.match(/^\/interaction\/([\w-]+)(\/login)?$/);
  try {
    if (!match) {
      await next();
      return;
    }
    const details = await provider.interactionDetails(ctx.req, ctx.res);
    const client = await provider.Client.find(details.params.client_id);
    const clientName = client?.clientName ?? details.params.client_id;
    ctx.set('Cache-Control', 'no-store');
    if (ctx.method === 'GET' && details.prompt.name === 'consent') {
      const grantId = await autoConsent(details, details.session.accountId);
      await provider.interactionFinished(ctx.req, ctx.res, { consent: { grantId } }, { mergeWithLastSubmission: true });
      ctx.respond = false;
    } else if (ctx.method === 'GET') {
      ctx.type = 'html';
      ctx.body = page(details.uid, clientName);
    } else if (ctx.method === 'POST' && match[2]) {
      const form = await readForm(ctx.req);
      const account = accounts[form.login ?? ''];
      if (!account || !sameSecret(form.password ?? '', account.password)) {
        log(`sign-in refused for ${JSON.stringify(String(form.login ?? '').slice(0, 40))}`);
        ctx.type = 'html';
        ctx.body = page(details.uid, clientName, 'Incorrect username or password.');
        return;
      }
      log(`sign-in of ${form.login}`);
      const grantId = await autoConsent(details, form.login);
      await provider.interactionFinished(ctx.req, ctx.res, {
        login: { accountId: form.login },
        consent: { grantId },
      }, { mergeWithLastSubmission: false });
      ctx.respond = false;
    } else {
      ctx.status = 405;
    }
  } finally {
    log(`${ctx.method} ${ctx.path} -> ${ctx.respond === false ? ctx.res.statusCode : ctx.status} (${Date.now() - started} ms)`);
  }
});

// -- RFC 8693 token exchange -----------------------------------------------------------

function refuse(error, description) {
  return new errors.CustomOIDCProviderError(error, description);
}

async function tokenExchange(ctx) {
  const { params, client } = ctx.oidc;
  if (!params.subject_token || !params.subject_token_type) {
    throw new errors.InvalidRequest('subject_token and subject_token_type are required');
  }
  if (params.subject_token_type !== ACCESS_TOKEN_TYPE) {
    throw new errors.InvalidRequest(`subject_token_type must be ${ACCESS_TOKEN_TYPE}`);
  }
  if (params.requested_token_type && ![ACCESS_TOKEN_TYPE, JWT_TOKEN_TYPE].includes(params.requested_token_type)) {
    throw new errors.InvalidRequest(`requested_token_type must be ${ACCESS_TOKEN_TYPE} or ${JWT_TOKEN_TYPE}`);
  }
  if (params.actor_token) {
    throw new errors.InvalidRequest('actor_token is not supported (impersonation only)');
  }
  const audience = params.audience ?? params.resource;
  if (!audience) {
    throw new errors.InvalidTarget('an audience (or resource) is required');
  }
  if (!exchange.audiences.includes(audience)) {
    throw new errors.InvalidTarget(`tokens for the audience ${audience} are not issued`);
  }
  // find() answers only for a token this provider stored and that has not expired or been revoked.
  const subject = await provider.AccessToken.find(params.subject_token);
  if (!subject || subject.isExpired || !accounts[subject.accountId]) {
    throw refuse('invalid_grant', 'subject_token is not an active access token of this provider');
  }
  if (subject.grantId && !(await provider.Grant.find(subject.grantId))) {
    throw refuse('invalid_grant', 'subject_token is not an active access token of this provider');
  }
  const granted = new Set(subject.scope?.split(' ') ?? []);
  const asked = params.scope ? params.scope.split(' ') : [];
  const notGranted = asked.filter((s) => !granted.has(s));
  if (notGranted.length) {
    throw new errors.InvalidScope(`scope not granted to the subject_token: ${notGranted.join(' ')}`, params.scope);
  }
  const token = new provider.AccessToken({
    accountId: subject.accountId,
    client,
    grantId: subject.grantId,
    gty: 'token_exchange',
    scope: asked.join(' ') || undefined,
    expiresWithSession: false,
  });
  token.resourceServer = {
    audience,
    accessTokenTTL: exchange.token_ttl,
    accessTokenFormat: 'jwt',
    jwt: { sign: { alg: 'RS256' } },
    identifier: () => audience,
  };
  token.setAudience(audience);
  if (granted.has('groups')) {
    const { groups, preferred_username } = accountClaims(subject.accountId);
    exchangeClaims.set(token, { groups, preferred_username });
  }
  ctx.oidc.entity('AccessToken', token);
  const value = await token.save();
  log(`token exchange for ${subject.accountId} -> ${audience}`);
  ctx.body = {
    access_token: value,
    issued_token_type: ACCESS_TOKEN_TYPE,
    token_type: 'Bearer',
    expires_in: token.expiration,
    ...(token.scope ? { scope: token.scope } : {}),
  };
}

provider.registerGrantType(TOKEN_EXCHANGE, tokenExchange, [
  'subject_token', 'subject_token_type', 'actor_token', 'actor_token_type', 'requested_token_type',
  'audience', 'resource', 'scope',
]);

// -- logging (codes and descriptions only) -----------------------------------------------

provider.on('grant.success', (ctx) => log(`token: ${ctx.oidc.params.grant_type} for ${ctx.oidc.client?.clientId}`));
for (const event of ['grant.error', 'authorization.error', 'userinfo.error', 'revocation.error',
  'introspection.error', 'interaction.error']) {
  provider.on(event, (ctx, err) => log(`${event}: ${err.error} (${err.error_description}; ${err.error_detail ?? ''})`));
}
provider.on('grant.revoked', () => log('grant revoked'));
provider.on('server_error', (ctx, err) => log(`server_error: ${err.stack}`));

const server = createServer({ cert: readFileSync(config.cert), key: readFileSync(config.key) }, provider.callback());
server.listen(config.port, config.host, () => log(`OpenID Connect provider ${config.issuer} on ${config.host}:${config.port}`));
