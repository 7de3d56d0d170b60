// A real OpenID provider (the certified `oidc-provider` package) on loopback, for the
// console's sign-in tests. Started by tests/it/oidc.rs:
//
//   node provider.mjs PORT REDIRECT_URI
//
// It prints `ready` when it listens. Fixed client: `servicehub` / `test-secret`. Accounts
// (the test picks who signs in next with GET /test/login-as/ACCOUNT, standing in for the
// person typing their password):
//   lee      lee.gu@contoso.com, a work account (Contoso's Entra tenant), in one group
//   msa      lee.gu@contoso.com, a personal Microsoft account (the consumer tenant)
//   megan    megan.bowen@contoso.com, a work account
//   notenant kim@fabrikam.com, a token without `tid`
// GET /test/mint?account=lee&kind=valid|expired|audience|key|issuer returns an ID token for
// the bearer tests: signed with the provider's key (valid, expired, for another audience,
// from another issuer) or with a key the provider never published (key).
import { Provider } from 'oidc-provider';
import * as jose from 'jose';

const [port, redirect] = process.argv.slice(2);
const issuer = `http://127.0.0.1:${port}`;
const CONTOSO_TENANT = '72f988bf-86f1-41af-91ab-2d7cd011db47';
const CONSUMER_TENANT = '9188040d-6c67-4c5b-b112-36a304b66dad';
const accounts = {
  lee: { email: 'lee.gu@contoso.com', tid: CONTOSO_TENANT, groups: ['6f1c5d2e-0000-4000-8000-00000000c0de'] },
  msa: { email: 'lee.gu@contoso.com', tid: CONSUMER_TENANT, groups: [] },
  megan: { email: 'megan.bowen@contoso.com', tid: CONTOSO_TENANT, groups: [] },
  notenant: { email: 'kim@fabrikam.com', groups: [] },
};
let next = 'lee';

const { privateKey } = await jose.generateKeyPair('RS256', { extractable: true });
const signing = { ...(await jose.exportJWK(privateKey)), kid: 'test-key-1', alg: 'RS256', use: 'sig' };
const { privateKey: rogue } = await jose.generateKeyPair('RS256', { extractable: true });

const provider = new Provider(issuer, {
  clients: [{
    client_id: 'servicehub',
    client_secret: 'test-secret',
    redirect_uris: [redirect],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  jwks: { keys: [signing] },
  pkce: { required: () => true },
  claims: { openid: ['sub', 'tid', 'groups'], email: ['email', 'email_verified'], profile: ['name'] },
  // The ID token carries the claims (Entra puts email, tid and groups there).
  conformIdTokenClaims: false,
  findAccount: async (_ctx, id) => {
    const a = accounts[id];
    if (!a) return undefined;
    return {
      accountId: id,
      claims: async () => ({ sub: id, email: a.email, email_verified: true, name: id, tid: a.tid, groups: a.groups }),
    };
  },
  interactions: { url: (_ctx, interaction) => `/auto/${interaction.uid}` },
  features: { devInteractions: { enabled: false } },
  ttl: { IdToken: 600, AccessToken: 600, AuthorizationCode: 60, Interaction: 600, Session: 600, Grant: 600 },
});
provider.proxy = false;

// The interaction a person would go through (log in, consent), done for the chosen account.
provider.use(async (ctx, nextMw) => {
  if (ctx.path.startsWith('/test/login-as/')) {
    next = ctx.path.slice('/test/login-as/'.length);
    ctx.body = { next };
    return;
  }
  if (ctx.path === '/test/mint') {
    const account = accounts[ctx.query.account || 'lee'];
    const kind = ctx.query.kind || 'valid';
    const now = Math.floor(Date.now() / 1000);
    const claims = { sub: ctx.query.account || 'lee', email: account.email, tid: account.tid, groups: account.groups };
    const jwt = new jose.SignJWT(claims)
      .setProtectedHeader({ alg: 'RS256', kid: kind === 'key' ? 'rogue-key' : signing.kid })
      .setIssuer(kind === 'issuer' ? 'http://127.0.0.1:1/other' : issuer)
      .setAudience(kind === 'audience' ? 'someone-else' : 'servicehub')
      .setIssuedAt(kind === 'expired' ? now - 7200 : now)
      .setExpirationTime(kind === 'expired' ? now - 3600 : now + 600);
    ctx.body = { token: await jwt.sign(kind === 'key' ? rogue : await jose.importJWK(signing, 'RS256')) };
    return;
  }
  if (ctx.path.startsWith('/auto/')) {
    const details = await provider.interactionDetails(ctx.req, ctx.res);
    const { prompt, params, session } = details;
    if (prompt.name === 'login') {
      await provider.interactionFinished(ctx.req, ctx.res, { login: { accountId: next } }, { mergeWithLastSubmission: false });
      return;
    }
    const grant = new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    grant.addOIDCScope(params.scope);
    const grantId = await grant.save();
    await provider.interactionFinished(ctx.req, ctx.res, { consent: { grantId } }, { mergeWithLastSubmission: true });
    return;
  }
  await nextMw();
});

provider.listen(Number(port), '127.0.0.1', () => console.log('ready'));
