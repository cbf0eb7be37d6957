"""The named networks: the zoo of factories and the registry of their pretrained weights."""
