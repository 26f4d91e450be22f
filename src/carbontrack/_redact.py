"""Redaction of secrets before anything is written: command lines, server answers, messages.

A leaf module (standard library only) so that every writer and the CLI can share one policy:

* ``redact_argv``: a command line with the values of secret-looking options masked:
  ``--hf-token=hf_x`` and ``--token hf_x`` (the value in the next argument), any option whose
  name holds ``token``, ``key``, ``password``/``passwd``/``pwd``, ``secret``, ``credential`` or
  ``auth``; assignments such as ``HF_TOKEN=hf_x`` or ``api_key=x``; and, anywhere, values
  shaped like well-known tokens (``hf_...``, ``sk-...``, ``ghp_...``, ``AKIA...``, ``xoxb-...``)
  passwords in URLs (``https://user:pw@host``) and secret-named query parameters
  (``?api_key=x``).
* ``redact_text``: text (a server's message, a log line) with given secrets masked,
  case-insensitively, and the same token shapes masked.
* ``redact_data``: the same over every string (and mapping key) of decoded JSON.

Redaction errs towards masking too much: a masked harmless value costs a little context, a
leaked key costs the key.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["MASK", "SECRET_WORDS", "is_secret_name", "redact_argv", "redact_data", "redact_text"]

#: What a secret is replaced with.
MASK = "***"

#: Parts of an option or variable name that mark its value as secret (compared in lower case).
SECRET_WORDS = ("token", "key", "password", "passwd", "pwd", "secret", "credential", "auth")

# Shapes of well-known credentials, masked wherever they appear (a token passed positionally,
# or echoed by a server). Prefixes from the vendors' documented formats: Hugging Face ``hf_``,
# OpenAI/Anthropic ``sk-``, GitHub ``ghp_``/``gho_``/``ghu_``/``ghs_``/``ghr_``/``github_pat_``,
# AWS access key ids ``AKIA``/``ASIA``, Slack ``xox?-``, GitLab ``glpat-``, W&B keys are 40 hex.
# A pattern string, not a compiled pattern: ``re`` compiles it on first use and caches it, so
# a run that never needs it never pays for it (docs/performance.md, "Start-up").
_TOKEN_SHAPES = (
    r"\b(?:hf_[A-Za-z0-9]{8,}|sk-[A-Za-z0-9_\-]{16,}|gh[pousr]_[A-Za-z0-9]{16,}"
    r"|github_pat_[A-Za-z0-9_]{16,}|(?:AKIA|ASIA)[A-Z0-9]{16}|xox[abposr]-[A-Za-z0-9\-]{8,}"
    r"|glpat-[A-Za-z0-9_\-]{16,})"
)
# ``scheme://user:password@host``: the password part.
_URL_PASSWORD = r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^/\s:@]*:)[^/\s@]+(?=@)"
# ``?api_key=x`` / ``&token=x`` in a URL or a message: the value of a secret-named parameter.
_QUERY_SECRET = (
    r"(?i)(?P<head>[?&;](?:[A-Za-z0-9_.\-]*(?:token|key|password|passwd|secret|auth)"
    r"[A-Za-z0-9_.\-]*)=)[^&#\s;\"']+"
)


def is_secret_name(name: str) -> bool:
    """Whether an option or variable called ``name`` holds a secret (``--hf-token``,
    ``API_KEY``, ``db_password``...), compared case-insensitively."""
    lowered = name.lower()
    return any(word in lowered for word in SECRET_WORDS)


def _shapes(text: str) -> str:
    text = re.sub(_TOKEN_SHAPES, MASK, text)
    text = re.sub(_QUERY_SECRET, lambda m: m.group("head") + MASK, text)
    return re.sub(_URL_PASSWORD, lambda m: m.group("head") + MASK, text)


def redact_text(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with each of ``secrets`` (case-insensitively) and token-shaped values masked.

    Case-insensitive because servers echo keys changed: upper-cased in an error, lower-cased
    in a normalised header dump.
    """
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = re.sub(re.escape(secret), MASK, text, flags=re.IGNORECASE)
    return _shapes(text)


def redact_data(data: Any, secrets: Iterable[str | None] = ()) -> Any:
    """A copy of decoded JSON ``data`` with every string and mapping key passed through
    ``redact_text``; numbers, booleans and ``None`` are kept."""
    found = tuple(s for s in secrets if s)

    def walk(value: Any, depth: int) -> Any:
        if isinstance(value, str):
            return redact_text(value, found)
        if depth > 200:  # deeper than any real answer: drop rather than recurse without end
            return None
        if isinstance(value, dict):
            return {redact_text(str(k), found): walk(v, depth + 1) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [walk(v, depth + 1) for v in value]
        return value

    return walk(data, 0)


def redact_argv(argv: Sequence[str]) -> list[str]:
    """``argv`` with secret values masked (see the module's docstring); the option names are
    kept so that the command line still reads as what was run.

    >>> redact_argv(["train.py", "--hf-token=hf_abcdefgh12", "--token", "x", "HF_TOKEN=y"])
    ['train.py', '--hf-token=***', '--token', '***', 'HF_TOKEN=***']
    """
    out: list[str] = []
    mask_next = False
    for item in argv:
        arg = str(item)
        if mask_next:
            mask_next = False
            # ``--token --verbose``: the next word is an option, not the token's value.
            if not arg.startswith("-") or arg == "-":
                out.append(MASK)
                continue
        name, eq, _value = arg.partition("=")
        if eq and name and " " not in name and is_secret_name(name):
            # ``--api-key=x``, ``-k=x``, ``HF_TOKEN=x``, ``api_key=x`` (Hydra-style overrides).
            out.append(f"{name}={MASK}")
            continue
        if arg.startswith("-") and not eq and is_secret_name(arg.lstrip("-")):
            # ``--token x``: the value is the next argument.
            mask_next = True
            out.append(arg)
            continue
        out.append(_shapes(arg))
    return out
