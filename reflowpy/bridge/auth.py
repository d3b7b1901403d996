"""The HELLO challenge: both peers prove they know the token without ever sending it.

The acceptor opens with a fresh random nonce ``Na``. The dialer answers with its own
nonce ``Nd`` and ``HMAC(token, "dial" | Na | Nd | dialer id | session)``; the acceptor
checks it in constant time and proves itself back with
``HMAC(token, "accept" | Nd | Na | acceptor id | session)``. A recorded handshake
cannot be replayed: its proof covers an ``Na`` the acceptor will never issue again,
and the roles are bound into the MAC so one side's proof cannot be reflected back.
Over ``ws://`` nothing an eavesdropper sees lets it connect; use ``wss://`` to also
hide the data.

Tokens come from the peers file or ``REFLOWPY_BRIDGE_TOKEN`` (what this network
presents) and ``--token`` / ``REFLOWPY_TOKEN`` (what a server accepts).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

__all__ = ["NONCE_BYTES", "new_nonce", "proof", "verify"]

NONCE_BYTES = 16


def new_nonce() -> bytes:
    """A fresh random challenge."""
    return secrets.token_bytes(NONCE_BYTES)


def proof(token: str, role: str, their_nonce: bytes, my_nonce: bytes, my_id: str,
          session: str) -> bytes:
    """The MAC one side sends to show it holds ``token``."""
    msg = b"|".join((b"reflowpy-bridge/1", role.encode(), their_nonce, my_nonce,
                     my_id.encode(), session.encode()))
    return hmac.new(token.encode(), msg, hashlib.sha256).digest()


def verify(token: str, role: str, their_nonce: bytes, my_nonce: bytes, my_id: str,
           session: str, given: bytes) -> bool:
    """Whether ``given`` is the right proof (constant-time comparison)."""
    return hmac.compare_digest(proof(token, role, their_nonce, my_nonce, my_id, session),
                               given)
