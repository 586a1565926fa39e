"""Keep API keys out of logs, manifests, caches, reports and error messages."""

from __future__ import annotations

import re

_SECRETS: set[str] = set()
_KEYLIKE = re.compile(r"\b(sk|key|api)[-_][A-Za-z0-9_\-\*]{6,}", re.IGNORECASE)


def register_secret(value: str | None) -> None:
    """Remember a secret value so that :func:`redact` removes it wherever it appears."""
    if value and len(value) >= 4:
        _SECRETS.add(value)


def redact(text: str) -> str:
    """Remove every registered secret, and anything shaped like an API key, from ``text``."""
    if not text:
        return text
    for s in sorted(_SECRETS, key=len, reverse=True):
        text = text.replace(s, "***")
        # OpenAI echoes masked keys such as "sk-abc1***********wxyz": strip their fragments too.
        if len(s) > 8:
            text = text.replace(s[:6], "***").replace(s[-4:], "***")
    return _KEYLIKE.sub("***", text)
