"""The reference signer process: holds a PEM Ed25519 key, signs over stdin/stdout.

    python3 -m gatekeeper.audit.signer_process --key /etc/gk-signer/log-key.pem

Configured as the gatekeeper's ``signer_command``, it is started by the
gatekeeper (:class:`gatekeeper.audit.command_signer.CommandSigner`) and speaks
its line protocol: ``pubkey`` -> ``pubkey <base64>``, ``sign <base64>`` ->
``sig <base64>``, anything else -> ``error <text>``. It exits when its stdin
closes (the gatekeeper stopped).

The key may be encrypted: the passphrase is read from ``--passphrase-file``,
or from the environment variable ``--passphrase-env`` names (default
``GATEKEEPER_KEY_PASSPHRASE``). To keep the key out of reach of the
gatekeeper's user as well, run it as another user (``sudo -n -u gk-signer
python3 -m gatekeeper.audit.signer_process --key ...``) or on another host
(``ssh``). Neither the key nor the passphrase ever appears in its output.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

__all__ = ["main", "serve"]

#: The longest request line accepted (an entry is at most 64 KiB: ~88 KiB in base64).
MAX_REQUEST = 1 << 20


def serve(key: Ed25519PrivateKey, requests: BinaryIO, answers: BinaryIO) -> None:
    """Answer requests line by line until ``requests`` ends."""
    public = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    while True:
        line = requests.readline(MAX_REQUEST + 1)
        if not line:
            return
        if not line.endswith(b"\n"):
            answers.write(b"error request line too long or unterminated\n")
            answers.flush()
            return  # out of step with the client: stop
        request = line.rstrip(b"\r\n")
        verb, _, payload = request.partition(b" ")
        if verb == b"pubkey" and not payload:
            answer = b"pubkey " + base64.b64encode(public)
        elif verb == b"sign":
            try:
                message = base64.b64decode(payload, validate=True)
            except (binascii.Error, ValueError):
                answer = b"error malformed base64"
            else:
                answer = b"sig " + base64.b64encode(key.sign(message))
        else:
            answer = b"error unknown request"
        answers.write(answer + b"\n")
        answers.flush()


def _passphrase(args: argparse.Namespace) -> bytes | None:
    if args.passphrase_file:
        text = Path(args.passphrase_file).read_text(encoding="utf-8").rstrip("\r\n")
        return text.encode("utf-8") or None
    value = os.environ.get(args.passphrase_env)
    return value.encode("utf-8") if value else None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 -m gatekeeper.audit.signer_process",
        description="Hold an Ed25519 PEM key and sign the gatekeeper's requests "
        "(line protocol on stdin/stdout).",
    )
    parser.add_argument("--key", required=True, help="PKCS#8 PEM Ed25519 private key")
    parser.add_argument("--passphrase-file", default=None)
    parser.add_argument("--passphrase-env", default="GATEKEEPER_KEY_PASSPHRASE")
    args = parser.parse_args(argv)
    try:
        data = Path(args.key).read_bytes()
    except OSError as exc:
        print(f"signer: key {args.key} is unreadable ({exc.strerror})", file=sys.stderr)
        return 1
    try:
        key = serialization.load_pem_private_key(data, password=_passphrase(args))
    except (OSError, ValueError, TypeError):
        print(f"signer: key {args.key} is corrupt or the passphrase is wrong", file=sys.stderr)
        return 1
    if not isinstance(key, Ed25519PrivateKey):
        print(f"signer: key {args.key} is not an Ed25519 key", file=sys.stderr)
        return 1
    try:
        serve(key, sys.stdin.buffer, sys.stdout.buffer)
    except (BrokenPipeError, KeyboardInterrupt):
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
