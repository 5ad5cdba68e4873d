"""The HTTP server: OpenAI-compatible embeddings, search and documents over the library."""
