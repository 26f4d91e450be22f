"""Built-in writers: the JSON Lines run log and the console summary (both ordinary plugins)."""
