// DPoP proofs (RFC 9449) and DPoP-bound access tokens made by an independent implementation,
// the `jose` npm package, for tests/it/dpop.rs.
//
//   node tests/oidc/dpop.mjs <htm> <htu> <issuer> <audience>
//
// Prints one JSON line: {"jwks": the issuer's public keys, "cases": [{"alg", "jkt", "token",
// "proof"}]}, one case per proof algorithm (ES256, PS256, EdDSA), each with a fresh client key:
// an ES256 access token (typ at+jwt) bound to that key by `cnf.jkt` (jose's RFC 7638
// thumbprint), and a proof for <htm> <htu> carrying `ath` for that token.
import { createHash, randomUUID } from 'node:crypto';
import { SignJWT, base64url, calculateJwkThumbprint, exportJWK, generateKeyPair } from 'jose';

const [htm, htu, issuer, audience] = process.argv.slice(2);
if (!audience) {
  console.error('usage: node dpop.mjs <htm> <htu> <issuer> <audience>');
  process.exit(2);
}

const issuerKey = await generateKeyPair('ES256');
const issuerJwk = { ...(await exportJWK(issuerKey.publicKey)), kid: 'jose-issuer', alg: 'ES256', use: 'sig' };
const now = Math.floor(Date.now() / 1000);
const cases = [];
for (const alg of ['ES256', 'PS256', 'EdDSA']) {
  const client = await generateKeyPair(alg, alg === 'EdDSA' ? { crv: 'Ed25519' } : {});
  const jwk = await exportJWK(client.publicKey);
  const jkt = await calculateJwkThumbprint(jwk, 'sha256');
  const token = await new SignJWT({ sub: `client-${alg}`, cnf: { jkt } })
    .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid: 'jose-issuer' })
    .setIssuer(issuer)
    .setAudience(audience)
    .setIssuedAt(now)
    .setExpirationTime(now + 300)
    .sign(issuerKey.privateKey);
  const ath = base64url.encode(createHash('sha256').update(token).digest());
  const proof = await new SignJWT({ htm, htu, ath })
    .setProtectedHeader({ alg, typ: 'dpop+jwt', jwk })
    .setJti(randomUUID())
    .setIssuedAt(now)
    .sign(client.privateKey);
  cases.push({ alg, jkt, token, proof });
}
console.log(JSON.stringify({ jwks: { keys: [issuerJwk] }, cases }));
