"""Callback signatures and safe mode (AES-256-CBC with the EncodingAESKey), as WeChat specifies them."""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

BLOCK = 32   # WeChat pads to a multiple of 32 bytes (PKCS#7 with block size 32)


def signature(*parts: str) -> str:
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


def signature_ok(expected: str | None, *parts: str) -> bool:
    # Bytes: compare_digest refuses str with non-ASCII characters (a TypeError, i.e. a 500, on a forged signature).
    return bool(expected) and hmac.compare_digest(signature(*parts).encode(), expected.encode())


def _aes_key(encoding_aes_key: str) -> bytes:
    key = base64.b64decode(encoding_aes_key + "=")
    if len(key) != 32:
        raise ValueError("EncodingAESKey must be 43 characters (32 bytes once decoded)")
    return key


def encrypt(message: str, *, encoding_aes_key: str, app_id: str) -> str:
    """Safe-mode encryption (replies and tests): 16 random bytes ‖ length ‖ message ‖ AppId, AES-256-CBC."""
    key = _aes_key(encoding_aes_key)
    body = message.encode()
    plain = secrets.token_bytes(16) + struct.pack(">I", len(body)) + body + app_id.encode()
    pad = BLOCK - len(plain) % BLOCK
    plain += bytes([pad]) * pad
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return base64.b64encode(encryptor.update(plain) + encryptor.finalize()).decode()


def decrypt(ciphertext: str, *, encoding_aes_key: str, app_id: str) -> str:
    key = _aes_key(encoding_aes_key)
    try:
        raw = base64.b64decode(ciphertext, validate=True)
    except ValueError:
        raise ValueError("Encrypt is not base64") from None
    if not raw or len(raw) % 16:
        raise ValueError("Encrypt has a bad length")
    decryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
    plain = decryptor.update(raw) + decryptor.finalize()
    pad = plain[-1]
    if not 1 <= pad <= BLOCK or plain[-pad:] != bytes([pad]) * pad:
        raise ValueError("bad padding")
    plain = plain[:-pad]
    length = struct.unpack(">I", plain[16:20])[0]
    message, sender = plain[20:20 + length], plain[20 + length:]
    if not hmac.compare_digest(sender, app_id.encode()):
        raise ValueError("message was encrypted for another AppId")
    return message.decode()

