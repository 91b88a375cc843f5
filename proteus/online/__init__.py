"""Online floors: per-(tenant, τ bucket) controllers driven by delayed, partial feedback.

`controller` (the control law), `adapter` (the one coupling to the router's operating points),
`drift` (the per-model sequential test), `watch` (those tests per tenant, and the re-pointing they
cause), `store` (SQLite, WAL), `service` (routing with request ids, feedback), `http` (the
endpoints). Inside the gateway: `proteus.gateway.online`. The drift benchmark is
`experiments/replay.py` (`python -m launch.replay`; through HTTP: `experiments/http_replay.py`).
User guide: docs/online.md.
"""
