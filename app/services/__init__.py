"""Domain rules. Functions take keyword-only arguments, flush and never commit."""
