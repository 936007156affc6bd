"""Fine-tuning jobs: the OpenAI-shaped API and the pages, the advisor before launch, capacity,
live metrics and merges."""
