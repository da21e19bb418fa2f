"""The payment platform's notification signature: base64 RSA-SHA256 (PKCS#1 v1.5), by the
platform's private key, over `timestamp + "\\n" + nonce + "\\n" + rawBody + "\\n"` (API.md)."""
from __future__ import annotations

import base64
import binascii
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from shop.infra.files import DIR_MODE, private_file, write_private


def message(timestamp: str, nonce: str, body: bytes) -> bytes:
    return timestamp.encode() + b"\n" + nonce.encode() + b"\n" + body + b"\n"


class Signer:
    def __init__(self, private_pem: bytes) -> None:
        self._key = serialization.load_pem_private_key(private_pem, password=None)

    def sign(self, timestamp: str, nonce: str, body: bytes) -> str:
        key = self._key
        if not isinstance(key, rsa.RSAPrivateKey):
            raise TypeError(f"the platform signs with an RSA key, not {type(key).__name__}")
        sig = key.sign(message(timestamp, nonce, body), padding.PKCS1v15(), hashes.SHA256())
        return base64.b64encode(sig).decode()


class Verifier:
    def __init__(self, public_pem: bytes) -> None:
        self._key = serialization.load_pem_public_key(public_pem)

    def verify(self, timestamp: str, nonce: str, body: bytes, signature: str) -> bool:
        try:
            sig = base64.b64decode(signature, validate=True)
            key = self._key
            if not isinstance(key, rsa.RSAPublicKey):
                raise TypeError(f"the platform signs with an RSA key, not {type(key).__name__}")
            key.verify(sig, message(timestamp, nonce, body), padding.PKCS1v15(), hashes.SHA256())
            return True
        except (InvalidSignature, binascii.Error, ValueError):
            return False


def load_or_create_key_pair(directory: Path, name: str = "sandbox") -> tuple[bytes, bytes]:
    """The platform's key pair, generated at first start and kept in the data dir (private 0600)."""
    private_path, public_path = directory / f"{name}_private.pem", directory / f"{name}_public.pem"
    if private_path.exists() and public_path.exists():
        return private_file(private_path).read_bytes(), private_file(public_path).read_bytes()
    directory.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    write_private(private_path, private_pem)
    write_private(public_path, public_pem)  # public, but nothing in the data dir is others' to read
    return private_pem, public_pem
