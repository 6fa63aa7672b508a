"""reconent: predict trainability of deep networks from the cascade reconstruction-entropy probe."""

__version__ = "0.1.0"
