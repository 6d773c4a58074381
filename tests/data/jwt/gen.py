#!/usr/bin/env python3
"""Test vectors for tests/jwt.rs, signed by PyJWT + cryptography (an implementation
independent of the server's jsonwebtoken/RustCrypto), so the tests check interoperability,
not one library against itself.

Run from this folder: `pip install pyjwt cryptography && python3 gen.py`. Keys are made once
and reused when present (RSA key generation is random), so re-running only re-signs.
The private keys here are TEST KEYS ONLY: they are public in this repository.
Valid tokens expire in 2100 (exp 4102444800), expired ones in 2001, not-yet-valid ones
start in 2096 (nbf 4000000000).
"""
import base64, hashlib, hmac, json, os

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

HERE = os.path.dirname(os.path.abspath(__file__))
SECRET = b"wschat-test-secret-0123456789abcdef"  # secret.txt holds it plus one newline
ISS, AUD = "https://app.example", "wschat"
FUTURE, PAST, LATER_NBF = 4102444800, 1000000000, 4000000000


def path(name):
    return os.path.join(HERE, name)


def key(name, make):
    if not os.path.exists(path(name)):
        pem = make().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        open(path(name), "wb").write(pem)
    return serialization.load_pem_private_key(open(path(name), "rb").read(), None)


def public_pem(k):
    return k.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256_raw(header_b64, payload_b64, secret):
    """Signs arbitrary segments (PyJWT refuses to make malformed tokens or to key an HMAC
    with a PEM), with Python's own hmac: still not the server's code."""
    msg = f"{header_b64}.{payload_b64}".encode()
    return f"{header_b64}.{payload_b64}.{b64(hmac.new(secret, msg, hashlib.sha256).digest())}"


rsa_key = key("rsa_private.pem", lambda: rsa.generate_private_key(65537, 2048))
ec_key = key("ec_private.pem", lambda: ec.generate_private_key(ec.SECP256R1()))
open(path("secret.txt"), "wb").write(SECRET + b"\n")
open(path("rsa_public.pem"), "wb").write(public_pem(rsa_key))
# The server's --jwt-public-key-file: both public keys in one file.
open(path("public.pem"), "wb").write(public_pem(rsa_key) + public_pem(ec_key))

good = {"sub": "u-1", "name": "alice", "exp": FUTURE, "iss": ISS, "aud": AUD}
hs_header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
vectors = {
    "hs256_valid": (jwt.encode(good, SECRET, algorithm="HS256"), "ok"),
    "rs256_valid": (jwt.encode(dict(good, sub="u-2", name="bob"), rsa_key, algorithm="RS256"), "ok"),
    "es256_valid": (jwt.encode(dict(good, sub=3, name="carol"), ec_key, algorithm="ES256"), "ok"),
    "hs256_no_claims": (jwt.encode({"exp": FUTURE, "iss": ISS, "aud": AUD}, SECRET, algorithm="HS256"), "ok"),
    "rs256_team": (
        jwt.encode(dict(good, sub="u-4", name="dave", channels=["team-*"], rooms=["team-*"]), rsa_key, algorithm="RS256"),
        "ok",
    ),
    "hs256_wrong_signature": (jwt.encode(good, b"not-the-secret-0123456789abcdef!", algorithm="HS256"), "bad signature"),
    "alg_none": (jwt.encode(good, None, algorithm="none"), "algorithm not allowed"),
    # The RS256 -> HS256 confusion: an HMAC keyed with the server's public key.
    "hs256_keyed_with_rsa_public_key": (
        hs256_raw(hs_header, b64(json.dumps(good).encode()), public_pem(rsa_key)),
        "bad signature",  # with a secret configured too; "algorithm not allowed" without
    ),
    "expired": (jwt.encode(dict(good, exp=PAST), SECRET, algorithm="HS256"), "expired"),
    "not_yet_valid": (jwt.encode(dict(good, nbf=LATER_NBF), SECRET, algorithm="HS256"), "not yet valid"),
    "wrong_issuer": (jwt.encode(dict(good, iss="https://evil.example"), SECRET, algorithm="HS256"), "wrong issuer"),
    "wrong_audience": (jwt.encode(dict(good, aud="someone-else"), rsa_key, algorithm="RS256"), "wrong audience"),
    "missing_exp": (jwt.encode({"sub": "u-5", "iss": ISS, "aud": AUD}, SECRET, algorithm="HS256"), "missing exp"),
    # Correctly signed, but the payload is not base64url / not JSON.
    "malformed_base64": (hs256_raw(hs_header, "e30*not~base64", SECRET), "malformed base64"),
    "malformed_json": (hs256_raw(hs_header, b64(b'{"sub": "u-6", "exp": '), SECRET), "malformed JSON"),
    "malformed_header_json": (hs256_raw(b64(b'{"alg": HS256}'), b64(json.dumps(good).encode()), SECRET), "malformed JSON"),
}
out = {name: {"token": t, "expect": e} for name, (t, e) in vectors.items()}
with open(path("vectors.json"), "w") as f:
    json.dump(out, f, indent=1, sort_keys=True)
    f.write("\n")
print(f"{len(out)} vectors written (PyJWT {jwt.__version__})")
