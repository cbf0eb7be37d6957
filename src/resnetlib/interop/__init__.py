"""Between resnetlib and the outside: other libraries' weight layouts, checkpoint files and
fine-tuning."""
