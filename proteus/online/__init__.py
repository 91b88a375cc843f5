"""Online floors: per-(tenant, τ bucket) controllers driven by delayed, partial feedback.

`controller` (the control law), `adapter` (the one coupling to the router's operating points),
`store` (SQLite, WAL), `service` (routing with request ids, feedback), `http` (the endpoints).
The drift benchmark is `experiments/replay.py` (`python -m launch.replay`).
"""
