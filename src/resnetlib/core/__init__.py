"""Data to modules: the spec (plain data), its builder and the network it builds.

The spec sits below the parts (they read its size limits); the builder, the model and its
feature view sit above them.
"""
