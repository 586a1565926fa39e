"""reflectkit: reflection-tuning of LLM instruction data, end to end and verifiably."""

from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("reflectkit")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+src"

from reflectkit.errors import UserError  # noqa: E402

__all__ = ["UserError", "__version__"]
