"""The seed recipe's remedies, in its order; shared by the advisor and the worker's monitor."""

OVERFITTING_REMEDIES = (
    "raise lora_dropout (0.1–0.2)",
    "raise weight_decay",
    "lower r",
    "train fewer epochs (or enable early stopping)",
    "add more data",
)
UNDERFITTING_REMEDIES = (
    "raise r",
    "raise lora_alpha",
    "raise learning_rate (LoRA: 5e-5…3e-4)",
    "train more epochs",
    "target more modules (add the MLP: gate_proj, up_proj)",
)
DIVERGENCE_REMEDIES = (
    "lower learning_rate",
    "raise warmup_ratio",
    "use bf16 or fp32 instead of fp16",
    "check the data for broken rows",
)
