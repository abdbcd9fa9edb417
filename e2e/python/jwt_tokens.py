"""Keys and JSON Web Tokens made with PyJWT and cryptography, as JSON, for the jwt policy's tests.

Usage: jwt_tokens.py HS_SECRET [SHORT_EXP_SECS]

Prints {"pem": {rsa, ec, ed}, "jwks": {"k1": jwk, "k2": jwk}, "tokens": {name: token}}; the
public keys as PEM, the RSA keys k1 and k2 as JWKs, and tokens (subject "alice" unless named):
  hs256, hs384           HS256/HS384 with HS_SECRET, exp in an hour, rooms and publish claims
  hs_connect_only        HS256 without the publish claim
  hs_wrong_secret        HS256 with another secret
  hs_expired             exp two minutes ago
  hs_not_yet             nbf in an hour
  hs_no_exp              no exp at all
  hs_issuer, hs_audience iss / aud other than the configured ones ("sidecast-tests", "sidecast")
  hs_no_user             no sub
  hs_short               exp in SHORT_EXP_SECS (default 3)
  none                   alg "none", unsigned
  rs256, ps256           with the RSA key k1 (kid "k1")
  rs256_k2               with the RSA key k2 (kid "k2")
  es256, eddsa           with the EC P-256 and Ed25519 keys
  confused               HS256 whose HMAC secret is the RSA public key PEM (alg confusion)
"""

import base64
import hashlib
import hmac
import json
import sys
import time

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

SECRET = sys.argv[1]
SHORT = int(sys.argv[2]) if len(sys.argv) > 2 else 3
now = int(time.time())
base = {"sub": "alice", "iss": "sidecast-tests", "aud": "sidecast", "iat": now, "exp": now + 3600,
        "rooms": ["team:7"], "publish": ["team:*", "user:{user}"]}


def claims(**changes):
    c = dict(base)
    for k, v in changes.items():
        if v is None:
            c.pop(k, None)
        else:
            c[k] = v
    return c


def pem(public_key):
    return public_key.public_bytes(serialization.Encoding.PEM,
                                   serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


rsa1 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
rsa2 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
eck = ec.generate_private_key(ec.SECP256R1())
edk = ed25519.Ed25519PrivateKey.generate()

tokens = {
    "hs256": jwt.encode(claims(), SECRET, algorithm="HS256"),
    "hs384": jwt.encode(claims(), SECRET, algorithm="HS384"),
    "hs_connect_only": jwt.encode(claims(publish=None), SECRET, algorithm="HS256"),
    "hs_wrong_secret": jwt.encode(claims(), SECRET + "x", algorithm="HS256"),
    "hs_expired": jwt.encode(claims(exp=now - 120), SECRET, algorithm="HS256"),
    "hs_not_yet": jwt.encode(claims(nbf=now + 3600), SECRET, algorithm="HS256"),
    "hs_no_exp": jwt.encode(claims(exp=None), SECRET, algorithm="HS256"),
    "hs_issuer": jwt.encode(claims(iss="someone-else"), SECRET, algorithm="HS256"),
    "hs_audience": jwt.encode(claims(aud="another-service"), SECRET, algorithm="HS256"),
    "hs_no_user": jwt.encode(claims(sub=None), SECRET, algorithm="HS256"),
    "hs_short": jwt.encode(claims(exp=now + SHORT), SECRET, algorithm="HS256"),
    "none": jwt.encode(claims(), None, algorithm="none"),
    "rs256": jwt.encode(claims(), rsa1, algorithm="RS256", headers={"kid": "k1"}),
    "ps256": jwt.encode(claims(), rsa1, algorithm="PS256", headers={"kid": "k1"}),
    "rs256_k2": jwt.encode(claims(), rsa2, algorithm="RS256", headers={"kid": "k2"}),
    "es256": jwt.encode(claims(), eck, algorithm="ES256"),
    "eddsa": jwt.encode(claims(), edk, algorithm="EdDSA"),
}
# PyJWT refuses a PEM as an HMAC secret (its own alg-confusion guard): sign by hand.
signing_input = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + "." + b64(json.dumps(claims()).encode())
signature = hmac.new(pem(rsa1.public_key()).encode(), signing_input.encode(), hashlib.sha256).digest()
tokens["confused"] = signing_input + "." + b64(signature)


def jwk(key, kid):
    d = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    d.update(kid=kid, use="sig", alg="RS256")
    return d


print(json.dumps({
    "pem": {"rsa": pem(rsa1.public_key()), "ec": pem(eck.public_key()), "ed": pem(edk.public_key())},
    "jwks": {"k1": jwk(rsa1, "k1"), "k2": jwk(rsa2, "k2")},
    "tokens": tokens,
}))
