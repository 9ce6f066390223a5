"""A real OpenID Connect discovery + JWKS server on loopback, with keys the test generates.

Not a patched function: the validator fetches these documents over HTTP like it would from an
identity provider.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm


class Provider:
    def __init__(self) -> None:
        self.keys: dict[str, tuple[Any, str]] = {}  # kid -> (private key, alg)
        self.fetches = 0
        self.advertised_issuer: str | None = None  # what discovery says, when not the real one
        self.jwks_uri: str | None = None  # where discovery says the keys are, when not here
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/.well-known/openid-configuration":
                    body = {
                        "issuer": provider.advertised_issuer or provider.issuer,
                        "jwks_uri": provider.jwks_uri or provider.issuer + "/jwks",
                    }
                elif self.path == "/jwks":
                    provider.fetches += 1
                    body = provider.jwks()
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.issuer = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def add_key(self, alg: str = "RS256") -> str:
        kid = uuid.uuid4().hex[:8]
        key = (
            rsa.generate_private_key(public_exponent=65537, key_size=2048)
            if alg.startswith(("RS", "PS"))
            else ec.generate_private_key(ec.SECP256R1())
        )
        self.keys[kid] = (key, alg)
        return kid

    def jwks(self) -> dict[str, Any]:
        out = []
        for kid, (key, alg) in self.keys.items():
            algo = RSAAlgorithm if alg.startswith(("RS", "PS")) else ECAlgorithm
            jwk = json.loads(algo.to_jwk(key.public_key()))
            jwk.update({"kid": kid, "alg": alg, "use": "sig"})
            out.append(jwk)
        return {"keys": out}

    def token(self, kid: str, *, audience: str = "aegis", **claims: Any) -> str:
        key, alg = self.keys[kid]
        now = int(time.time())
        body: dict[str, Any] = {
            "iss": self.issuer,
            "aud": audience,
            "sub": "user-1",
            "preferred_username": "olivia",
            "iat": now,
            "nbf": now,
            "exp": now + 300,
            "groups": ["sre-oncall"],
        }
        body.update(claims)
        return jwt.encode(body, key, algorithm=alg, headers={"kid": kid})

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
