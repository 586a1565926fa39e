"""``reflectkit verify endpoint`` and ``reflectkit verify fingerprint``.

Exit codes of ``verify endpoint``: 0 consistent, 3 inconsistent (evidence that the endpoint is not what it
claims), 4 inconclusive, 2 user error.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from reflectkit.errors import UserError

verify_app = typer.Typer(help="Is the endpoint what it claims? Tiered checks and publishable fingerprints.",
                         no_args_is_help=True)

BaseUrl = Annotated[Optional[str], typer.Option("--base-url", help="OpenAI-compatible base URL, e.g. "
                                                "http://localhost:8000/v1.", show_default=False)]
ModelName = Annotated[Optional[str], typer.Option("--model", help="The model name at the endpoint.",
                                                  show_default=False)]
KeyEnv = Annotated[Optional[str], typer.Option("--api-key-env", help="NAME of the environment variable holding "
                                               "the API key (default OPENAI_API_KEY; local servers need none).")]
Budget = Annotated[int, typer.Option("--budget", min=8, help="Endpoint calls to spend across the tiers.")]
Seed = Annotated[int, typer.Option("--seed", help="Picks the probes and the text samples' seeds.")]


def _client(base_url: str | None, model: str | None, api_key_env: str | None) -> Any:
    from reflectkit.llm.retry import RetryPolicy
    from reflectkit.llm.openai_compat import OpenAICompatModel
    from reflectkit.llm.spec import ModelSpec

    if not base_url:
        raise UserError("--base-url is required (the endpoint to check)")
    if not model:
        raise UserError("--model is required (the model name at the endpoint)")
    try:
        ModelSpec(model=model, base_url=base_url, api_key_env=api_key_env)
    except Exception as exc:  # pydantic: an api-key-env that looks like a key
        raise UserError(f"--api-key-env: {str(exc).splitlines()[-1].strip()}") from None
    from reflectkit.llm.base import FatalModelError

    try:
        return OpenAICompatModel(model, base_url, api_key_env=api_key_env, concurrency=4,
                                 retry=RetryPolicy(max_attempts=4, base_delay=0.5, timeout=120.0),
                                 setting_name="--")
    except FatalModelError as exc:
        raise UserError(str(exc)) from None


def _api_key(api_key_env: str | None) -> str | None:
    import os

    return os.environ.get(api_key_env or "OPENAI_API_KEY")


def _cache_dir() -> Path:
    from reflectkit import cli_steps

    return cli_steps.cache_dir()


@verify_app.command("endpoint")
def endpoint_cmd(
    base_url: BaseUrl = None,
    model: ModelName = None,
    claims: Annotated[Optional[str], typer.Option("--claims", help="What the endpoint claims to be: 'embedded', "
                                                  "a .gguf, a Hugging Face model directory or a fingerprint .json.",
                                                  show_default=False)] = None,
    budget: Budget = 100,
    seed: Seed = 0,
    json_path: Annotated[Optional[Path], typer.Option("--json", help="Write the full report (every probe and "
                                                      "answer) to this file.")] = None,
    api_key_env: KeyEnv = None,
    logprob_floor: Annotated[float, typer.Option("--logprob-floor", min=0.0, help="Numerical tolerance (nats) "
                                                 "between two honest computations of the same weights.")] = 0.01,
) -> int:
    """Check an endpoint against what it claims to be, tier by tier (metadata, tokenizer, log-probs, text)."""
    from reflectkit.llm.base import FatalModelError
    from reflectkit.verify.endpoint import format_report, verify_endpoint, write_json
    from reflectkit.verify.reference import resolve_reference

    if not claims:
        raise UserError("--claims is required: 'embedded', a .gguf, a Hugging Face model directory or a fingerprint")
    client = _client(base_url, model, api_key_env)
    reference = resolve_reference(claims, "--claims", cache_dir=_cache_dir())

    async def go() -> dict[str, Any]:
        try:
            return await verify_endpoint(client, reference, budget=budget, seed=seed, api_key=_api_key(api_key_env),
                                         floor=logprob_floor)
        finally:
            await client.aclose()
            await reference.aclose()

    try:
        report = asyncio.run(go())
    except FatalModelError as exc:
        raise UserError(str(exc)) from None
    print(format_report(report))
    if json_path is not None:
        write_json(report, json_path)
        print(f"report: {json_path}")
    return int(report["exit_code"])


@verify_app.command("fingerprint")
def fingerprint_cmd(
    output: Annotated[Path, typer.Option("-o", "--output", help="Fingerprint file to write (.json).",
                                         show_default=False)],
    base_url: BaseUrl = None,
    model: ModelName = None,
    local: Annotated[Optional[str], typer.Option("--local", help="Fingerprint a local model instead: 'embedded', "
                                                 "a .gguf or a Hugging Face model directory.", show_default=False)] = None,
    budget: Budget = 100,
    seed: Seed = 0,
    api_key_env: KeyEnv = None,
) -> int:
    """Record an endpoint's (or a local model's) answers to the fixed probe set, to publish and check against."""
    from reflectkit.llm.base import FatalModelError
    from reflectkit.verify.endpoint import endpoint_metadata, fingerprint_of, plan_for_budget
    from reflectkit.verify.fingerprint import host_of
    from reflectkit.verify.reference import resolve_reference

    if bool(local) == bool(base_url):
        raise UserError("give either --base-url with --model (an endpoint) or --local REF (a local model)")
    plan = plan_for_budget(budget, seed)

    async def go() -> Any:
        if local:
            ref = resolve_reference(local, "--local", cache_dir=_cache_dir())
            if ref.fingerprint is not None:
                raise UserError(f"--local {local}: already a fingerprint")
            try:
                return await fingerprint_of(ref.ask, plan, {**ref.describe, "kind": "local", "reference": ref.kind},
                                            counter=ref.counter)
            finally:
                await ref.aclose()
        client = _client(base_url, model, api_key_env)
        try:
            meta = await endpoint_metadata(str(base_url), _api_key(api_key_env))
            return await fingerprint_of(client.chat, plan, {"kind": "endpoint", "host": host_of(base_url),
                                                            "model": model}, metadata=meta)
        finally:
            await client.aclose()

    try:
        fp = asyncio.run(go())
    except FatalModelError as exc:
        raise UserError(str(exc)) from None
    fp.save(output)
    print(f"fingerprint: {output} ({len(fp.answers)} probe answers, probe set {fp.probe_version})")
    return 0


def register(app: typer.Typer) -> None:
    app.add_typer(verify_app, name="verify")
