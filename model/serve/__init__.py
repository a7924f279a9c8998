"""An OpenAI-compatible chat server for the project's GLM-4.1V model: loading, batched generation, HTTP app."""
