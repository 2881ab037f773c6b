"""The public half of a connection's key, as the JWKS an EHR registers (SMART
Backend Services lets the EHR fetch it from a URL, so a new key needs no form
on the EHR's side)."""

from __future__ import annotations

import base64
import hashlib
import json

from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from jwt.algorithms import ECAlgorithm, RSAAlgorithm


def public_jwk(private_pem: str, algorithm: str) -> dict:
    """The JWK of the public key, without a kid."""
    key = load_pem_private_key(private_pem.encode(), password=None)
    if isinstance(key, rsa.RSAPrivateKey) and algorithm == "RS384":
        jwk = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    elif isinstance(key, ec.EllipticCurvePrivateKey) and algorithm == "ES384":
        jwk = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    else:
        raise ValueError(f"The key does not fit {algorithm}: RS384 needs an RSA key, ES384 a P-384 EC key.")
    return {**jwk, "alg": algorithm, "use": "sig", "key_ops": ["verify"]}


def thumbprint(jwk: dict) -> str:
    """RFC 7638: the key's own id, when the EHR gave none."""
    members = {k: jwk[k] for k in (("e", "kty", "n") if jwk["kty"] == "RSA" else ("crv", "kty", "x", "y"))}
    digest = hashlib.sha256(json.dumps(members, separators=(",", ":"), sort_keys=True).encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def jwks_for(connection) -> dict:
    jwk = public_jwk(connection.private_key, connection.algorithm)
    return {"keys": [{**jwk, "kid": connection.key_id or thumbprint(jwk)}]}
