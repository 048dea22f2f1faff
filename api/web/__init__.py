"""The web pages: server-rendered Jinja2 templates, Thai first (issue 13)."""
