"""Training: the networks, losses and steps, the compiled loop, cross-fitting, checkpoints,
sharding, and the export of a trained router as an artifact.

This package imports nothing on its own; import its modules.
"""
