"""vidgen: a GraphQL backend for AI video generation."""

__version__ = "0.1.0"
