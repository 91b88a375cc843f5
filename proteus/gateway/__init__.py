"""An OpenAI-compatible gateway in front of a `proteus.serving.Router` and the models' upstreams.

  config.py       models file (upstreams) and keys file (hashed keys -> tenants), checked on load
  keys.py         key hashing and lookup, per-tenant rate limits
  usage.py        spend and usage per tenant in SQLite, day/month budgets
  proxy.py        forwarding with httpx, SSE passthrough, upstream errors and fallbacks
  completions.py  τ from the request, prompt text, batched routing, cost accounting
  metrics.py      Prometheus collectors
  app.py          the ASGI app (`create_gateway`)
  settings.py     what the launcher's flags set, and the checks made on them at start
  transport.py    a lean HTTP/1.1 transport for httpx (the upstream calls)
  runner.py       uvicorn for these apps (serve, a background thread for tests)
  fake.py         a fake OpenAI-compatible upstream for tests, benchmarks and demos
  online.py       the online controller inside the gateway (`--online`)
  demo.py         `launch.gateway --demo` and the models-file template

Run it with `python -m launch.gateway` (see its docstring).
"""
