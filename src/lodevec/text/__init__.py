"""Text before the model: task prompts, the WordPiece tokenizer, and chunking."""
