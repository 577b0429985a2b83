"""Optional payload encryption: an AES-256-GCM PayloadCodec keyed from the environment.

With `VQA_PAYLOAD_KEY` (a base64 32-byte key) set in both the worker's and the
starter's environment, every payload the client writes (workflow inputs and
results, activity inputs and results, queries, memos, summaries, failure
messages) reaches Temporal encrypted; the server and its UI see only
`binary/encrypted` bytes. Each payload names the key that sealed it
(`VQA_PAYLOAD_KEY_ID`, default: a fingerprint of the key), so keys can rotate:
the old key stays readable through `VQA_PAYLOAD_OLD_KEYS` ("ID:BASE64,...").
Search attributes are never encrypted: the server indexes them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Mapping, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

ENCODING = b"binary/encrypted"
KEY_ID_METADATA = "encryption-key-id"
_NONCE_BYTES = 12


class PayloadKeyError(ValueError):
    """A key setting is malformed, or a payload cannot be decrypted with the keys at hand."""


def key_fingerprint(key: bytes) -> str:
    """The default key id: names the key without revealing it."""
    return "k" + hashlib.sha256(b"vqa-payload-key" + key).hexdigest()[:12]


def _decode_key(value: str, *, name: str) -> bytes:
    try:
        key = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise PayloadKeyError(f"{name} is not base64") from exc
    if len(key) != 32:
        raise PayloadKeyError(f"{name} must be 32 bytes (base64 of 32 random bytes), got {len(key)}")
    return key


class EncryptionCodec(PayloadCodec):
    """Encrypts each payload whole (metadata and data) with AES-256-GCM under the current key."""

    def __init__(self, *, key_id: str, key: bytes, old_keys: Mapping[str, bytes] | None = None) -> None:
        self.key_id = key_id
        self._ciphers = {kid: AESGCM(k) for kid, k in (old_keys or {}).items()}
        self._ciphers[key_id] = AESGCM(key)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> EncryptionCodec | None:
        """The codec `VQA_PAYLOAD_KEY` in `env` (the settings' variables) asks for; None when it is not set."""
        raw = env.get("VQA_PAYLOAD_KEY", "").strip()
        if not raw:
            return None
        key = _decode_key(raw, name="VQA_PAYLOAD_KEY")
        key_id = env.get("VQA_PAYLOAD_KEY_ID", "").strip() or key_fingerprint(key)
        old: dict[str, bytes] = {}
        for item in env.get("VQA_PAYLOAD_OLD_KEYS", "").split(","):
            if not item.strip():
                continue
            old_id, sep, old_key = item.strip().partition(":")
            if not sep or not old_id:
                raise PayloadKeyError("VQA_PAYLOAD_OLD_KEYS takes ID:BASE64 pairs separated by commas")
            old[old_id] = _decode_key(old_key, name=f"VQA_PAYLOAD_OLD_KEYS key {old_id!r}")
        return cls(key_id=key_id, key=key, old_keys=old)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        cipher = self._ciphers[self.key_id]
        out = []
        for payload in payloads:
            nonce = os.urandom(_NONCE_BYTES)
            sealed = cipher.encrypt(nonce, payload.SerializeToString(), self.key_id.encode())
            out.append(
                Payload(
                    metadata={"encoding": ENCODING, KEY_ID_METADATA: self.key_id.encode()},
                    data=nonce + sealed,
                )
            )
        return out

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        out = []
        for payload in payloads:
            if payload.metadata.get("encoding") != ENCODING:
                out.append(payload)  # written before encryption was turned on
                continue
            key_id = payload.metadata.get(KEY_ID_METADATA, b"").decode(errors="replace")
            cipher = self._ciphers.get(key_id)
            if cipher is None:
                raise PayloadKeyError(
                    f"payload encrypted with key {key_id!r}, which this process does not have "
                    f"(its VQA_PAYLOAD_KEY is {self.key_id!r}; older keys go in VQA_PAYLOAD_OLD_KEYS)"
                )
            try:
                plain = cipher.decrypt(payload.data[:_NONCE_BYTES], payload.data[_NONCE_BYTES:], key_id.encode())
            except InvalidTag as exc:
                raise PayloadKeyError(
                    f"payload encrypted with key {key_id!r} does not decrypt with this process's key of that id: "
                    "wrong VQA_PAYLOAD_KEY, or the payload was altered"
                ) from exc
            out.append(Payload.FromString(plain))
        return out


class MissingKeyCodec(PayloadCodec):
    """Without VQA_PAYLOAD_KEY: writes payloads as they are, and says clearly why an
    encrypted one cannot be read (instead of an unknown-encoding error)."""

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return list(payloads)

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        for payload in payloads:
            if payload.metadata.get("encoding") == ENCODING:
                key_id = payload.metadata.get(KEY_ID_METADATA, b"").decode(errors="replace")
                raise PayloadKeyError(
                    f"payload encrypted with key {key_id!r}, and VQA_PAYLOAD_KEY is not set in this process"
                )
        return list(payloads)
