"""ANB Rising Stars Showcase."""
