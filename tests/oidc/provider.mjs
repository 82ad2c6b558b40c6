// A real OpenID provider for the social-login tests: panva's oidc-provider (OpenID
// certified), configured with one confidential client, PKCE and RS256 ID tokens. The
// login page is a form the test posts: the person's subject, address and whether the
// address is verified (what a real provider asserts). Started by tests/api/oidc.rs on a
// free port; it prints `listening <issuer>` once ready.
//
// Env: CLIENT_ID, CLIENT_SECRET, REDIRECT_URI; FOREIGN_JWKS=1 publishes a JWKS that does
// not hold the key ID tokens are signed with (a forged or rotated-away key).
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import http from 'node:http';
import Provider from 'oidc-provider';

const rsa = (kid) => {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid, use: 'sig', alg: 'RS256' };
};
const signing = rsa(`sig-${randomUUID()}`);
const foreign = rsa(`other-${randomUUID()}`);
const publicPart = ({ d, p, q, dp, dq, qi, ...pub }) => pub;

// What the login form told us about each subject.
const people = new Map();
// Access tokens handed to the client, so a test can look for them in the database.
const issued = [];

const server = http.createServer();
server.listen(0, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, {
    clients: [{
      client_id: process.env.CLIENT_ID,
      client_secret: process.env.CLIENT_SECRET,
      redirect_uris: [process.env.REDIRECT_URI],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    }],
    jwks: { keys: [signing] },
    cookies: { keys: [randomUUID()] },
    claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name', 'preferred_username'] },
    // The claims of the granted scopes go into the ID token itself.
    conformIdTokenClaims: false,
    features: { devInteractions: { enabled: false } },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    async findAccount(ctx, sub) {
      return { accountId: sub, claims: async () => ({ sub, ...people.get(sub) }) };
    },
  });
  provider.on('access_token.saved', (token) => issued.push(token.jti));
  const handle = provider.callback();

  server.on('request', async (req, res) => {
    const url = new URL(req.url, issuer);
    try {
      if (url.pathname === '/jwks' && process.env.FOREIGN_JWKS === '1') {
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ keys: [publicPart(foreign)] }));
      } else if (url.pathname === '/test/issued') {
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ access_tokens: issued }));
      } else if (req.method === 'POST' && /^\/interaction\/[^/]+\/login$/.test(url.pathname)) {
        let body = '';
        for await (const chunk of req) body += chunk;
        const form = new URLSearchParams(body);
        const sub = form.get('sub');
        people.set(sub, {
          email: form.get('email') || undefined,
          email_verified: form.get('email_verified') === 'true',
          name: form.get('name') || undefined,
          preferred_username: form.get('preferred_username') || undefined,
        });
        const details = await provider.interactionDetails(req, res);
        const grant = new provider.Grant({ accountId: sub, clientId: details.params.client_id });
        grant.addOIDCScope(details.params.scope);
        const grantId = await grant.save();
        await provider.interactionFinished(req, res, { login: { accountId: sub }, consent: { grantId } },
          { mergeWithLastSubmission: false });
      } else if (req.method === 'GET' && /^\/interaction\/[^/]+$/.test(url.pathname)) {
        res.setHeader('content-type', 'text/html');
        res.end(`<form method="post" action="${url.pathname}/login"><input name="sub"><input name="email">
          <input name="email_verified"><button>Sign in</button></form>`);
      } else {
        handle(req, res);
      }
    } catch (error) {
      res.statusCode = 500;
      res.end(String(error));
    }
  });
  console.log(`listening ${issuer}`);
});
