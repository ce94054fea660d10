"""Export: merge the adapter, write GGUF (model and LoRA), quantise, Modelfile, vLLM check."""
