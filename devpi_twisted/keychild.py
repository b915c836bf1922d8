"""Keys derived from the server secret in a short-lived child process.

argon2 holds its whole memory cost while it runs: 64 MiB at our default costs, 512 MiB
at devpi's (a replica of a devpi-server primary). Run in the server process, that would
stay its peak resident size (VmHWM) for good although the memory is given back at once.
So ``derive_in_child`` runs ``python -m devpi_twisted.keychild``, which derives the
keys with ``model.tokens.derive_key`` and exits. The secret goes over the child's stdin,
never its argv or environment (both are visible to other users of the machine); the keys
come back on its stdout. It blocks: call it before the reactor runs, or on a thread.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence

# The child needs about 0.1 s to start; devpi's costs take some 10 s of CPU on a slow
# machine. A child still running past this is broken, not slow.
TIMEOUT = 600.0


class KeyDerivationError(Exception):
    """The child could not derive the keys (the message says why, in one line)."""


def derive_in_child(secret: bytes, salts: Sequence[bytes], time_cost: int, memory_cost: int,
                    parallelism: int, timeout: float = TIMEOUT) -> list[bytes]:
    """``derive_key(secret, salt, ...)`` for each salt, computed by a child process."""
    request = json.dumps({"secret": secret.hex(), "salts": [salt.hex() for salt in salts],
                          "costs": [time_cost, memory_cost, parallelism]}).encode()
    try:
        done = subprocess.run([sys.executable, "-m", __name__], input=request,
                              capture_output=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise KeyDerivationError(f"deriving keys from the secret: {e}") from e
    if done.returncode != 0:
        why = done.stderr.decode(errors="replace").strip().splitlines()
        raise KeyDerivationError("deriving keys from the secret failed: "
                                 + (why[-1] if why else f"exit code {done.returncode}"))
    try:
        keys = [bytes.fromhex(key) for key in json.loads(done.stdout)]
    except (ValueError, TypeError) as e:
        raise KeyDerivationError(f"deriving keys from the secret: unreadable answer ({e})") from e
    if len(keys) != len(salts):
        raise KeyDerivationError("deriving keys from the secret: wrong number of keys")
    return keys


def main() -> None:
    """The child: a JSON request on stdin, the keys (hex, in order) as JSON on stdout."""
    from devpi_twisted.model.tokens import derive_key
    request = json.loads(sys.stdin.buffer.read())
    secret = bytes.fromhex(request["secret"])
    time_cost, memory_cost, parallelism = (int(cost) for cost in request["costs"])
    keys = [derive_key(secret, bytes.fromhex(salt), time_cost, memory_cost, parallelism).hex()
            for salt in request["salts"]]
    sys.stdout.write(json.dumps(keys))


if __name__ == "__main__":
    main()
