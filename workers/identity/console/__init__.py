"""The console of the identity API: its page, script and style, served as they are."""
