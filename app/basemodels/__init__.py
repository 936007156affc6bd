"""Base models: local folders of safetensors weights registered to fine-tune, listed with the
adapters and merged models made from them."""
