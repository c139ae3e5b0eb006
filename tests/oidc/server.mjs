// A real, certified OpenID provider (npm `oidc-provider`) on 127.0.0.1, for tests/oidc_provider.rs.
//
//   node tests/oidc/server.mjs [port]      (port 0 or absent: any free port)
//
// Prints one line on stdout, the issuer URL (`http://127.0.0.1:<port>`), once it accepts
// connections. Exits when its standard input closes, so it never outlives the test process.
//
// One confidential client, `test-client` / `test-secret` (client_secret_basic), may use the
// client_credentials grant for these resource indicators, each issuing JWT access tokens
// (RFC 9068) signed with a different algorithm:
//
//   urn:test:api         RS256        urn:test:api:ps256   PS256
//   urn:test:api:es256   ES256        urn:test:api:eddsa   EdDSA (Ed25519)
//
// The key store holds one RSA, one P-256 and one Ed25519 key per generation; kids are
// `rsa-<n>`, `ec-<n>`, `ed-<n>`. `POST /__rotate` makes a new generation the signing keys and
// keeps the previous generation published (as an IdP does during a rotation), dropping older
// ones. It answers with the new generation's kids as JSON.

import { createServer } from 'node:http';
import { generateKeyPairSync } from 'node:crypto';
import Provider from 'oidc-provider';

const HOST = '127.0.0.1';
const port = Number(process.argv[2] ?? process.env.PORT ?? 0);

export const CLIENT_ID = 'test-client';
export const CLIENT_SECRET = 'test-secret';

const RESOURCES = {
  'urn:test:api': 'RS256',
  'urn:test:api:ps256': 'PS256',
  'urn:test:api:es256': 'ES256',
  'urn:test:api:eddsa': 'EdDSA',
};

function privateJwk(type, options, kid) {
  const { privateKey } = generateKeyPairSync(type, options);
  return { ...privateKey.export({ format: 'jwk' }), kid, use: 'sig' };
}

function generation(n) {
  return [
    privateJwk('rsa', { modulusLength: 2048 }, `rsa-${n}`),
    privateJwk('ec', { namedCurve: 'P-256' }, `ec-${n}`),
    privateJwk('ed25519', {}, `ed-${n}`),
  ];
}

// A minimal in-memory storage (the provider's own default warns on every start). Nothing the
// tests do needs it beyond the life of one process.
class MemoryAdapter {
  static #store = new Map();

  constructor(model) {
    this.model = model;
  }

  async upsert(id, payload) {
    MemoryAdapter.#store.set(`${this.model}:${id}`, payload);
  }

  async find(id) {
    return MemoryAdapter.#store.get(`${this.model}:${id}`);
  }

  async findByUid() {
    return undefined;
  }

  async findByUserCode() {
    return undefined;
  }

  async consume(id) {
    const payload = await this.find(id);
    if (payload) {
      payload.consumed = Math.floor(Date.now() / 1000);
    }
  }

  async destroy(id) {
    MemoryAdapter.#store.delete(`${this.model}:${id}`);
  }

  async revokeByGrantId() {}
}

function configuration(keys) {
  return {
    adapter: MemoryAdapter,
    jwks: { keys },
    cookies: { keys: ['harness-cookie-key-not-a-secret'] },
    clients: [
      {
        client_id: CLIENT_ID,
        client_secret: CLIENT_SECRET,
        grant_types: ['client_credentials'],
        redirect_uris: [],
        response_types: [],
        token_endpoint_auth_method: 'client_secret_basic',
        scope: 'api:read',
      },
    ],
    scopes: ['api:read'],
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => 'urn:test:api',
        useGrantedResource: () => true,
        getResourceServerInfo: (_ctx, resource) => {
          const alg = RESOURCES[resource];
          if (!alg) {
            throw new Provider.errors.InvalidTarget();
          }
          return {
            scope: 'api:read',
            audience: 'urn:test:api',
            accessTokenFormat: 'jwt',
            accessTokenTTL: 300,
            jwt: { sign: { alg } },
          };
        },
      },
    },
    enabledJWA: {
      idTokenSigningAlgValues: ['RS256', 'PS256', 'ES256', 'EdDSA'],
    },
    ttl: {
      AccessToken: 300,
      ClientCredentials: 300,
      Grant: 300,
      IdToken: 300,
      Interaction: 300,
      Session: 300,
    },
  };
}

let gen = 1;
let keys = generation(gen);
let provider;
let callback;

function install(issuer) {
  provider = new Provider(issuer, configuration(keys));
  callback = provider.callback();
}

const server = createServer((req, res) => {
  if (req.method === 'POST' && req.url === '/__rotate') {
    gen += 1;
    const fresh = generation(gen);
    keys = [...fresh, ...keys.slice(0, 3)];
    install(provider.issuer);
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ generation: gen, kids: fresh.map((k) => k.kid) }));
    return;
  }
  callback(req, res);
});

server.listen(port, HOST, () => {
  const issuer = `http://${HOST}:${server.address().port}`;
  install(issuer);
  process.stdout.write(`${issuer}\n`);
});

process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
process.stdin.on('close', () => process.exit(0));
