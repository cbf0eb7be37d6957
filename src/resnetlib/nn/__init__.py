"""The parts a network is built from: layers, norms, activations, drop path, shortcuts, stems
and blocks.

Each part registers itself by name in a :class:`~resnetlib.registry.Registry`; nothing here
knows the builder, the model or the zoo.
"""
