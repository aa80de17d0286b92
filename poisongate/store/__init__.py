"""What is kept: the model registry and champion, the quarantine store, git + DVC versions, history, rollback."""
