"""A local gateway in one command (`launch.gateway --demo`) and the models-file template.

The demo starts the fake upstream (`proteus.gateway.fake`: every model answers "<model> says hi
from upstream", with usage) on a free loopback port, writes a models file that sends every model
of the artifact there, a keys file with one fresh key (tenant "demo"), and returns what the
launcher prints. It listens on loopback only.

`models_template` writes a models file for an artifact's models that loads as written (every
model listed, no API-key variable required), to edit into the real upstreams.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence

from proteus.gateway import keys

TEMPLATE_HEAD = """\
# Upstreams of the router's models ({n} models): `python -m launch.gateway --models_file=THIS`.
# Every model the router can choose needs an entry. [defaults] applies to every entry below;
# an entry's own fields override it. Fields: base_url (an OpenAI-compatible /v1 URL),
# upstream_model (the name that upstream knows the model by), api_key_env (the environment
# variable holding its API key; the gateway refuses to start while it is unset), timeout_s,
# fallback (another entry, tried once when this one times out or fails with 5xx/429).
# As written, every model goes to one local OpenAI-compatible server (e.g. vLLM, or the fake
# upstream: python -c "from proteus.gateway import fake; fake.serve(9000)").

[defaults]
base_url = {base_url}
# api_key_env = "OPENAI_API_KEY"
timeout_s = 60
"""


def models_template(models: Sequence[str], base_url: str = "http://127.0.0.1:9000/v1") -> str:
    """The TOML text of a models file listing `models` (see the module docstring)."""
    lines = [TEMPLATE_HEAD.format(n=len(models), base_url=json.dumps(base_url))]
    for name in models:
        lines.append(f"[models.{json.dumps(name)}]\nupstream_model = {json.dumps(name)}\n"
                     "# base_url = \"https://api.example.com/v1\"\n"
                     "# api_key_env = \"EXAMPLE_API_KEY\"\n")
    return "\n".join(lines)


def write_models_template(path: str, models: Sequence[str]) -> None:
    """Write `models_template(models)` to `path`; FileExistsError if it exists (never
    overwritten)."""
    with open(path, "x") as f:
        f.write(models_template(models))


@dataclasses.dataclass(frozen=True)
class DemoFiles:
    """What `write_demo_files` wrote, and the client key."""

    models_file: str
    keys_file: str
    usage_db: str
    key: str


def write_demo_files(workdir: str, models: Sequence[str], upstream_url: str,
                     default_tau: float) -> DemoFiles:
    """A models file sending every model to `upstream_url` (the fake upstream's /v1), a keys
    file with one fresh key for tenant "demo" (τ range [0, 1], `default_tau`), in `workdir`."""
    os.makedirs(workdir, exist_ok=True)
    models_file = os.path.join(workdir, "models.toml")
    with open(models_file, "w") as f:
        f.write(models_template(models, upstream_url))
    key = keys.new_key()
    keys_file = os.path.join(workdir, "keys.toml")
    with open(keys_file, "w") as f:
        f.write(f"[tenants.demo]\nkey_sha256 = \"{keys.hash_key(key)}\"\n"
                f"default_tau = {default_tau:g}\ntau_range = [0.0, 1.0]\n")
    return DemoFiles(models_file, keys_file, os.path.join(workdir, "usage.sqlite3"), key)


def banner(url: str, upstream_url: str, files: DemoFiles, tau: float) -> str:
    """What the demo prints: where it listens, the key, and a request to try."""
    body = json.dumps({"model": f"proteus-{tau:g}",
                       "messages": [{"role": "user", "content": "Which gas do plants absorb?"}]})
    return "\n".join([
        f"PROTEUS gateway demo on {url} (loopback only); fake upstream on {upstream_url}",
        f"API key (tenant 'demo'): {files.key}",
        f"files: {files.models_file}, {files.keys_file}, {files.usage_db}",
        "try:",
        f"  curl -s {url}/v1/chat/completions -H 'Authorization: Bearer {files.key}' \\",
        f"       -H 'Content-Type: application/json' -d '{body}'",
        f"  python -c \"from openai import OpenAI; c = OpenAI(base_url='{url}/v1', "
        f"api_key='{files.key}'); print(c.chat.completions.create(model='proteus-{tau:g}', "
        "messages=[{'role': 'user', 'content': 'hi'}]).choices[0].message.content)\"",
        "Ctrl-C stops it."])
